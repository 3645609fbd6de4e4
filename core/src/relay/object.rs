//! An account's object, answering the Worker: claims by the claim rules
//! ([`AccountObject`], synchronous), credentials by the token service run here, over the
//! object's own storage, so that every location shares one upstream call and one writer per
//! token. The shell's Durable Object hands each request body to [`ObjectPorts::answer`] and
//! returns what it gives.

use std::cell::RefCell;

use super::*;
use crate::coordinator::{self, AccountObject, Request, Response, Rows, StoreOp, Wanted};
use crate::error::Format;

/// What an account's object runs the token service over: its clock, its storage (a [`Store`]
/// over its SQLite), `fetch`, its own memory (flights and forced-refresh times), and the
/// settings.
pub struct ObjectPorts<C, S, H> {
    pub clock: C,
    pub store: S,
    pub http: H,
    pub memory: Rc<Memory>,
    pub config: Rc<Config>,
}

fn refused(e: &Error) -> Response {
    let rendered = e.render(Format::Json);
    let retry_after = rendered
        .headers
        .iter()
        .find(|(name, _)| *name == "retry-after")
        .map(|(_, value)| value.clone());
    Response::Refused {
        status: rendered.status,
        retry_after,
        body: rendered.body,
    }
}

fn credential(result: Result<Refreshed, Error>) -> Response {
    match result {
        Ok(r) => Response::Credential {
            value: r.credential.value,
            expires_at: r.credential.expires_at,
            refreshed: r.refreshed,
        },
        Err(e) => refused(&e),
    }
}

fn plain(result: Result<crate::token::access_token::Stored, Error>) -> Response {
    credential(result.map(|credential| Refreshed {
        credential,
        refreshed: false,
    }))
}

impl<C: Clock, S: Store, H: Http> ObjectPorts<C, S, H> {
    /// The answer to one request body from the Worker.
    pub async fn answer<R: Rows>(
        &self,
        rules: &RefCell<AccountObject<R>>,
        body: &[u8],
    ) -> Response {
        let Some(request) = coordinator::decode_request(body) else {
            return Response::Failed {
                error: "not a request of the relay's".into(),
            };
        };
        match request {
            // Synchronous: no borrow is held across an await.
            Request::Claim { .. } | Request::Settle { .. } | Request::Report { .. } => {
                rules.borrow_mut().handle(request, self.clock.now_ms())
            }
            Request::Store { record } => self.record(record).await,
            Request::Credential { account, wanted } => match self.credentials(&account) {
                Ok(creds) => match wanted {
                    Wanted::AccessToken => plain(creds.access_token().await),
                    Wanted::JsapiTicket => plain(creds.jsapi_ticket().await),
                },
                Err(refusal) => refusal,
            },
            Request::Refresh { account, refused } => match self.credentials(&account) {
                Ok(creds) => credential(creds.force_refresh(refused.as_deref()).await),
                Err(refusal) => refusal,
            },
            Request::RefreshAhead { account } => match self.credentials(&account) {
                Ok(creds) => {
                    creds.refresh_ahead().await;
                    plain(creds.access_token().await)
                }
                Err(refusal) => refusal,
            },
        }
    }

    /// The token service of the account `name`, or the refusal to answer for it.
    fn credentials(&self, name: &str) -> Result<Credentials<'_, C, S, H>, Response> {
        let account = self.config.account(name).map_err(|e| refused(&e))?;
        if account.kind().is_platform() {
            // Its tokens are the Worker's flows over the platform object's records.
            return Err(refused(&Error::NotAvailable(
                "a third-party platform's tokens are served by the Worker, not by its object",
            )));
        }
        Ok(Credentials {
            clock: &self.clock,
            store: &self.store,
            http: &self.http,
            memory: &self.memory,
            account,
        })
    }

    /// One operation on the object's records; a storage failure is [`Response::Failed`].
    async fn record(&self, op: StoreOp) -> Response {
        let store = &self.store;
        let result = match op {
            StoreOp::Get { key } => store.get(&key).await.map(|value| Response::Value { value }),
            StoreOp::Take { key } => store
                .take(&key)
                .await
                .map(|value| Response::Value { value }),
            StoreOp::Put {
                key,
                value,
                ttl_secs,
            } => store
                .put(&key, &value, ttl_secs)
                .await
                .map(|()| Response::Done),
            StoreOp::PutIf {
                key,
                value,
                expected,
                ttl_secs,
            } => store
                .put_if(&key, &value, expected.as_deref(), ttl_secs)
                .await
                .map(|written| Response::Swapped { written }),
            StoreOp::Delete { key } => store.delete(&key).await.map(|()| Response::Done),
            StoreOp::List { prefix } => store
                .list(&prefix)
                .await
                .map(|keys| Response::Keys { keys, cursor: None }),
            StoreOp::ListPage {
                prefix,
                cursor,
                limit,
            } => store
                .list_page(&prefix, cursor.as_deref(), limit)
                .await
                .map(|page| Response::Keys {
                    keys: page.keys,
                    cursor: page.cursor,
                }),
        };
        result.unwrap_or_else(|e| Response::Failed { error: e.0 })
    }
}
