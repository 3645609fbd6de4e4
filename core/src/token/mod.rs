//! The token service's flow: each account's access token and JS-SDK ticket, kept fresh in the
//! [`Store`] and fetched from WeChat through [`Http`].
//!
//! - Served from the store while more than 5 minutes remain; fetched on a miss or after.
//! - Concurrent misses in one isolate share one fetch ([`crate::token::single_flight`]); the leader
//!   writes the store once.
//! - Forced refreshes happen at most once a minute per account: the stored `forced_at` covers
//!   every isolate once KV has propagated, the isolate's own memory covers the minute before.
//! - A failed refresh still serves the stored credential while it has 30 s left.
//! - A store read failure falls back to fetching; a write failure is logged and the fresh
//!   credential is still returned.
//! - Store keys: `credential:<account>:access_token` and `credential:<account>:jsapi_ticket`,
//!   JSON records (see [`Stored::to_record`]) with a TTL just under the credential's life.

pub mod access_token;
pub mod jssdk;
pub mod passthrough;
pub mod single_flight;
pub mod upstream;
pub mod verify_ticket;

use std::cell::RefCell;
use std::collections::HashMap;

use crate::account::{Account, Kind as AccountKind};
use crate::coordinator::{CredentialTimes, CredentialsState, Settlement, Wanted};
use crate::error::api_error::{is_token_invalid, ApiError};
use crate::error::Error;
use crate::ports::{Clock, Http, Store};
use access_token::{Stored, FORCED_REFRESH_INTERVAL_SECS};
use single_flight::Flights;
use verify_ticket as component;

/// The credentials an account has.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Credential {
    AccessToken,
    JsapiTicket,
    /// A third-party platform's authorizer's token (kept in the authorizer's record).
    AuthorizerToken,
}

impl Credential {
    /// The field that holds the value in the stored record (as in WeChat's answer).
    fn field(self) -> &'static str {
        match self {
            Credential::AccessToken | Credential::AuthorizerToken => "access_token",
            Credential::JsapiTicket => "ticket",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Credential::AccessToken => "access_token",
            Credential::JsapiTicket => "jsapi_ticket",
            Credential::AuthorizerToken => "authorizer_token",
        }
    }
}

/// Forced refreshes of an account's own token per day (WeChat's day, UTC+8), below
/// `stable_token`'s 20: what is left covers a human's fix after a looping backend spent it.
pub const FORCED_REFRESH_DAILY_BUDGET: u32 = 15;
/// WeChat's daily quotas reset at midnight in China (UTC+8).
const WECHAT_DAY_OFFSET_SECS: u64 = 8 * 3600;
const BUDGET_TTL_SECS: u64 = 2 * 86_400;

/// The WeChat day of `now` (days since the epoch, in UTC+8).
fn wechat_day(now: u64) -> u64 {
    now.saturating_add(WECHAT_DAY_OFFSET_SECS) / 86_400
}

/// The store key of an account's forced-refresh count for the WeChat day of `now`.
fn budget_key(account: &str, now: u64) -> String {
    format!("forced:{account}:{}", wechat_day(now))
}

/// When the budget of the WeChat day of `now` resets (Unix seconds).
fn budget_resets_at(now: u64) -> u64 {
    wechat_day(now)
        .saturating_add(1)
        .saturating_mul(86_400)
        .saturating_sub(WECHAT_DAY_OFFSET_SECS)
}

/// The largest `POST /token/refresh` body read.
pub const MAX_REFRESH_BODY_BYTES: usize = 4096;

/// The token a `POST /token/refresh` body names as refused: `{"access_token": "…"}`; `None`
/// for an empty body (a refresh as before). Anything else is a 400 saying what is wrong.
pub fn refused_token(body: &[u8]) -> Result<Option<String>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let usage = "the body must be empty or a JSON object: {\"access_token\": \"<the token WeChat refused>\"}";
    let parsed: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Error::BadRequest(usage))?;
    let serde_json::Value::Object(fields) = parsed else {
        return Err(Error::BadRequest(usage));
    };
    match fields.get("access_token") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(t)) if !t.trim().is_empty() => Ok(Some(t.clone())),
        Some(_) => Err(Error::BadRequest(
            "access_token must be the token WeChat refused, as a non-empty string",
        )),
    }
}

/// The store key of an account's credential.
pub fn store_key(account: &str, kind: Credential) -> String {
    format!("credential:{account}:{}", kind.name())
}

/// One flight per account, credential and forcedness: a forced refresh never takes a plain
/// fetch's result.
type FlightKey = (String, Credential, bool);

/// What one isolate remembers between requests: the flights in progress and when it last
/// forced a refresh per account. One per isolate (a thread-local in the shell).
#[derive(Default)]
pub struct Memory {
    flights: Flights<FlightKey, Result<Stored, ApiError>>,
    pub(crate) authorizer_flights: Flights<FlightKey, Result<Stored, Error>>,
    pub(crate) exchanges:
        Flights<String, Result<crate::token::verify_ticket::Authorization, Error>>,
    last_forced: RefCell<HashMap<String, u64>>,
    /// What the accounts' objects answered, kept while fresh: (account, credential).
    kept: RefCell<HashMap<(String, Wanted), Stored>>,
    /// Callback outcomes not yet reported to their object, by object.
    unreported: RefCell<HashMap<String, Vec<Settlement>>>,
    /// Dead letters this isolate is replaying now (so two replays here never both send one).
    replaying: RefCell<std::collections::HashSet<String>>,
    /// Whether this isolate found no dead letter left in WECHAT_KV to move into the objects.
    legacy_dead_letters_moved: std::cell::Cell<bool>,
}

