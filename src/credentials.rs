//! The account's access token and JS-SDK ticket, kept fresh in WECHAT_KV.
//!
//! - Served from KV while more than 5 minutes remain; fetched on a miss or after.
//! - Concurrent requests in one isolate that all miss share one fetch (single flight).
//!   Across locations, the stable_token endpoint hands every caller the same token, so
//!   concurrent refreshes cannot invalidate each other.
//! - Forced refreshes happen at most once a minute per account.
//! - A KV read failure falls back to fetching; a KV write failure is logged and the fresh
//!   credential is still returned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use wechat_relay_core::access_token::{self, Stored, TokenEndpoint};
use wechat_relay_core::api_error::ApiError;
use wechat_relay_core::config::{Config, DEFAULT_ACCOUNT};
use wechat_relay_core::Error;
use worker::{Delay, Env, KvStore};

use crate::{log, now_ms, upstream};

/// How long a request waits for another request's fetch before fetching itself.
const COALESCE_WAIT_MS: u64 = 15_000;
const COALESCE_POLL_MS: u64 = 20;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    AccessToken,
    JsapiTicket,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::AccessToken => "access_token",
            Kind::JsapiTicket => "ticket",
        }
    }

    fn kv_key(self) -> String {
        let name = match self {
            Kind::AccessToken => "access_token",
            Kind::JsapiTicket => "jsapi_ticket",
        };
        format!("credential:{DEFAULT_ACCOUNT}:{name}")
    }
}

/// What is being fetched: a forced refresh never shares a plain fetch's result.
type FlightKey = (Kind, bool);

/// One isolate's in-flight fetches, so concurrent misses cause one upstream call.
#[derive(Default)]
struct Flight {
    generation: u64,
    started_ms: Option<u64>,
    finished: Option<(u64, Result<Stored, ApiError>)>,
}

thread_local! {
    static FLIGHTS: RefCell<HashMap<FlightKey, Flight>> = RefCell::new(HashMap::new());
    /// When this isolate last forced a refresh: covers KV's propagation delay.
    static LAST_FORCED: RefCell<Option<u64>> = const { RefCell::new(None) };
}

/// Runs `fetch` unless another request of this isolate is already fetching `kind`, in which
/// case its result is shared.
async fn single_flight<F>(kind: FlightKey, fetch: F) -> Result<Stored, ApiError>
where
    F: std::future::Future<Output = Result<Stored, ApiError>>,
{
    let waiting_for = FLIGHTS.with(|f| {
        let mut flights = f.borrow_mut();
        let flight = flights.entry(kind).or_default();
        match flight.started_ms {
            Some(started) if now_ms().saturating_sub(started) < COALESCE_WAIT_MS => {
                Some(flight.generation)
            }
            _ => None,
        }
    });
    if let Some(generation) = waiting_for {
        let deadline = now_ms() + COALESCE_WAIT_MS;
        while now_ms() < deadline {
            Delay::from(Duration::from_millis(COALESCE_POLL_MS)).await;
            let shared = FLIGHTS.with(|f| {
                f.borrow()
                    .get(&kind)
                    .and_then(|flight| flight.finished.as_ref())
                    .filter(|(g, _)| *g == generation)
                    .map(|(_, result)| result.clone())
            });
            if let Some(result) = shared {
                return result;
            }
        }
    }
    let generation = FLIGHTS.with(|f| {
        let mut flights = f.borrow_mut();
        let flight = flights.entry(kind).or_default();
        flight.generation += 1;
        flight.started_ms = Some(now_ms());
        flight.generation
    });
    let result = fetch.await;
    FLIGHTS.with(|f| {
        if let Some(flight) = f.borrow_mut().get_mut(&kind) {
            if flight.generation == generation {
                flight.started_ms = None;
            }
            flight.finished = Some((generation, result.clone()));
        }
    });
    result
}

/// A failed refresh still serves the stored credential while it is valid: a backend gets a
/// working token for the last minutes rather than an error.
fn fallback(
    kind: Kind,
    fetched: Result<Stored, Error>,
    cached: Option<Stored>,
) -> Result<Stored, Error> {
    match (fetched, cached) {
        (Ok(fresh), _) => Ok(fresh),
        (Err(e), Some(cached)) if cached.is_usable_fallback(now_secs()) => {
            log::warn(
                "refresh failed; serving the stored credential until it expires",
                &[
                    ("key", &kind.kv_key()),
                    ("expires_at", &cached.expires_at.to_string()),
                    ("error", &e.to_string()),
                ],
            );
            Ok(cached)
        }
        (Err(e), _) => Err(e),
    }
}

pub struct Credentials {
    config: Config,
    kv: Option<KvStore>,
}

