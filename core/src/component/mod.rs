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

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::access_token::{Stored, FORCED_REFRESH_INTERVAL_SECS};
use crate::accounts::Kind;
use crate::api_error::{errcode_of, is_token_invalid, ApiError};
use crate::credentials::{Credentials, Refreshed, TokenSource};
use crate::error::Error;
use crate::event::Event;
use crate::ports::{Clock, Http, HttpRequest, Store};
use crate::upstream;

pub use crate::component_state::{
    load_ticket, request_ticket_push, store_ticket, ticket_key, Authorization, Ticket,
    PUSH_REQUEST_INTERVAL_SECS, TICKET_TTL_SECS,
};

/// How long an exchanged code's result is remembered (codes live 10 minutes).
pub const CODE_TTL_SECS: u64 = 3600;
/// How long a path that lost the exchange race waits for the winner's record.
pub const EXCHANGE_WAIT_MS: u64 = 3_000;
/// Authorizers per sync call: two store operations each, well inside an invocation's 1,000.
pub const SYNC_PAGE: u64 = 200;

/// WeChat's release-check (全网发布) test accounts: Official Accounts and Mini Programs.
pub const RELEASE_TEST_ACCOUNTS: [&str; 10] = [
    "wx570bc396a51b8ff8",
    "wx9252c5e0bb1836fc",
    "wx8e1097c5bc82cde9",
    "wx14550af28c71a144",
    "wxa35b9c23cfe664eb",
    "wxd101a85aa106f53e",
    "wxc39235c15087f6f3",
    "wx7720d01d4b2a4500",
    "wx05d483572dcd5d8b",
    "wx5910277cae6fd970",
];
pub const RELEASE_TEXT: &str = "TESTCOMPONENT_MSG_TYPE_TEXT";
pub const RELEASE_QUERY_AUTH_CODE: &str = "QUERY_AUTH_CODE:";

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

/// The code itself never becomes a key (it is a credential): a hash of it does.
pub fn code_key(platform: &str, code: &str) -> String {
    let digest = Sha256::digest(code.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("component:{platform}:code:{hex}")
}

/// One authorizer's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorizer {
    pub app_id: String,
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_at: u64,
    #[serde(default)]
    pub fetched_at: u64,
    #[serde(default)]
    pub forced_at: Option<u64>,
    #[serde(default)]
    pub func_info: Value,
    /// Unix seconds.
    pub authorized_at: u64,
}

impl Authorizer {
    /// The access token as a stored credential, when there is one.
    pub fn credential(&self) -> Option<Stored> {
        Some(Stored {
            value: self.access_token.clone()?,
            expires_at: self.expires_at,
            fetched_at: self.fetched_at,
            forced_at: self.forced_at,
        })
    }

    fn summary(&self) -> Value {
        json!({
            "app_id": self.app_id,
            "authorized_at": crate::time::rfc3339_millis(self.authorized_at.saturating_mul(1000)),
            "func_info": self.func_info,
            "has_access_token": self.access_token.is_some(),
        })
    }
}

/// The `auth_code` of `POST /component/authorizations` (`{"auth_code": "..."}`).
pub fn auth_code_of(body: &[u8]) -> Result<String, Error> {
    const SHAPE: &str = "the body must be JSON {\"auth_code\": \"...\"} (the auth_code the authorization page redirected with)";
    let value: Value = serde_json::from_slice(body).map_err(|_| Error::BadRequest(SHAPE))?;
    value
        .get("auth_code")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.len() <= 512)
        .map(str::to_owned)
        .ok_or(Error::BadRequest(SHAPE))
}

/// What the release check asks of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseCheck {
    /// Answer the passive reply `TESTCOMPONENT_MSG_TYPE_TEXT_callback`.
    Text,
    /// Answer empty at once, then exchange the code and send `<code>_from_api`.
    QueryAuthCode(String),
}