impl Memory {
    /// The credential an account's object answered last, if this isolate has it.
    pub fn kept(&self, account: &str, wanted: Wanted) -> Option<Stored> {
        self.kept
            .borrow()
            .get(&(account.to_owned(), wanted))
            .cloned()
    }

    pub fn keep(&self, account: &str, wanted: Wanted, stored: &Stored) {
        self.kept
            .borrow_mut()
            .insert((account.to_owned(), wanted), stored.clone());
    }

    /// Holds an outcome for the next claim to `object` to carry.
    pub fn hold_settlement(&self, object: &str, settlement: Settlement) {
        self.unreported
            .borrow_mut()
            .entry(object.to_owned())
            .or_default()
            .push(settlement);
    }

    /// Every outcome held for `object` (a claim carries them).
    pub fn take_settlements(&self, object: &str) -> Vec<Settlement> {
        self.unreported
            .borrow_mut()
            .remove(object)
            .unwrap_or_default()
    }

    /// Every outcome held for `object`, if the attempt `attempt` is still among them (no claim
    /// carried it yet).
    pub fn take_settlements_with(&self, object: &str, attempt: &str) -> Option<Vec<Settlement>> {
        let mut unreported = self.unreported.borrow_mut();
        let held = unreported.get(object)?;
        if !held.iter().any(|s| s.attempt == attempt) {
            return None;
        }
        unreported.remove(object)
    }

    /// Gives outcomes back (the claim that carried them got no answer).
    pub fn return_settlements(&self, object: &str, settled: Vec<Settlement>) {
        if settled.is_empty() {
            return;
        }
        self.unreported
            .borrow_mut()
            .entry(object.to_owned())
            .or_default()
            .extend(settled);
    }

    pub fn forget(&self, account: &str, wanted: Wanted) {
        self.kept.borrow_mut().remove(&(account.to_owned(), wanted));
    }

    pub(crate) fn legacy_dead_letters_moved(&self) -> bool {
        self.legacy_dead_letters_moved.get()
    }

    pub(crate) fn mark_legacy_dead_letters_moved(&self) {
        self.legacy_dead_letters_moved.set(true);
    }

    /// Claims `key` for this isolate; `false` when it is claimed already.
    pub(crate) fn claim_replay(&self, key: &str) -> bool {
        self.replaying.borrow_mut().insert(key.to_owned())
    }

    pub(crate) fn release_replay(&self, key: &str) {
        self.replaying.borrow_mut().remove(key);
    }

    /// Whether this isolate forced a refresh of `key` in the last minute.
    pub(crate) fn forced_recently(&self, key: &str, now: u64) -> bool {
        self.last_forced
            .borrow()
            .get(key)
            .is_some_and(|t| now.saturating_sub(*t) < FORCED_REFRESH_INTERVAL_SECS)
    }

    pub(crate) fn note_forced(&self, key: &str, now: u64) {
        self.last_forced.borrow_mut().insert(key.to_owned(), now);
    }
}

/// Where the pass-through (and the late-reply path) gets a token: an account's own, or a
/// third-party platform's authorizer's.
#[allow(async_fn_in_trait)]
pub trait TokenSource {
    /// The kind the token's errors are hinted for.
    fn kind(&self) -> AccountKind;
    /// The API base the token is for.
    fn api_base(&self) -> Result<&str, Error>;
    /// A token with more than 5 minutes left.
    async fn token(&self) -> Result<Stored, Error>;
    /// A forced refresh, rate-limited. `refused` is the token WeChat refused: when it is no
    /// longer the current one, the current one is the answer and WeChat is not asked.
    async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error>;
}

impl<C: Clock, S: Store, H: Http> TokenSource for Credentials<'_, C, S, H> {
    fn kind(&self) -> AccountKind {
        self.account.kind()
    }

    fn api_base(&self) -> Result<&str, Error> {
        Ok(self.account.api_base()?)
    }

    async fn token(&self) -> Result<Stored, Error> {
        self.access_token().await
    }

    async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error> {
        Credentials::force_refresh(self, refused).await
    }
}

/// What a forced refresh came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub credential: Stored,
    /// False when the rate limit returned the stored token instead.
    pub refreshed: bool,
}

/// One account's credentials, over the ports.
pub struct Credentials<'a, C, S, H> {
    pub clock: &'a C,
    pub store: &'a S,
    pub http: &'a H,
    pub memory: &'a Memory,
    pub account: &'a Account,
}

