//! Third-party platforms (开放平台 component): the state that every SDK finds hardest to keep
//! right, kept in the store.
//!
//! - The **verify ticket** WeChat pushes every 10 minutes (and never resends on request) is kept
//!   24 hours, the newest winning; without one the relay asks WeChat to restart the push, at most
//!   once an hour.
//! - The **component token** is the platform account's access token in [`Credentials`] (stored,
//!   refreshed ahead, single flight), fetched with the ticket.
//! - Each **authorizer** (a merchant's account) is one record, `authorizer:<platform>:<appid>`,
//!   kept without expiry: its access token, its refresh token (every rotated one replaces the
//!   stored one before a token is handed out), what it granted, and when.
//! - An **authorization code** is exchanged once: whether it arrives in the `authorized` push,
//!   through `POST /component/authorizations`, or both in any order, the second arrival reads
//!   the first one's result (`component:<platform>:code:<hash>`), and concurrent arrivals in an
//!   isolate share one exchange. WeChat refuses a used code (61009/61010); a path that loses that
//!   race waits for the winner's record.
//!
//! One file per concern: `exchange.rs` (codes), `authorizers.rs` (records, tokens, listing,
//! sync), `links.rs` (the authorization page), `release.rs` (the release check); the verify
//! ticket lives below the token service, in `component_state`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::account::Kind;
use crate::error::api_error::{errcode_of, is_token_invalid, ApiError};
use crate::error::Error;
use crate::event::Event;
use crate::ports::{Clock, Http, HttpRequest, Store};
use crate::token::access_token::{Stored, FORCED_REFRESH_INTERVAL_SECS};
use crate::token::upstream;
use crate::token::{Credentials, Refreshed, TokenSource};

pub use crate::token::verify_ticket::{
    load_ticket, request_ticket_push, store_ticket, ticket_key, Authorization, Ticket,
    PUSH_REQUEST_INTERVAL_SECS, TICKET_TTL_SECS,
};

/// How long an exchanged code's result is remembered (codes live 10 minutes).
pub const CODE_TTL_SECS: u64 = 3600;
/// How long a path that lost the exchange race waits for the winner's record.
pub const EXCHANGE_WAIT_MS: u64 = 3_000;
/// Authorizers per sync call: two store operations each, well inside an invocation's 1,000.
pub const SYNC_PAGE: u64 = 200;

/// `wx` and 16 letters or digits: the shape of an AppID.
pub fn is_app_id(s: &str) -> bool {
    s.strip_prefix("wx")
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub fn authorizer_prefix(platform: &str) -> String {
    format!("authorizer:{platform}:")
}

pub fn authorizer_key(platform: &str, app_id: &str) -> String {
    format!("authorizer:{platform}:{app_id}")
}

/// A platform account's flows.
pub struct Platform<'a, C, S, H> {
    pub creds: Credentials<'a, C, S, H>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Api(ApiError::BadResponse(why.into()))
}

impl<'a, C: Clock, S: Store, H: Http> Platform<'a, C, S, H> {
    pub fn new(creds: Credentials<'a, C, S, H>) -> Result<Self, Error> {
        if !creds.account.kind().is_platform() {
            return Err(Error::NotAvailable(
                "this route is for third-party platform accounts (kind \"component\")",
            ));
        }
        Ok(Platform { creds })
    }

    pub(super) fn name(&self) -> &str {
        self.creds.account.name()
    }

    /// Calls `/cgi-bin/component/<api>` with the component token; after a token error,
    /// refreshes it once and retries once. An errcode is an error hinted for platforms.
    pub(super) async fn call(&self, api: &str, body: &Value) -> Result<Value, Error> {
        let base = self.creds.account.api_base()?;
        let mut token = self.creds.access_token().await?;
        let mut retried = false;
        loop {
            let url = format!(
                "{base}/cgi-bin/component/{api}?component_access_token={}",
                url::form_urlencoded::byte_serialize(token.value.as_bytes()).collect::<String>()
            );
            let answer = upstream::call(
                self.creds.clock,
                self.creds.http,
                &HttpRequest::post_json(url, body),
            )
            .await?;
            match errcode_of(&answer) {
                Some(ApiError::WeChat { errcode, .. }) if is_token_invalid(errcode) && !retried => {
                    retried = true;
                    let refreshed = self.creds.force_refresh(Some(&token.value)).await?;
                    if refreshed.credential.value == token.value {
                        return Err(ApiError::wechat(errcode, "component token refused")
                            .for_kind(self.creds.account.kind())
                            .into());
                    }
                    token = refreshed.credential;
                }
                Some(e) => return Err(e.for_kind(self.creds.account.kind()).into()),
                None => {
                    return serde_json::from_slice(&answer).map_err(|_| bad("answer is not JSON"));
                }
            }
        }
    }

    pub(super) async fn load_authorizer(&self, app_id: &str) -> Result<Option<Authorizer>, Error> {
        Ok(self
            .load_authorizer_text(app_id)
            .await?
            .map(|(_, record)| record))
    }

    /// An authorizer's record with the text it was stored as (for a compare-and-set).
    pub(super) async fn load_authorizer_text(
        &self,
        app_id: &str,
    ) -> Result<Option<(String, Authorizer)>, Error> {
        let text = self
            .creds
            .store
            .get(&authorizer_key(self.name(), app_id))
            .await
            .map_err(|e| Error::Internal(format!("reading an authorizer: {e}")))?;
        Ok(text.and_then(|t| {
            let record = serde_json::from_str(&t).ok()?;
            Some((t, record))
        }))
    }

    /// Writes an authorizer's record only if it is still stored as `seen`: whether it wrote.
    pub(super) async fn save_authorizer_if(
        &self,
        record: &Authorizer,
        seen: &str,
    ) -> Result<bool, Error> {
        let key = authorizer_key(self.name(), &record.app_id);
        let text = serde_json::to_string(record).unwrap_or_default();
        self.creds
            .store
            .put_if(&key, &text, Some(seen), None)
            .await
            .map_err(|e| Error::Internal(format!("writing an authorizer: {e}")))
    }

    /// Writes an authorizer's record (twice if the first write fails: a lost refresh token
    /// means the merchant must authorize again, or a sync); whether it was stored.
    pub(super) async fn save_authorizer(&self, record: &Authorizer) -> bool {
        let key = authorizer_key(self.name(), &record.app_id);
        let text = serde_json::to_string(record).unwrap_or_default();
        for attempt in 1..=2 {
            match self.creds.store.put(&key, &text, None).await {
                Ok(()) => return true,
                Err(e) if attempt == 2 => {
                    log::error!(account = self.name(), authorizer = record.app_id.as_str(), error = e.to_string();
                        "authorizer record not stored: its refresh token may be lost; POST /component/authorizers/sync recovers it")
                }
                Err(_) => {}
            }
        }
        false
    }
}

mod authorizers;
mod exchange;
mod links;
mod release;

pub use authorizers::{Authorizer, AuthorizerTokens};
pub use exchange::{auth_code_of, code_key};
pub use release::{ReleaseCheck, RELEASE_QUERY_AUTH_CODE, RELEASE_TEST_ACCOUNTS, RELEASE_TEXT};

#[cfg(test)]
mod tests;
