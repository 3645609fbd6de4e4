//! An account's object, answering the Worker: claims by the claim rules
//! ([`AccountObject`], synchronous), credentials by the token service run here, over the
//! object's own storage, so that every location shares one upstream call and one writer per
//! token. The shell's Durable Object hands each request body to [`ObjectPorts::answer`] and
//! returns what it gives.

use std::cell::{Cell, RefCell};

use super::*;
use crate::coordinator::{
    self, AccountHealth, AccountObject, Flush, HealthBook, Request, Response, Rows, StoreOp,
    Wanted, HEALTH_KEY,
};
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
    /// The account's counts for the console, written at most once a minute.
    pub health: Rc<HealthBook>,
    /// When the counts are due to be written by the alarm (Unix ms), if they are.
    pub alarm_at: Cell<Option<u64>>,
    /// Whether the shell was told to set the alarm.
    pub alarm_pending: Cell<bool>,
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
    /// An object's ports, with nothing in its memory yet.
    pub fn new(clock: C, store: S, http: H, config: Rc<Config>) -> Self {
        ObjectPorts {
            clock,
            store,
            http,
            memory: Rc::default(),
            config,
            health: Rc::default(),
            alarm_at: Cell::new(None),
            alarm_pending: Cell::new(false),
        }
    }

    /// The answer to one request body from the Worker.
    pub async fn answer<R: Rows>(
        &self,
        rules: &RefCell<AccountObject<R>>,
        body: &[u8],
    ) -> Response {
        let Some(request) = coordinator::decode_request(body) else {
            return Response::Failed {
                error: coordinator::NOT_UNDERSTOOD.into(),
            };
        };
        self.load_health().await;
        let answer = self.answer_request(rules, request).await;
        self.flush_health().await;
        answer
    }

    /// The counts stored by an earlier instance of the object, read once.
    async fn load_health(&self) {
        if self.health.is_loaded() {
            return;
        }
        match self.store.get(HEALTH_KEY).await {
            Ok(found) => self.health.load(found.as_deref()),
            Err(e) => {
                log::warn!(error = e.to_string(); "the account's counts could not be read; counting afresh");
                self.health.load(None);
            }
        }
    }

    /// Writes the counts when a minute passed since the last write; else asks for the alarm.
    async fn flush_health(&self) {
        match self.health.flush(self.clock.now_ms()) {
            Flush::Now(text) => {
                if let Err(e) = self.store.put(HEALTH_KEY, &text, None).await {
                    log::warn!(error = e.to_string(); "the account's counts could not be written; trying again later");
                    self.health.not_written();
                }
            }
            Flush::At(at) => {
                if self.alarm_at.get().is_none() {
                    self.alarm_at.set(Some(at));
                }
            }
            Flush::Nothing => {}
        }
    }

    /// The time to set the object's alarm for, once each time one is needed (the shell sets it;
    /// [`ObjectPorts::alarm`] runs it).
    pub fn alarm_to_set(&self) -> Option<u64> {
        match self.alarm_at.get() {
            Some(at) if !self.alarm_pending.get() => {
                self.alarm_pending.set(true);
                Some(at)
            }
            _ => None,
        }
    }

    /// The shell could not set the alarm: it is asked again after the next request.
    pub fn alarm_not_set(&self) {
        self.alarm_pending.set(false);
    }

    /// The object's alarm: the counts of the last minute written (and the alarm asked for
    /// again if it came early).
    pub async fn alarm(&self) {
        self.alarm_at.set(None);
        self.alarm_pending.set(false);
        self.load_health().await;
        self.flush_health().await;
    }

    async fn answer_request<R: Rows>(
        &self,
        rules: &RefCell<AccountObject<R>>,
        request: Request,
    ) -> Response {
        let now_ms = self.clock.now_ms();
        match request {
            // Synchronous: no borrow is held across an await.
            Request::Claim { .. } | Request::Settle { .. } | Request::Report { .. } => {
                let is_claim = matches!(request, Request::Claim { .. });
                let answer = rules.borrow_mut().handle(request, now_ms);
                if is_claim && answer.is_new_claim() {
                    self.health.callback(now_ms);
                }
                answer
            }
            Request::Store { record } => {
                // A failed delivery is a dead letter the object does not hold (not one put back
                // or written again): written only if absent, which reads the object's own rows
                // (a plain read would look the new key up in WECHAT_KV).
                if let StoreOp::Put {
                    key,
                    value,
                    ttl_secs,
                } = &record
                {
                    if key.starts_with(dead_letters::PREFIX)
                        && matches!(
                            self.store.put_if(key, value, None, *ttl_secs).await,
                            Ok(true)
                        )
                    {
                        self.health.failure(now_ms);
                        return Response::Done;
                    }
                }
                self.record(record).await
            }
            Request::Health { account } => {
                Response::Health(Box::new(self.account_health(&account).await))
            }
            Request::Credential { account, wanted } => match self.credentials(&account) {
                Ok(creds) => match wanted {
                    Wanted::AccessToken => plain(self.noted(creds.access_token().await)),
                    Wanted::JsapiTicket => plain(self.noted(creds.jsapi_ticket().await)),
                },
                Err(refusal) => refusal,
            },
            Request::Refresh { account, refused } => match self.credentials(&account) {
                Ok(creds) => credential(self.noted(creds.force_refresh(refused.as_deref()).await)),
                Err(refusal) => refusal,
            },
            Request::RefreshAhead { account } => match self.credentials(&account) {
                Ok(creds) => {
                    creds.refresh_ahead().await;
                    plain(self.noted(creds.access_token().await))
                }
                Err(refusal) => refusal,
            },
        }
    }

    /// What the object knows of `name`: counts, dead letters, credentials' times, and for a
    /// platform its verify ticket and merchants.
    async fn account_health(&self, name: &str) -> AccountHealth {
        let now_ms = self.clock.now_ms();
        let counts = self.health.health();
        let dead_letters = self
            .store
            .count(&dead_letters::prefix(name, None))
            .await
            .unwrap_or_else(|e| {
                log::warn!(error = e.to_string(); "dead letters not counted");
                0
            });
        let mut health = AccountHealth {
            last_callback_at: counts.last_callback_at,
            hours: counts.series(now_ms),
            last_error: counts.last_error,
            dead_letters,
            ..AccountHealth::default()
        };
        let Ok(account) = self.config.account(name) else {
            return health;
        };
        if account.kind().is_platform() {
            health.verify_ticket_at = crate::token::verify_ticket::load_ticket(&self.store, name)
                .await
                .map(|t| t.received_at);
            health.merchants = self
                .store
                .count(&crate::component::authorizer_prefix(name))
                .await
                .ok();
        }
        health.credentials = Credentials {
            clock: &self.clock,
            store: &self.store,
            http: &self.http,
            memory: &self.memory,
            account,
        }
        .state()
        .await;
        health
    }

    /// Notes what a refusal says went wrong: a setting (by name) or WeChat.
    fn note(&self, e: &Error) {
        let now_ms = self.clock.now_ms();
        match e {
            Error::Config(c) => self.health.error(now_ms, "config", &c.to_string()),
            Error::Api(a) => self.health.error(now_ms, "upstream", &a.to_string()),
            _ => {}
        }
    }

    fn noted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            self.note(e);
        }
        result
    }

    /// The token service of the account `name`, or the refusal to answer for it.
    fn credentials(&self, name: &str) -> Result<Credentials<'_, C, S, H>, Response> {
        let account = self.config.account(name).map_err(|e| {
            self.note(&e);
            refused(&e)
        })?;
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
            StoreOp::ReadPage {
                prefix,
                cursor,
                limit,
            } => store
                .read_page(&prefix, cursor.as_deref(), limit)
                .await
                .map(|page| Response::Entries {
                    entries: page.entries,
                    cursor: page.cursor,
                }),
        };
        result.unwrap_or_else(|e| Response::Failed { error: e.0 })
    }
}