impl<C: Clock, S: Store, H: Http> Credentials<'_, C, S, H> {
    fn key(&self, kind: Credential) -> String {
        store_key(self.account.name(), kind)
    }

    async fn load(&self, kind: Credential) -> Option<Stored> {
        let key = self.key(kind);
        match self.store.get(&key).await {
            Ok(found) => found
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|record| Stored::from_record(&record, kind.field())),
            Err(e) => {
                log::warn!(key = key.as_str(), error = e.to_string(); "KV read failed; fetching from WeChat");
                None
            }
        }
    }

    async fn save(&self, kind: Credential, stored: &Stored) {
        let key = self.key(kind);
        let ttl = stored.kv_ttl(self.clock.now_secs());
        let record = stored.to_record(kind.field()).to_string();
        if let Err(e) = self.store.put(&key, &record, Some(ttl)).await {
            log::warn!(key = key.as_str(), error = e.to_string(); "KV write failed; the credential is served but not shared");
        }
    }

    /// A token with more than 5 minutes left: stored, or fetched.
    pub async fn access_token(&self) -> Result<Stored, Error> {
        self.stored_or_fetched(Credential::AccessToken, || self.fetch_access_token(false))
            .await
    }

    /// The stored credential while it is fresh; otherwise `fetch`, falling back to the stored
    /// one when the fetch fails and it is still valid.
    async fn stored_or_fetched<F, Fut>(&self, kind: Credential, fetch: F) -> Result<Stored, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Stored, Error>>,
    {
        let cached = self.load(kind).await;
        let now = self.clock.now_secs();
        if let Some(stored) = cached.as_ref().filter(|s| s.is_fresh(now)) {
            return Ok(stored.clone());
        }
        match (fetch().await, cached) {
            (Ok(fresh), _) => Ok(fresh),
            (Err(e), Some(cached)) if cached.is_usable_fallback(self.clock.now_secs()) => {
                log::warn!(
                    key = self.key(kind).as_str(), expires_at = cached.expires_at, error = e.to_string();
                    "refresh failed; serving the stored credential until it expires"
                );
                Ok(cached)
            }
            (Err(e), _) => Err(e),
        }
    }

    async fn fetch_access_token(&self, force: bool) -> Result<Stored, Error> {
        let account = self.account;
        let ticket = if account.kind().is_platform() {
            let ticket = component::load_ticket(self.store, account.name()).await;
            if ticket.is_none() {
                component::request_ticket_push(self.clock, self.store, self.http, account).await;
            }
            ticket.map(|t| t.ticket)
        } else {
            None
        };
        let request = access_token::account_token_request(account, force, ticket.as_deref())?;
        let replaces = access_token::replaces_previous(account, force);
        let field = account.kind().token_field();
        let flight = (account.name().to_owned(), Credential::AccessToken, force);
        let result = self
            .memory
            .flights
            .run(self.clock, flight, || async {
                let body = upstream::call(self.clock, self.http, &request).await?;
                let stored = access_token::parse_field_response(
                    &body,
                    field,
                    self.clock.now_secs(),
                    replaces,
                )?;
                log::info!(
                    account = account.name(), token = stored.redacted(),
                    expires_at = stored.expires_at, forced = force;
                    "access token fetched"
                );
                self.save(Credential::AccessToken, &stored).await;
                Ok(stored)
            })
            .await;
        result.map_err(|e: ApiError| {
            log::error!(account = account.name(), error = e.to_string(); "access token fetch failed");
            e.for_kind(account.kind()).into()
        })
    }

    /// A new token, forced, unless `refused` is no longer the current token (then the current
    /// one, WeChat not asked) or one was forced in the last minute (then the stored one); and
    /// within [`FORCED_REFRESH_DAILY_BUDGET`] a day, after which it is
    /// [`Error::RefreshBudgetSpent`] with the stored token.
    pub async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error> {
        let now = self.clock.now_secs();
        let cached = self.load(Credential::AccessToken).await;
        let valid = cached.as_ref().filter(|c| c.expires_at > now);
        if let (Some(refused), Some(current)) = (refused, valid) {
            if current.value != refused {
                log::info!(account = self.account.name(), token = current.redacted(); "refresh asked for a token that was already replaced; the current one is served");
                return Ok(Refreshed {
                    credential: current.clone(),
                    refreshed: false,
                });
            }
        }
        let name = self.account.name().to_owned();
        let recently_forced = cached
            .as_ref()
            .is_some_and(|c| !c.allows_forced_refresh(now))
            || self.memory.forced_recently(&name, now);
        if recently_forced {
            let flight = (name.clone(), Credential::AccessToken, true);
            if refused.is_some() && self.memory.flights.is_running(&flight, self.clock.now_ms()) {
                // The refused token is being replaced right now: wait for its replacement.
                let credential = self.fetch_access_token(true).await?;
                return Ok(Refreshed {
                    credential,
                    refreshed: false,
                });
            }
            if let Some(credential) = valid.cloned() {
                return Ok(Refreshed {
                    credential,
                    refreshed: false,
                });
            }
        }
        let budget = budget_key(&name, now);
        let spent = self.forced_today(&budget).await;
        if spent >= FORCED_REFRESH_DAILY_BUDGET {
            let resets_at = budget_resets_at(now);
            log::warn!(account = name.as_str(), spent = spent; "forced-refresh budget spent for the day; the stored token is served");
            return Err(Error::RefreshBudgetSpent {
                resets_at,
                retry_after_secs: resets_at.saturating_sub(now),
                current: valid.map(|c| (c.value.clone(), c.expires_at)),
            });
        }
        self.memory.note_forced(&name, now);
        if let Err(e) = self
            .store
            .put(
                &budget,
                &spent.saturating_add(1).to_string(),
                Some(BUDGET_TTL_SECS),
            )
            .await
        {
            log::warn!(key = budget.as_str(), error = e.to_string(); "forced-refresh count not stored");
        }
        let credential = self.fetch_access_token(true).await?;
        Ok(Refreshed {
            credential,
            refreshed: true,
        })
    }

    /// What the console shows of the account's credentials: their times, never their values.
    pub async fn state(&self) -> CredentialsState {
        let now = self.clock.now_secs();
        let times = |stored: Option<Stored>| {
            stored.map(|s| CredentialTimes {
                expires_at: s.expires_at,
                fetched_at: s.fetched_at,
                forced_at: s.forced_at,
            })
        };
        CredentialsState {
            access_token: times(self.load(Credential::AccessToken).await),
            jsapi_ticket: times(self.load(Credential::JsapiTicket).await),
            forced_refreshes_today: self
                .forced_today(&budget_key(self.account.name(), now))
                .await,
            forced_refresh_budget: FORCED_REFRESH_DAILY_BUDGET,
        }
    }

    /// How many forced refreshes `budget` (a day's key) has counted.
    async fn forced_today(&self, budget: &str) -> u32 {
        match self.store.get(budget).await {
            Ok(found) => found.and_then(|n| n.trim().parse().ok()).unwrap_or(0),
            Err(e) => {
                log::warn!(key = budget, error = e.to_string(); "forced-refresh count unreadable; counting from zero");
                0
            }
        }
    }

    /// The JS-SDK ticket, stored or fetched (refreshing the token once if WeChat refuses it).
    pub async fn jsapi_ticket(&self) -> Result<Stored, Error> {
        self.stored_or_fetched(Credential::JsapiTicket, || self.fetch_jsapi_ticket())
            .await
    }

    async fn fetch_jsapi_ticket(&self) -> Result<Stored, Error> {
        // Mini Programs have no ticket: refuse before fetching a token for nothing.
        access_token::account_ticket_request(self.account, "")?;
        let mut token = self.access_token().await?;
        let mut retried = false;
        loop {
            let request = access_token::account_ticket_request(self.account, &token.value)?;
            let flight = (
                self.account.name().to_owned(),
                Credential::JsapiTicket,
                false,
            );
            let result = self
                .memory
                .flights
                .run(self.clock, flight, || async {
                    let body = upstream::call(self.clock, self.http, &request).await?;
                    let ticket = access_token::parse_ticket_response(&body, self.clock.now_secs())?;
                    self.save(Credential::JsapiTicket, &ticket).await;
                    Ok(ticket)
                })
                .await;
            match result {
                Err(ApiError::WeChat { errcode, .. }) if is_token_invalid(errcode) && !retried => {
                    retried = true;
                    token = self.force_refresh(Some(&token.value)).await?.credential;
                }
                other => return other.map_err(|e| e.for_kind(self.account.kind()).into()),
            }
        }
    }

    /// `wx.config` for a page: the URL is checked, the ticket served or fetched.
    pub async fn jsapi_config(
        &self,
        url: Option<&str>,
        random: [u8; 16],
    ) -> Result<jssdk::JsSdkConfig, Error> {
        let url = jssdk::check_url(url)?;
        let app_id = self.account.require_app_id()?;
        let ticket = self.jsapi_ticket().await?;
        Ok(jssdk::config(
            app_id,
            &ticket.value,
            url,
            self.clock.now_secs(),
            random,
        ))
    }

    /// The cron's work: renew what expires within 15 minutes (the ticket only if in use).
    pub async fn refresh_ahead(&self) {
        let name = self.account.name();
        if let Err(e) = self.account.app_secret() {
            log::info!(account = name, reason = e.to_string(); "scheduled refresh skipped");
            return;
        }
        let now = self.clock.now_secs();
        let token = self.load(Credential::AccessToken).await;
        if token.is_none_or(|t| t.needs_scheduled_refresh(now)) {
            if let Err(e) = self.fetch_access_token(false).await {
                log::error!(account = name, error = e.to_string(); "scheduled access token refresh failed");
                return;
            }
        }
        let ticket = self.load(Credential::JsapiTicket).await;
        if ticket.is_some_and(|t| t.needs_scheduled_refresh(now)) {
            if let Err(e) = self.fetch_jsapi_ticket().await {
                log::error!(account = name, error = e.to_string(); "scheduled jsapi ticket refresh failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, World, JSSDK_TICKET};
    use futures_util::future::join_all;

    const NOW: u64 = 1_800_000_000;
    const KEY: &str = "credential:default:access_token";
    const TICKET_KEY: &str = "credential:default:jsapi_ticket";

    fn world(extra: &[(&str, &str)]) -> World {
        World::new(NOW, extra)
    }

    fn token(w: &World) -> Result<Stored, Error> {
        w.clock.run(w.creds().access_token())
    }

    #[test]
    fn fetches_from_stable_token_once_stores_it_then_serves_the_store() {
        let w = world(&[]);
        let t = token(&w).unwrap();
        assert_eq!(Some(t.value.clone()), w.wechat.state.current());
        assert_eq!(t.expires_at, NOW + 7200);
        let calls = w.wechat.token_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].request.method, "POST");
        assert_eq!(calls[0].path(), "/cgi-bin/stable_token");
        assert_eq!(
            calls[0].json(),
            serde_json::json!({"grant_type": "client_credential", "appid": "wx_test_app", "secret": "s3cr3t-app-secret", "force_refresh": false})
        );
        let stored = w.store.peek_json(KEY).unwrap();
        assert_eq!(stored["access_token"], t.value.as_str());
        assert_eq!(stored["expires_at"], NOW + 7200);
        assert_eq!(stored["fetched_at"], NOW);
        // The store entry expires 2 minutes before the token.
        assert_eq!(w.store.expiry_of(KEY), Some((NOW + 7200 - 120) * 1000));
        for _ in 0..3 {
            assert_eq!(token(&w).unwrap().value, t.value);
        }
        assert_eq!(w.wechat.token_calls().len(), 1);
    }

    #[test]
    fn concurrent_misses_share_one_fetch_and_one_write() {
        let w = world(&[]);
        w.wechat.http.delay_ms.set(300);
        let creds = w.creds();
        let all = w.clock.run(join_all((0..12).map(|_| creds.access_token())));
        assert_eq!(w.wechat.token_calls().len(), 1);
        let values: std::collections::HashSet<_> =
            all.into_iter().map(|r| r.unwrap().value).collect();
        assert_eq!(values.len(), 1);
        assert_eq!(w.store.writes.borrow().len(), 1);
    }

    #[test]
    fn served_until_five_minutes_before_expiry_refreshed_after() {
        let w = world(&[]);
        let now = w.now();
        w.put(KEY, serde_json::json!({"access_token": "CACHED", "expires_at": now + 310, "fetched_at": now - 6890}));
        assert_eq!(token(&w).unwrap().value, "CACHED");
        assert!(w.wechat.token_calls().is_empty());
        w.put(KEY, serde_json::json!({"access_token": "CACHED", "expires_at": now + 295, "fetched_at": now - 6905}));
        let fresh = token(&w).unwrap();
        assert_ne!(fresh.value, "CACHED");
        assert_eq!(w.wechat.token_calls().len(), 1);
        assert_eq!(
            w.store.peek_json(KEY).unwrap()["access_token"],
            fresh.value.as_str()
        );
    }

    #[test]
    fn a_failed_refresh_serves_the_stored_token_while_valid() {
        let w = world(&[]);
        let now = w.now();
        w.put(KEY, serde_json::json!({"access_token": "STILL_VALID", "expires_at": now + 200, "fetched_at": now - 7000}));
        w.wechat.state.token_errors.borrow_mut().push(45009);
        testing::take_logs();
        assert_eq!(token(&w).unwrap().value, "STILL_VALID");
        assert_eq!(w.wechat.token_calls().len(), 1);
        assert!(testing::take_logs()
            .iter()
            .any(|l| l.contains("serving the stored credential")));
        // Within 30 s of expiry it is no longer handed out: the error is.
        w.put(KEY, serde_json::json!({"access_token": "ALMOST_GONE", "expires_at": now + 20, "fetched_at": now - 7180}));
        w.wechat.state.token_errors.borrow_mut().push(45009);
        let err = token(&w).unwrap_err();
        assert!(matches!(
            err,
            Error::Api(ApiError::WeChat { errcode: 45009, .. })
        ));
        assert_eq!(err.status(), 502);
    }

    #[test]
    fn a_broken_store_still_serves_fetched_tokens() {
        let w = world(&[]);
        w.store.fail_reads.set(true);
        w.store.fail_writes.set(true);
        let t = token(&w).unwrap();
        assert_eq!(Some(t.value), w.wechat.state.current());
        assert_eq!(token(&w).unwrap().value, w.wechat.state.current().unwrap());
        assert_eq!(
            w.wechat.token_calls().len(),
            2,
            "nothing stored, so fetched each time"
        );
    }

    #[test]
    fn classic_endpoint_uses_get_token() {
        let w = world(&[("WECHAT_TOKEN_ENDPOINT", "classic")]);
        let t = token(&w).unwrap();
        let calls = w.wechat.token_calls();
        assert_eq!(calls[0].request.method, "GET");
        assert_eq!(calls[0].path(), "/cgi-bin/token");
        assert_eq!(calls[0].query("appid").as_deref(), Some("wx_test_app"));
        assert_eq!(
            calls[0].query("secret").as_deref(),
            Some("s3cr3t-app-secret")
        );
        assert_eq!(
            calls[0].query("grant_type").as_deref(),
            Some("client_credential")
        );
        // Classic tokens count as forced: they replace the previous one.
        assert_eq!(t.forced_at, Some(NOW));
    }

    #[test]
    fn errcodes_unreachable_and_missing_settings() {
        let w = world(&[]);
        w.wechat.state.token_errors.borrow_mut().push(40164);
        let e = token(&w).unwrap_err();
        assert_eq!(e.status(), 502);
        assert!(e.to_string().contains("40164"));
        // errcode -1 is retried once after a pause.
        w.wechat.state.token_errors.borrow_mut().push(-1);
        assert!(token(&w).is_ok());
        assert_eq!(w.wechat.token_calls().len(), 3);
        let w = world(&[]);
        w.wechat.state.down.set(true);
        let e = token(&w).unwrap_err();
        assert_eq!(
            (e.status(), e.headers()),
            (503, vec![("retry-after", "5".to_owned())])
        );
        let w = world(&[("WECHAT_APP_SECRET", "")]);
        let e = token(&w).unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(e.to_string().contains("WECHAT_APP_SECRET"));
        assert!(w.wechat.token_calls().is_empty());
    }

    #[test]
    fn logs_show_at_most_four_characters_of_a_token_and_never_the_secret() {
        let w = world(&[]);
        testing::take_logs();
        let t = token(&w).unwrap();
        let r = w.clock.run(w.creds().force_refresh(None)).unwrap();
        let logs = testing::take_logs().join("\n");
        assert!(logs.contains("access token fetched"), "{logs}");
        for secret in [
            t.value.as_str(),
            r.credential.value.as_str(),
            "s3cr3t-app-secret",
            "TOKEN_1_",
        ] {
            assert!(!logs.contains(secret), "{secret} in {logs}");
        }
    }

    #[test]
    fn forced_refresh_at_most_once_a_minute() {
        let w = world(&[]);
        let first = token(&w).unwrap();
        let r1 = w.clock.run(w.creds().force_refresh(None)).unwrap();
        assert!(r1.refreshed);
        assert_ne!(r1.credential.value, first.value);
        assert_eq!(w.wechat.token_calls()[1].json()["force_refresh"], true);
        let r2 = w.clock.run(w.creds().force_refresh(None)).unwrap();
        assert!(!r2.refreshed);
        assert_eq!(r2.credential.value, r1.credential.value);
        assert_eq!(w.wechat.token_calls().len(), 2);
        // Another isolate (fresh memory) sees forced_at in the store.
        let other = Memory::default();
        let creds = Credentials {
            memory: &other,
            ..w.creds()
        };
        assert!(!w.clock.run(creds.force_refresh(None)).unwrap().refreshed);
        // A minute later a forced refresh goes through again.
        w.clock.advance(60_000);
        assert!(
            w.clock
                .run(w.creds().force_refresh(None))
                .unwrap()
                .refreshed
        );
        assert_eq!(w.wechat.token_calls().len(), 3);
    }

    #[test]
    fn forced_refresh_within_the_minute_is_limited_by_memory_when_the_store_lags() {
        let w = world(&[]);
        assert!(
            w.clock
                .run(w.creds().force_refresh(None))
                .unwrap()
                .refreshed
        );
        // KV has not propagated (another location wrote an older record).
        let now = w.now();
        w.put(KEY, serde_json::json!({"access_token": "OLDER", "expires_at": now + 3000, "fetched_at": now - 100}));
        let r = w.clock.run(w.creds().force_refresh(None)).unwrap();
        assert!(!r.refreshed);
        assert_eq!(r.credential.value, "OLDER");
    }

    #[test]
    fn a_refresh_naming_a_replaced_token_answers_the_current_one_without_asking_wechat() {
        let w = world(&[]);
        let first = token(&w).unwrap();
        w.wechat.http.delay_ms.set(300);
        // Two backends got 40001 with the first token, at once.
        let creds = w.creds();
        let both = w.clock.run(join_all(
            (0..2).map(|_| creds.force_refresh(Some(first.value.as_str()))),
        ));
        let (a, b) = (both[0].clone().unwrap(), both[1].clone().unwrap());
        assert_eq!(
            w.wechat.token_calls().len(),
            2,
            "one forced refresh for both"
        );
        assert_eq!(a.credential.value, b.credential.value);
        assert_eq!([a.refreshed, b.refreshed].iter().filter(|r| **r).count(), 1);
        // A minute later a backend still holding the first token is told the current one.
        w.clock.advance(120_000);
        let late = w
            .clock
            .run(w.creds().force_refresh(Some(first.value.as_str())))
            .unwrap();
        assert!(!late.refreshed);
        assert_eq!(late.credential.value, a.credential.value);
        assert_eq!(w.wechat.token_calls().len(), 2);
        // Naming the current token forces a new one.
        let current = a.credential.value.clone();
        let forced = w
            .clock
            .run(w.creds().force_refresh(Some(current.as_str())))
            .unwrap();
        assert!(forced.refreshed);
        assert_ne!(forced.credential.value, current);
    }

    #[test]
    fn forced_refreshes_stop_at_the_daily_budget_with_a_429_and_the_stored_token() {
        let w = world(&[]);
        for _ in 0..FORCED_REFRESH_DAILY_BUDGET {
            assert!(
                w.clock
                    .run(w.creds().force_refresh(None))
                    .unwrap()
                    .refreshed
            );
            w.clock.advance(61_000);
        }
        let calls = w.wechat.token_calls().len();
        let e = w.clock.run(w.creds().force_refresh(None)).unwrap_err();
        assert_eq!((e.status(), e.code()), (429, "refresh_budget_spent"));
        assert_eq!(w.wechat.token_calls().len(), calls, "WeChat not asked");
        let now = w.now();
        let Error::RefreshBudgetSpent {
            resets_at,
            retry_after_secs,
            current,
        } = &e
        else {
            panic!("{e:?}")
        };
        // Midnight in China.
        assert_eq!((resets_at + 8 * 3600) % 86_400, 0);
        assert!(*resets_at > now && *resets_at <= now + 86_400);
        assert_eq!(*retry_after_secs, resets_at - now);
        let stored = w.store.peek_json(KEY).unwrap();
        assert_eq!(
            current.as_ref().map(|c| c.0.as_str()),
            stored["access_token"].as_str()
        );
        let body: serde_json::Value =
            serde_json::from_str(&e.render(crate::error::Format::Json).body).unwrap();
        assert_eq!(body["access_token"], stored["access_token"]);
        assert_eq!(body["resets_at"], *resets_at);
        // The next WeChat day has a budget again.
        w.clock.set_secs(*resets_at);
        assert!(
            w.clock
                .run(w.creds().force_refresh(None))
                .unwrap()
                .refreshed
        );
    }

    #[test]
    fn a_refresh_body_is_empty_or_names_a_token() {
        assert_eq!(refused_token(b"").unwrap(), None);
        assert_eq!(refused_token(b" \n").unwrap(), None);
        assert_eq!(refused_token(b"{}").unwrap(), None);
        assert_eq!(refused_token(br#"{"access_token": null}"#).unwrap(), None);
        assert_eq!(
            refused_token(br#"{"access_token": "T1", "other": 1}"#).unwrap(),
            Some("T1".into())
        );
        for hostile in [
            &b"access_token=T1"[..],
            br#"{"access_token": 5}"#,
            br#"{"access_token": ""}"#,
            br#"["T1"]"#,
            b"{\"access_token\": \"\xff\"}",
            br#"{"access_token": "a""#,
        ] {
            let e = refused_token(hostile).unwrap_err();
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(hostile));
        }
    }

    #[test]
    fn jsapi_ticket_is_fetched_with_the_token_and_stored() {
        let w = world(&[]);
        let config = w
            .clock
            .run(
                w.creds()
                    .jsapi_config(Some("http://mp.weixin.qq.com?params=value#frag"), [7; 16]),
            )
            .unwrap();
        assert_eq!(config.app_id, "wx_test_app");
        assert_eq!(
            config.signature,
            jssdk::signature(
                JSSDK_TICKET,
                &config.nonce_str,
                config.timestamp,
                "http://mp.weixin.qq.com?params=value"
            )
        );
        assert_eq!(
            w.store.peek_json(TICKET_KEY).unwrap()["ticket"],
            JSSDK_TICKET
        );
        assert!(w.clock.run(w.creds().jsapi_config(None, [0; 16])).is_err());
        assert_eq!(
            w.clock
                .run(w.creds().jsapi_config(Some("javascript:alert(1)"), [0; 16]))
                .unwrap_err(),
            Error::MalformedParameter("url")
        );
    }

    #[test]
    fn a_ticket_refused_with_40001_refreshes_the_token_once() {
        let w = world(&[]);
        let now = w.now();
        w.put(KEY, serde_json::json!({"access_token": "REVOKED", "expires_at": now + 7000, "fetched_at": now}));
        let ticket = w.clock.run(w.creds().jsapi_ticket()).unwrap();
        assert_eq!(ticket.value, JSSDK_TICKET);
        let tickets: Vec<_> = w
            .wechat
            .http
            .requests()
            .into_iter()
            .filter(|s| s.path() == "/cgi-bin/ticket/getticket")
            .collect();
        assert_eq!(tickets.len(), 2);
        assert_eq!(tickets[0].query("access_token").as_deref(), Some("REVOKED"));
        assert_eq!(tickets[1].query("access_token"), w.wechat.state.current());
        assert_eq!(w.wechat.token_calls()[0].json()["force_refresh"], true);
    }

    #[test]
    fn refresh_ahead_renews_what_expires_within_15_minutes() {
        let w = world(&[]);
        let now = w.now();
        w.put(KEY, serde_json::json!({"access_token": "FRESH", "expires_at": now + 3600, "fetched_at": now}));
        w.clock.run(w.creds().refresh_ahead());
        assert!(w.wechat.token_calls().is_empty());
        w.put(KEY, serde_json::json!({"access_token": "OLD", "expires_at": now + 600, "fetched_at": now - 6600}));
        w.clock.run(w.creds().refresh_ahead());
        assert_eq!(w.wechat.token_calls().len(), 1);
        assert_eq!(
            w.store.peek_json(KEY).unwrap()["access_token"],
            w.wechat.state.current().unwrap().as_str()
        );
        // The ticket only once it is in use.
        assert!(w.store.peek(TICKET_KEY).is_none());
        w.put(
            TICKET_KEY,
            serde_json::json!({"ticket": "OLD", "expires_at": now + 60, "fetched_at": now - 7140}),
        );
        w.clock.run(w.creds().refresh_ahead());
        assert_eq!(
            w.store.peek_json(TICKET_KEY).unwrap()["ticket"],
            JSSDK_TICKET
        );
        // Without an AppSecret there is nothing to do.
        let w = world(&[("WECHAT_APP_SECRET", "")]);
        w.clock.run(w.creds().refresh_ahead());
        assert!(w.wechat.http.requests().is_empty());
    }

    fn accounts_world() -> World {
        World::new(
            NOW,
            &[
                (
                    "WECHAT_ACCOUNTS",
                    r#"{"shop": {"kind": "official", "app_id": "wx_shop"},
                        "staff": {"kind": "wecom", "corp_id": "ww_corp", "agent_id": "1000002"},
                        "mini": {"kind": "miniprogram", "app_id": "wx_mini"}}"#,
                ),
                ("WECHAT_SHOP_APP_SECRET", "shop-secret"),
                ("WECHAT_STAFF_APP_SECRET", "staff-secret"),
                ("WECHAT_MINI_APP_SECRET", "mini-secret"),
                ("WECOM_API_BASE", "http://wecom.test"),
            ],
        )
    }

    #[test]
    fn each_account_has_its_own_token_store_key_and_endpoint() {
        let w = accounts_world();
        let shop = w.clock.run(w.creds_for("shop").access_token()).unwrap();
        let staff = w.clock.run(w.creds_for("staff").access_token()).unwrap();
        let mini = w.clock.run(w.creds_for("mini").access_token()).unwrap();
        let default = token(&w).unwrap();
        let all = [&shop.value, &staff.value, &mini.value, &default.value];
        assert_eq!(
            all.iter().collect::<std::collections::HashSet<_>>().len(),
            4
        );
        assert_eq!(Some(shop.value.clone()), w.wechat.state.token_of("wx_shop"));
        assert_eq!(
            Some(staff.value.clone()),
            w.wechat.state.token_of("ww_corp")
        );
        for (account, t) in [
            ("shop", &shop),
            ("staff", &staff),
            ("mini", &mini),
            ("default", &default),
        ] {
            let stored = w
                .store
                .peek_json(&store_key(account, Credential::AccessToken))
                .unwrap();
            assert_eq!(stored["access_token"], t.value.as_str(), "{account}");
        }
        let calls = w.wechat.token_calls();
        let staff_call = calls
            .iter()
            .find(|c| c.path() == "/cgi-bin/gettoken")
            .unwrap();
        assert!(staff_call
            .request
            .url()
            .unwrap()
            .starts_with("http://wecom.test/"));
        assert_eq!(staff_call.query("corpid").as_deref(), Some("ww_corp"));
        assert_eq!(
            staff_call.query("corpsecret").as_deref(),
            Some("staff-secret")
        );
        let mini_call = calls
            .iter()
            .find(|c| c.json()["appid"] == "wx_mini")
            .unwrap();
        assert_eq!(mini_call.path(), "/cgi-bin/stable_token");
        assert_eq!(mini_call.json()["secret"], "mini-secret");
        // Served from each account's own store entry afterwards.
        w.clock.run(w.creds_for("shop").access_token()).unwrap();
        w.clock.run(w.creds_for("staff").access_token()).unwrap();
        assert_eq!(w.wechat.token_calls().len(), 4);
    }

    #[test]
    fn forced_refresh_limits_are_per_account() {
        let w = accounts_world();
        assert!(
            w.clock
                .run(w.creds_for("shop").force_refresh(None))
                .unwrap()
                .refreshed
        );
        assert!(
            !w.clock
                .run(w.creds_for("shop").force_refresh(None))
                .unwrap()
                .refreshed
        );
        assert!(
            w.clock
                .run(w.creds().force_refresh(None))
                .unwrap()
                .refreshed,
            "default is not limited by shop"
        );
    }

    #[test]
    fn js_sdk_tickets_per_kind() {
        let w = accounts_world();
        let staff = w
            .clock
            .run(
                w.creds_for("staff")
                    .jsapi_config(Some("https://work.example/p"), [1; 16]),
            )
            .unwrap();
        assert_eq!(staff.app_id, "ww_corp");
        assert_eq!(w.wechat.http.count("/cgi-bin/get_jsapi_ticket"), 1);
        assert_eq!(
            w.store
                .peek_json(&store_key("staff", Credential::JsapiTicket))
                .unwrap()["ticket"],
            JSSDK_TICKET
        );
        let e = w
            .clock
            .run(
                w.creds_for("mini")
                    .jsapi_config(Some("https://a.example/"), [1; 16]),
            )
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (404, "not_available"));
        assert!(
            w.wechat
                .token_calls()
                .iter()
                .all(|c| c.json()["appid"] != "wx_mini"),
            "no token fetched for nothing"
        );
    }

    #[test]
    fn wecom_errcodes_get_wecom_hints() {
        let w = accounts_world();
        w.wechat.state.token_errors.borrow_mut().push(60020);
        let e = w
            .clock
            .run(w.creds_for("staff").access_token())
            .unwrap_err();
        let rendered = e.render(crate::error::Format::Json);
        let body: serde_json::Value = serde_json::from_str(&rendered.body).unwrap();
        assert_eq!(
            (rendered.status, body["errcode"].as_i64()),
            (502, Some(60020))
        );
        assert!(
            body["hint"].as_str().unwrap().contains("trusted IP"),
            "{body}"
        );
        w.wechat.state.token_errors.borrow_mut().push(40013);
        let e = w
            .clock
            .run(w.creds_for("staff").access_token())
            .unwrap_err();
        assert!(e
            .render(crate::error::Format::Json)
            .body
            .contains("corp_id"));
    }

    #[test]
    fn the_cron_renews_every_account() {
        let w = accounts_world();
        for account in w.config.accounts() {
            w.clock.run(w.creds_for(account.name()).refresh_ahead());
        }
        for account in ["default", "shop", "staff", "mini"] {
            assert!(
                w.store
                    .peek(&store_key(account, Credential::AccessToken))
                    .is_some(),
                "{account}"
            );
        }
    }
}