/// What a forced refresh came to.
pub struct Refreshed {
    pub credential: Stored,
    /// False when the rate limit returned the cached token instead.
    pub refreshed: bool,
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

impl Credentials {
    pub fn new(env: &Env, config: Config) -> Self {
        let kv = match env.kv("WECHAT_KV") {
            Ok(kv) => Some(kv),
            Err(e) => {
                log::error(
                    "WECHAT_KV binding missing; tokens are fetched on every request",
                    &[("error", &e.to_string())],
                );
                None
            }
        };
        Credentials { config, kv }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn load(&self, kind: Kind) -> Option<Stored> {
        let kv = self.kv.as_ref()?;
        match kv.get(&kind.kv_key()).json::<serde_json::Value>().await {
            Ok(found) => found.and_then(|record| Stored::from_record(&record, kind.field())),
            Err(e) => {
                log::warn(
                    "KV read failed; fetching from WeChat",
                    &[("key", &kind.kv_key()), ("error", &e.to_string())],
                );
                None
            }
        }
    }

    async fn save(&self, kind: Kind, stored: &Stored) {
        let Some(kv) = self.kv.as_ref() else { return };
        let ttl = stored.kv_ttl(now_secs());
        let result = match kv.put(&kind.kv_key(), stored.to_record(kind.field()).to_string()) {
            Ok(put) => put.expiration_ttl(ttl).execute().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn(
                "KV write failed; the credential is served but not shared",
                &[("key", &kind.kv_key()), ("error", &e.to_string())],
            );
        }
    }

    async fn fetch_access_token(&self, force: bool) -> Result<Stored, Error> {
        let endpoint = self.config.token_endpoint()?;
        let request = access_token::token_request(
            endpoint,
            self.config.api_base()?,
            self.config.require_app_id()?,
            self.config.app_secret()?,
            force,
        );
        let result = single_flight((Kind::AccessToken, force), async {
            let body = upstream::call(&request).await?;
            access_token::parse_token_response(
                &body,
                now_secs(),
                force || endpoint == TokenEndpoint::Classic,
            )
        })
        .await;
        let stored = result.inspect_err(|e| {
            log::error("access token fetch failed", &[("error", &e.to_string())])
        })?;
        log::info(
            "access token fetched",
            &[
                ("token", &stored.redacted()),
                ("expires_at", &stored.expires_at.to_string()),
                ("forced", &force.to_string()),
            ],
        );
        self.save(Kind::AccessToken, &stored).await;
        Ok(stored)
    }

    /// A token with more than 5 minutes left: from KV, or fetched.
    pub async fn access_token(&self) -> Result<Stored, Error> {
        self.stored_or_fetched(Kind::AccessToken, self.fetch_access_token(false))
            .await
    }

    /// The stored credential while it is fresh; otherwise `fetch`, falling back to the stored
    /// one when the fetch fails and it is still valid.
    async fn stored_or_fetched(
        &self,
        kind: Kind,
        fetch: impl std::future::Future<Output = Result<Stored, Error>>,
    ) -> Result<Stored, Error> {
        let cached = self.load(kind).await;
        if let Some(stored) = cached.as_ref().filter(|s| s.is_fresh(now_secs())) {
            return Ok(stored.clone());
        }
        fallback(kind, fetch.await, cached)
    }

    /// A new token, forced, unless one was forced in the last minute: then the cached one.
    pub async fn force_refresh(&self) -> Result<Refreshed, Error> {
        let now = now_secs();
        let cached = self.load(Kind::AccessToken).await;
        let forced_here = LAST_FORCED.with(|l| *l.borrow());
        let recently_forced = cached
            .as_ref()
            .is_some_and(|c| !c.allows_forced_refresh(now))
            || forced_here.is_some_and(|t| {
                now.saturating_sub(t) < access_token::FORCED_REFRESH_INTERVAL_SECS
            });
        if recently_forced {
            if let Some(credential) = cached.filter(|c| c.expires_at > now) {
                return Ok(Refreshed {
                    credential,
                    refreshed: false,
                });
            }
        }
        LAST_FORCED.with(|l| *l.borrow_mut() = Some(now));
        let credential = self.fetch_access_token(true).await?;
        Ok(Refreshed {
            credential,
            refreshed: true,
        })
    }

    /// The JS-SDK ticket, from KV or fetched (refreshing the token once if WeChat refuses it).
    pub async fn jsapi_ticket(&self) -> Result<Stored, Error> {
        self.stored_or_fetched(Kind::JsapiTicket, self.fetch_jsapi_ticket())
            .await
    }

    async fn fetch_jsapi_ticket(&self) -> Result<Stored, Error> {
        let api_base = self.config.api_base()?.to_owned();
        let mut token = self.access_token().await?;
        let mut retried = false;
        loop {
            let request = access_token::jsapi_ticket_request(&api_base, &token.value);
            let result = single_flight((Kind::JsapiTicket, false), async {
                let body = upstream::call(&request).await?;
                access_token::parse_ticket_response(&body, now_secs())
            })
            .await;
            match result {
                Err(ApiError::WeChat { errcode, .. })
                    if wechat_relay_core::api_error::is_token_invalid(errcode) && !retried =>
                {
                    retried = true;
                    token = self.force_refresh().await?.credential;
                }
                Err(e) => return Err(e.into()),
                Ok(ticket) => {
                    self.save(Kind::JsapiTicket, &ticket).await;
                    return Ok(ticket);
                }
            }
        }
    }

    /// The cron's work: renew what expires within 15 minutes (the ticket only if in use).
    pub async fn refresh_ahead(&self) {
        let now = now_secs();
        let token = self.load(Kind::AccessToken).await;
        if token
            .as_ref()
            .is_none_or(|t| t.needs_scheduled_refresh(now))
        {
            if let Err(e) = self.fetch_access_token(false).await {
                log::error(
                    "scheduled access token refresh failed",
                    &[("error", &e.to_string())],
                );
                return;
            }
        }
        let ticket = self.load(Kind::JsapiTicket).await;
        if ticket.is_some_and(|t| t.needs_scheduled_refresh(now)) {
            if let Err(e) = self.fetch_jsapi_ticket().await {
                log::error(
                    "scheduled jsapi ticket refresh failed",
                    &[("error", &e.to_string())],
                );
            }
        }
    }
}