impl ReleaseCheck {
    /// The release check's test messages, from WeChat's test accounts only.
    pub fn of(authorizer: &str, event: &Event) -> Option<ReleaseCheck> {
        if !RELEASE_TEST_ACCOUNTS.contains(&authorizer) || event.kind != "text" {
            return None;
        }
        let content = event.data.get("content")?.as_str()?;
        if content == RELEASE_TEXT {
            return Some(ReleaseCheck::Text);
        }
        let code = content.strip_prefix(RELEASE_QUERY_AUTH_CODE)?;
        (!code.is_empty()).then(|| ReleaseCheck::QueryAuthCode(code.to_owned()))
    }
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
        if creds.account.kind() != Kind::Component {
            return Err(Error::NotAvailable(
                "this route is for third-party platform accounts (kind \"component\")",
            ));
        }
        Ok(Platform { creds })
    }

    fn name(&self) -> &str {
        self.creds.account.name()
    }

    /// Calls `/cgi-bin/component/<api>` with the component token; after a token error,
    /// refreshes it once and retries once. An errcode is an error hinted for platforms.
    async fn call(&self, api: &str, body: &Value) -> Result<Value, Error> {
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
                    let refreshed = self.creds.force_refresh().await?;
                    if refreshed.credential.value == token.value {
                        return Err(ApiError::wechat(errcode, "component token refused")
                            .for_kind(Kind::Component)
                            .into());
                    }
                    token = refreshed.credential;
                }
                Some(e) => return Err(e.for_kind(Kind::Component).into()),
                None => {
                    return serde_json::from_slice(&answer).map_err(|_| bad("answer is not JSON"));
                }
            }
        }
    }

    async fn load_authorizer(&self, app_id: &str) -> Result<Option<Authorizer>, Error> {
        let text = self
            .creds
            .store
            .get(&authorizer_key(self.name(), app_id))
            .await
            .map_err(|e| Error::Internal(format!("reading an authorizer: {e}")))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Writes an authorizer's record (twice if the first write fails: a lost refresh token
    /// means the merchant must authorize again, or a sync); whether it was stored.
    async fn save_authorizer(&self, record: &Authorizer) -> bool {
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

    /// Exchanges an authorization code (`api_query_auth`), once per code.
    pub async fn exchange(&self, code: &str) -> Result<Authorization, Error> {
        let code = code.trim();
        if code.is_empty() || code.len() > 512 {
            return Err(Error::MalformedParameter("auth_code"));
        }
        let key = code_key(self.name(), code);
        if let Some(done) = self.exchanged(&key).await {
            return Ok(done);
        }
        let flight = format!("{}/code/{}", self.name(), key);
        let result = self
            .creds
            .memory
            .exchanges
            .run(self.creds.clock, flight, || async {
                self.exchange_now(code, &key).await
            })
            .await;
        match result {
            Err(Error::Api(ApiError::WeChat {
                errcode: 61009 | 61010,
                ..
            })) => {
                // Used already: maybe by the other path a moment ago, elsewhere. Wait for its record.
                let deadline = self.creds.clock.now_ms().saturating_add(EXCHANGE_WAIT_MS);
                while self.creds.clock.now_ms() < deadline {
                    self.creds.clock.sleep(250).await;
                    if let Some(done) = self.exchanged(&key).await {
                        return Ok(done);
                    }
                }
                result
            }
            other => other,
        }
    }

    async fn exchanged(&self, key: &str) -> Option<Authorization> {
        let text = self.creds.store.get(key).await.ok()??;
        serde_json::from_str(&text).ok()
    }

    async fn exchange_now(&self, code: &str, key: &str) -> Result<Authorization, Error> {
        let app_id = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_query_auth",
                &json!({ "component_appid": app_id, "authorization_code": code }),
            )
            .await?;
        let info = answer
            .get("authorization_info")
            .ok_or_else(|| bad("api_query_auth answered no authorization_info"))?;
        let text = |f: &str| {
            info.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let authorizer = text("authorizer_appid").ok_or_else(|| bad("no authorizer_appid"))?;
        let refresh_token =
            text("authorizer_refresh_token").ok_or_else(|| bad("no authorizer_refresh_token"))?;
        let now = self.creds.clock.now_secs();
        let expires_at = now.saturating_add(
            info.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(7200),
        );
        let func_info = info
            .get("func_info")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let record = Authorizer {
            app_id: authorizer.to_owned(),
            refresh_token: refresh_token.to_owned(),
            access_token: text("authorizer_access_token").map(str::to_owned),
            expires_at,
            fetched_at: now,
            forced_at: None,
            func_info: func_info.clone(),
            authorized_at: now,
        };
        self.save_authorizer(&record).await;
        let done = Authorization {
            authorizer_app_id: authorizer.to_owned(),
            func_info,
            expires_at,
        };
        let text = serde_json::to_string(&done).unwrap_or_default();
        if let Err(e) = self.creds.store.put(key, &text, Some(CODE_TTL_SECS)).await {
            log::warn!(account = self.name(), error = e.to_string(); "exchanged code not remembered");
        }
        log::info!(account = self.name(), authorizer = authorizer; "authorization code exchanged");
        Ok(done)
    }

    /// Forgets an authorizer (`unauthorized`).
    pub async fn revoke(&self, app_id: &str) {
        if let Err(e) = self
            .creds
            .store
            .delete(&authorizer_key(self.name(), app_id))
            .await
        {
            log::error!(account = self.name(), authorizer = app_id, error = e.to_string(); "revoked authorizer not deleted");
        } else {
            log::info!(account = self.name(), authorizer = app_id; "authorizer revoked; its tokens are deleted");
        }
    }

    /// The authorizer's token source, for `/token` and `/api/*`.
    pub fn authorizer(&'a self, app_id: &str) -> AuthorizerTokens<'a, C, S, H> {
        AuthorizerTokens {
            platform: self,
            app_id: app_id.to_owned(),
        }
    }

    /// Refreshes an authorizer's token with its refresh token; the refresh token WeChat returns
    /// replaces the stored one before the token is handed out.
    async fn refresh_authorizer(&self, app_id: &str, forced: bool) -> Result<Stored, Error> {
        let mut record = self
            .load_authorizer(app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let component = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_authorizer_token",
                &json!({
                    "component_appid": component,
                    "authorizer_appid": app_id,
                    "authorizer_refresh_token": record.refresh_token,
                }),
            )
            .await?;
        let now = self.creds.clock.now_secs();
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        let stored = crate::access_token::parse_field_response(
            &body,
            "authorizer_access_token",
            now,
            forced,
        )?;
        if let Some(rotated) = answer
            .get("authorizer_refresh_token")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            record.refresh_token = rotated.to_owned();
        }
        record.access_token = Some(stored.value.clone());
        record.expires_at = stored.expires_at;
        record.fetched_at = stored.fetched_at;
        record.forced_at = stored.forced_at.or(record.forced_at);
        self.save_authorizer(&record).await;
        log::info!(account = self.name(), authorizer = app_id, token = stored.redacted(), forced = forced; "authorizer token refreshed");
        Ok(stored)
    }

    /// `GET /component/authorize-url`: a pre_auth_code and the PC and mobile authorization pages.
    pub async fn authorize_url(
        &self,
        redirect_uri: Option<&str>,
        auth_type: Option<&str>,
        biz_appid: Option<&str>,
    ) -> Result<Value, Error> {
        let redirect = redirect_uri
            .filter(|r| !r.is_empty())
            .ok_or(Error::MissingParameter("redirect_uri"))?;
        crate::settings::parse_http_url(redirect)
            .map_err(|_| Error::MalformedParameter("redirect_uri"))?;
        let auth_type = auth_type.filter(|a| !a.is_empty()).unwrap_or("3");
        if !(auth_type.len() == 1 && auth_type.bytes().all(|b| (b'1'..=b'6').contains(&b))) {
            return Err(Error::MalformedParameter("auth_type"));
        }
        if let Some(b) = biz_appid.filter(|b| !b.is_empty()) {
            if !is_app_id(b) {
                return Err(Error::MalformedParameter("biz_appid"));
            }
        }
        let component = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_create_preauthcode",
                &json!({ "component_appid": component }),
            )
            .await?;
        let code = answer
            .get("pre_auth_code")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("api_create_preauthcode answered no pre_auth_code"))?;
        let expires_at = self.creds.clock.now_secs().saturating_add(
            answer
                .get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(1800),
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("component_appid", component)
            .append_pair("pre_auth_code", code)
            .append_pair("redirect_uri", redirect)
            .append_pair("auth_type", auth_type);
        if let Some(b) = biz_appid.filter(|b| !b.is_empty()) {
            query.append_pair("biz_appid", b);
        }
        let query = query.finish();
        Ok(json!({
            "pc_url": format!("https://mp.weixin.qq.com/cgi-bin/componentloginpage?{query}"),
            "mobile_url": format!("https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&{query}#wechat_redirect"),
            "pre_auth_code": code,
            "expires_at": expires_at,
        }))
    }

    /// `GET /component/authorizers?limit=&cursor=`: one page of the stored authorizers (100 by
    /// default, at most 1,000) and the next page's cursor. A record that cannot be read is
    /// listed with its AppID and the reason, never left out.
    pub async fn authorizers(
        &self,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Value, Error> {
        let limit = crate::dead_letters::limit_of(limit)?;
        let cursor = crate::dead_letters::cursor_of(cursor)?;
        let store = self.creds.store;
        let prefix = authorizer_prefix(self.name());
        let page = store
            .list_page(&prefix, cursor, limit)
            .await
            .map_err(|e| Error::Internal(format!("listing authorizers: {e}")))?;
        let mut list = Vec::with_capacity(page.keys.len());
        for key in &page.keys {
            let app_id = key.strip_prefix(&prefix).unwrap_or(key);
            let shown = match store.get(key).await {
                Ok(None) => continue,
                Ok(Some(text)) => match serde_json::from_str::<Authorizer>(&text) {
                    Ok(record) => record.summary(),
                    Err(_) => {
                        json!({ "app_id": app_id, "error": "unreadable record: POST /component/authorizers/sync restores it" })
                    }
                },
                Err(e) => json!({ "app_id": app_id, "error": format!("not read: {e}") }),
            };
            list.push(shown);
        }
        Ok(json!({ "authorizers": list, "cursor": page.cursor }))
    }

    /// `POST /component/authorizers/sync[?offset=]`: one window of the authorizers WeChat knows
    /// (`api_get_authorizer_list`, [`SYNC_PAGE`] from `offset`), each refresh token stored or
    /// replaced; small enough for one invocation's subrequests. Answers `next_offset` (null when
    /// done) to call again with, and counts only what it stored.
    pub async fn sync(&self, offset: Option<&str>) -> Result<Value, Error> {
        let component = self.creds.account.require_app_id()?;
        let offset: u64 = match offset {
            None | Some("") => 0,
            Some(text) => text
                .parse()
                .map_err(|_| Error::MalformedParameter("offset"))?,
        };
        let answer = self
            .call(
                "api_get_authorizer_list",
                &json!({ "component_appid": component, "offset": offset, "count": SYNC_PAGE }),
            )
            .await?;
        let total = answer
            .get("total_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let list = answer
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (mut created, mut updated, mut unchanged, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for item in &list {
            let text = |f: &str| {
                item.get(f)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let (Some(app_id), Some(refresh)) = (text("authorizer_appid"), text("refresh_token"))
            else {
                failed += 1;
                continue;
            };
            let record = match self.load_authorizer(app_id).await {
                Ok(record) => record,
                Err(e) => {
                    log::warn!(account = self.name(), authorizer = app_id, error = e.to_string(); "sync: authorizer not read; skipped");
                    failed += 1;
                    continue;
                }
            };
            let (record, new) = match record {
                Some(record) if record.refresh_token == refresh => {
                    unchanged += 1;
                    continue;
                }
                Some(mut record) => {
                    record.refresh_token = refresh.to_owned();
                    (record, false)
                }
                None => (
                    Authorizer {
                        app_id: app_id.to_owned(),
                        refresh_token: refresh.to_owned(),
                        access_token: None,
                        expires_at: 0,
                        fetched_at: 0,
                        forced_at: None,
                        func_info: Value::Array(Vec::new()),
                        authorized_at: item.get("auth_time").and_then(Value::as_u64).unwrap_or(0),
                    },
                    true,
                ),
            };
            match (self.save_authorizer(&record).await, new) {
                (false, _) => failed += 1,
                (true, true) => created += 1,
                (true, false) => updated += 1,
            }
        }
        let next = offset.saturating_add(list.len() as u64);
        let next_offset = (!list.is_empty() && next < total).then_some(next);
        Ok(json!({
            "total": total,
            "offset": offset,
            "next_offset": next_offset,
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "failed": failed,
        }))
    }
}

/// One authorizer's token, as the token routes and the pass-through use it.
pub struct AuthorizerTokens<'a, C, S, H> {
    platform: &'a Platform<'a, C, S, H>,
    app_id: String,
}

impl<C: Clock, S: Store, H: Http> AuthorizerTokens<'_, C, S, H> {
    fn flight(&self, forced: bool) -> (String, crate::credentials::Kind, bool) {
        (
            format!("{}/{}", self.platform.name(), self.app_id),
            crate::credentials::Kind::AuthorizerToken,
            forced,
        )
    }

    async fn refresh(&self, forced: bool) -> Result<Stored, Error> {
        let creds = &self.platform.creds;
        creds
            .memory
            .authorizer_flights
            .run(creds.clock, self.flight(forced), || async {
                self.platform.refresh_authorizer(&self.app_id, forced).await
            })
            .await
    }
}

impl<C: Clock, S: Store, H: Http> TokenSource for AuthorizerTokens<'_, C, S, H> {
    fn kind(&self) -> Kind {
        Kind::Official
    }

    fn api_base(&self) -> Result<&str, Error> {
        Ok(self.platform.creds.account.api_base()?)
    }

    /// The stored token while more than 5 minutes remain; refreshed otherwise (the stored one
    /// is still served while valid if the refresh fails).
    async fn token(&self) -> Result<Stored, Error> {
        let record = self
            .platform
            .load_authorizer(&self.app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let now = self.platform.creds.clock.now_secs();
        let stored = record.credential();
        if let Some(fresh) = stored.as_ref().filter(|s| s.is_fresh(now)) {
            return Ok(fresh.clone());
        }
        match (self.refresh(false).await, stored) {
            (Ok(fresh), _) => Ok(fresh),
            (Err(e), Some(old)) if old.is_usable_fallback(now) => {
                log::warn!(authorizer = self.app_id.as_str(), error = e.to_string(); "authorizer refresh failed; serving the stored token until it expires");
                Ok(old)
            }
            (Err(e), _) => Err(e),
        }
    }

    /// A forced refresh, at most once a minute per authorizer.
    async fn force_refresh(&self) -> Result<Refreshed, Error> {
        let creds = &self.platform.creds;
        let now = creds.clock.now_secs();
        let record = self
            .platform
            .load_authorizer(&self.app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let key = format!("{}/{}", self.platform.name(), self.app_id);
        let recently = record
            .forced_at
            .is_some_and(|t| now.saturating_sub(t) < FORCED_REFRESH_INTERVAL_SECS)
            || creds.memory.forced_recently(&key, now);
        if recently {
            if let Some(credential) = record.credential().filter(|c| c.expires_at > now) {
                return Ok(Refreshed {
                    credential,
                    refreshed: false,
                });
            }
        }
        creds.memory.note_forced(&key, now);
        Ok(Refreshed {
            credential: self.refresh(true).await?,
            refreshed: true,
        })
    }
}

#[cfg(test)]
mod tests;
