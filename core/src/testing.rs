//! In-memory implementations of the [`crate::ports`], for native tests of every flow: a virtual
//! clock with its own executor, a store with expiry, and scripted HTTP peers (a fake WeChat API
//! among them).
//!
//! Available to the crate's own tests and, with the `testing` feature, to integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::ports::{Clock, FetchError, Http, HttpAnswer, HttpRequest, Store, StoreError};

// ---------------------------------------------------------------------------------------------
// Clock and executor
// ---------------------------------------------------------------------------------------------

struct ClockState {
    now_ms: Cell<u64>,
    sleepers: RefCell<Vec<(u64, Waker)>>,
}

/// A virtual clock: time moves only when every task waits, straight to the next deadline.
/// Clones share the same time.
#[derive(Clone)]
pub struct FakeClock(Rc<ClockState>);

impl FakeClock {
    pub fn at(now_ms: u64) -> Self {
        FakeClock(Rc::new(ClockState {
            now_ms: Cell::new(now_ms),
            sleepers: RefCell::new(Vec::new()),
        }))
    }

    /// Moves time forward (between steps of a test).
    pub fn advance(&self, ms: u64) {
        self.0.now_ms.set(self.0.now_ms.get() + ms);
    }

    pub fn set_secs(&self, secs: u64) {
        self.0.now_ms.set(secs * 1000);
    }

    /// Runs `future` to completion, moving time forward whenever nothing else can progress.
    /// Panics on a deadlock (every task waiting on something other than the clock).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if flag.0.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                continue;
            }
            // Nothing was woken: jump to the earliest deadline and wake its sleepers.
            let next = self.0.sleepers.borrow().iter().map(|(t, _)| *t).min();
            let Some(next) = next else {
                panic!("deadlock: no task can progress and no timer is pending");
            };
            if next > self.0.now_ms.get() {
                self.0.now_ms.set(next);
            }
            let now = self.0.now_ms.get();
            let due: Vec<Waker> = {
                let mut sleepers = self.0.sleepers.borrow_mut();
                let (due, rest): (Vec<_>, Vec<_>) =
                    sleepers.drain(..).partition(|(t, _)| *t <= now);
                *sleepers = rest;
                due.into_iter().map(|(_, w)| w).collect()
            };
            for w in due {
                w.wake();
            }
        }
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Sleep {
    clock: FakeClock,
    deadline: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.0.now_ms.get() >= self.deadline {
            return Poll::Ready(());
        }
        self.clock
            .0
            .sleepers
            .borrow_mut()
            .push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms.get()
    }

    async fn sleep(&self, ms: u64) {
        Sleep {
            clock: self.clone(),
            deadline: self.0.now_ms.get() + ms,
        }
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

/// Key -> (value, expiry in Unix ms).
type Entries = BTreeMap<String, (String, Option<u64>)>;

/// A store with expiry on the fake clock, and switches to make it fail.
#[derive(Clone)]
pub struct MemoryStore {
    clock: FakeClock,
    entries: Rc<RefCell<Entries>>,
    pub fail_reads: Rc<Cell<bool>>,
    pub fail_writes: Rc<Cell<bool>>,
    /// Every key written, in order.
    pub writes: Rc<RefCell<Vec<String>>>,
    /// Operations (get, put, delete, one per list page) since the last [`MemoryStore::reset_ops`].
    pub ops: Rc<Cell<u32>>,
}

impl MemoryStore {
    pub fn new(clock: &FakeClock) -> Self {
        MemoryStore {
            clock: clock.clone(),
            entries: Rc::default(),
            fail_reads: Rc::default(),
            fail_writes: Rc::default(),
            writes: Rc::default(),
            ops: Rc::default(),
        }
    }

    /// Starts counting operations afresh; returns the count so far.
    pub fn reset_ops(&self) -> u32 {
        self.ops.replace(0)
    }

    fn count(&self) {
        self.ops.set(self.ops.get() + 1);
    }

    /// Reads an entry directly (no failure switches), if it has not expired.
    pub fn peek(&self, key: &str) -> Option<String> {
        let now = self.clock.now_ms();
        self.entries
            .borrow()
            .get(key)
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(v, _)| v.clone())
    }

    pub fn peek_json(&self, key: &str) -> Option<serde_json::Value> {
        self.peek(key).and_then(|v| serde_json::from_str(&v).ok())
    }

    /// Writes an entry directly, without expiry.
    pub fn insert(&self, key: &str, value: &str) {
        self.entries
            .borrow_mut()
            .insert(key.to_owned(), (value.to_owned(), None));
    }

    /// Removes an entry directly (no failure switches, no operation counted).
    pub fn clock_delete(&self, key: &str) {
        self.entries.borrow_mut().remove(key);
    }

    /// The expiry (Unix ms) of an entry.
    pub fn expiry_of(&self, key: &str) -> Option<u64> {
        self.entries.borrow().get(key).and_then(|(_, e)| *e)
    }

    pub fn keys(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        self.entries
            .borrow()
            .iter()
            .filter(|(_, (_, exp))| exp.is_none_or(|e| e > now))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.count();
        if self.fail_reads.get() {
            return Err(StoreError("store read failed (fake)".into()));
        }
        Ok(self.peek(key))
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        self.count();
        if self.fail_writes.get() {
            return Err(StoreError("store write failed (fake)".into()));
        }
        let expiry = ttl_secs.map(|t| self.clock.now_ms() + t * 1000);
        self.writes.borrow_mut().push(key.to_owned());
        self.entries
            .borrow_mut()
            .insert(key.to_owned(), (value.to_owned(), expiry));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count();
        if self.fail_writes.get() {
            return Err(StoreError("store write failed (fake)".into()));
        }
        self.entries.borrow_mut().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if self.fail_reads.get() {
            return Err(StoreError("store read failed (fake)".into()));
        }
        let keys: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        // Workers KV lists 1,000 keys an operation.
        for _ in 0..keys.len().div_ceil(1000).max(1) {
            self.count();
        }
        Ok(keys)
    }

    async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<crate::ports::Page, StoreError> {
        self.count();
        if self.fail_reads.get() {
            return Err(StoreError("store read failed (fake)".into()));
        }
        let limit = limit.clamp(1, 1000);
        let mut keys: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
            .take(limit + 1)
            .collect();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let cursor = more.then(|| keys.last().cloned()).flatten();
        Ok(crate::ports::Page { keys, cursor })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeAnswer {
    pub fn status(status: u16) -> Self {
        FakeAnswer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(value: serde_json::Value) -> Self {
        FakeAnswer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

impl HttpAnswer for FakeAnswer {
    fn status(&self) -> u16 {
        self.status
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    async fn bytes(self) -> Result<Vec<u8>, FetchError> {
        Ok(self.body)
    }
}

/// A request as the fake peer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request: HttpRequest,
    pub at_ms: u64,
}

impl Seen {
    /// The URL's path (or the service path).
    pub fn path(&self) -> String {
        match &self.request.destination {
            crate::ports::Destination::Url(u) => url::Url::parse(u)
                .map(|u| u.path().to_owned())
                .unwrap_or_default(),
            crate::ports::Destination::Service { path, .. } => path.clone(),
        }
    }

    /// A query parameter of the URL.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(self.request.url()?).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.request.body.as_deref().unwrap_or(b"null"))
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Box<dyn Fn(&Seen) -> Result<FakeAnswer, FetchError>>;

/// A scripted HTTP peer: every request is recorded and answered by the handler, after an
/// optional delay on the fake clock.
#[derive(Clone)]
pub struct FakeHttp {
    clock: FakeClock,
    handler: Rc<RefCell<Handler>>,
    pub seen: Rc<RefCell<Vec<Seen>>>,
    pub delay_ms: Rc<Cell<u64>>,
    /// A delay of its own for the requests to one path.
    pub delay_for: Rc<RefCell<BTreeMap<String, u64>>>,
    /// Requests in flight now, and the most ever at once.
    pub in_flight: Rc<Cell<u32>>,
    pub max_in_flight: Rc<Cell<u32>>,
}

/// Counts a request out of flight when it ends, however it ends.
struct InFlight(Rc<Cell<u32>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl FakeHttp {
    pub fn new(
        clock: &FakeClock,
        handler: impl Fn(&Seen) -> Result<FakeAnswer, FetchError> + 'static,
    ) -> Self {
        FakeHttp {
            clock: clock.clone(),
            handler: Rc::new(RefCell::new(Box::new(handler))),
            seen: Rc::default(),
            delay_ms: Rc::default(),
            delay_for: Rc::default(),
            in_flight: Rc::default(),
            max_in_flight: Rc::default(),
        }
    }

    pub fn set_handler(&self, handler: impl Fn(&Seen) -> Result<FakeAnswer, FetchError> + 'static) {
        *self.handler.borrow_mut() = Box::new(handler);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen
            .borrow()
            .iter()
            .filter(|s| s.path() == path)
            .count()
    }
}

impl Http for FakeHttp {
    type Answer = FakeAnswer;

    async fn send(&self, request: &HttpRequest, timeout_ms: u64) -> Result<FakeAnswer, FetchError> {
        let seen = Seen {
            request: request.clone(),
            at_ms: self.clock.now_ms(),
        };
        self.seen.borrow_mut().push(seen.clone());
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight
            .set(self.max_in_flight.get().max(self.in_flight.get()));
        let _in_flight = InFlight(self.in_flight.clone());
        let delay = self
            .delay_for
            .borrow()
            .get(&seen.path())
            .copied()
            .unwrap_or(self.delay_ms.get());
        if delay > timeout_ms {
            self.clock.sleep(timeout_ms).await;
            return Err(FetchError::Timeout);
        }
        if delay > 0 {
            self.clock.sleep(delay).await;
        }
        (self.handler.borrow())(&seen)
    }
}

/// A stand-in for WeChat's API: numbered tokens, `stable_token` semantics (the same token until
/// forced), the JS-SDK ticket, scripted errcodes and outages, and extra routes.
#[derive(Clone)]
pub struct FakeWeChat {
    pub http: FakeHttp,
    pub state: Rc<WeChatState>,
}

/// An extra API route: the request and the current token -> the answer.
pub type Route = Box<dyn Fn(&Seen, Option<String>) -> FakeAnswer>;

#[derive(Default)]
pub struct WeChatState {
    pub issued: Cell<u32>,
    /// The most recently issued token, of any app.
    pub current: RefCell<Option<String>>,
    /// The valid token of each app (AppID or corp id).
    pub by_app: RefCell<BTreeMap<String, String>>,
    /// errcodes to answer token requests with, once each, in order.
    pub token_errors: RefCell<Vec<i64>>,
    pub down: Cell<bool>,
    pub routes: RefCell<BTreeMap<String, Route>>,
}

pub const JSSDK_TICKET: &str =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

impl WeChatState {
    fn issue(&self, app: &str) -> String {
        self.issued.set(self.issued.get() + 1);
        let token = format!("TOKEN_{}_{}", self.issued.get(), "x".repeat(40));
        *self.current.borrow_mut() = Some(token.clone());
        self.by_app
            .borrow_mut()
            .insert(app.to_owned(), token.clone());
        token
    }

    pub fn current(&self) -> Option<String> {
        self.current.borrow().clone()
    }

    /// The valid token of an app.
    pub fn token_of(&self, app: &str) -> Option<String> {
        self.by_app.borrow().get(app).cloned()
    }

    fn is_valid(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.by_app.borrow().values().any(|v| v == t))
    }

    fn next_error(&self) -> Option<FakeAnswer> {
        let mut errors = self.token_errors.borrow_mut();
        (!errors.is_empty()).then(|| {
            let errcode = errors.remove(0);
            FakeAnswer::json(serde_json::json!({
                "errcode": errcode, "errmsg": format!("fake error {errcode}")
            }))
        })
    }
}

impl FakeWeChat {
    pub fn new(clock: &FakeClock) -> Self {
        let state = Rc::new(WeChatState::default());
        let s = state.clone();
        let http = FakeHttp::new(clock, move |seen| s.answer(seen));
        FakeWeChat { http, state }
    }

    pub fn token_calls(&self) -> Vec<Seen> {
        self.http
            .requests()
            .into_iter()
            .filter(|s| s.path().ends_with("token"))
            .collect()
    }

    pub fn route(
        &self,
        path: &str,
        answer: impl Fn(&Seen, Option<String>) -> FakeAnswer + 'static,
    ) {
        self.state
            .routes
            .borrow_mut()
            .insert(path.to_owned(), Box::new(answer));
    }
}

impl WeChatState {
    /// The fake API's answer to a request.
    pub fn answer(&self, seen: &Seen) -> Result<FakeAnswer, FetchError> {
        if self.down.get() {
            return Err(FetchError::Network("connection refused".into()));
        }
        let path = seen.path();
        match path.as_str() {
            "/cgi-bin/stable_token" | "/cgi-bin/token" => {
                if let Some(error) = self.next_error() {
                    return Ok(error);
                }
                let app = seen
                    .query("appid")
                    .or_else(|| seen.json()["appid"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let forced = path == "/cgi-bin/token" || seen.json()["force_refresh"] == true;
                let token = match self.token_of(&app) {
                    Some(t) if !forced => t,
                    _ => self.issue(&app),
                };
                Ok(FakeAnswer::json(
                    serde_json::json!({"access_token": token, "expires_in": 7200}),
                ))
            }
            // WeCom: the same token while it is valid, whatever the caller.
            "/cgi-bin/gettoken" => {
                if let Some(error) = self.next_error() {
                    return Ok(error);
                }
                let corp = seen.query("corpid").unwrap_or_default();
                if seen.query("corpsecret").unwrap_or_default().is_empty() {
                    return Ok(FakeAnswer::json(
                        serde_json::json!({"errcode": 41004, "errmsg": "corpsecret missing"}),
                    ));
                }
                let token = self.token_of(&corp).unwrap_or_else(|| self.issue(&corp));
                Ok(FakeAnswer::json(serde_json::json!({
                    "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200
                })))
            }
            "/cgi-bin/ticket/getticket" | "/cgi-bin/get_jsapi_ticket" => {
                if !self.is_valid(seen.query("access_token").as_deref()) {
                    return Ok(FakeAnswer::json(
                        serde_json::json!({"errcode": 40001, "errmsg": "invalid credential"}),
                    ));
                }
                Ok(FakeAnswer::json(serde_json::json!({
                    "errcode": 0, "errmsg": "ok", "ticket": JSSDK_TICKET, "expires_in": 7200
                })))
            }
            other => match self.routes.borrow().get(other) {
                Some(route) => Ok(route(seen, self.current())),
                None => Ok(FakeAnswer::json(
                    serde_json::json!({"errcode": 404, "errmsg": "fake: no such api"}),
                )),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

struct Line<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for Line<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut line = format!("{} {}", record.level(), record.args());
        let _ = record.key_values().visit(&mut Line(&mut line));
        LOGS.with(|l| l.borrow_mut().push(line));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// The log lines this thread wrote since the last call (`LEVEL message key=value ...`). The
/// first call installs the capturing logger.
pub fn take_logs() -> Vec<String> {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

// ---------------------------------------------------------------------------------------------
// A token service world
// ---------------------------------------------------------------------------------------------

/// Settings from pairs (later pairs win; an empty value unsets).
pub fn config(pairs: &[(&str, &str)]) -> crate::config::Config {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    crate::config::Config::load(|k| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    })
}

/// A clock, a store, a fake WeChat API, an isolate's memory and settings for the account
/// `default` (AppID `wx_test_app`, API base `http://wechat.test`).
pub struct World {
    pub clock: FakeClock,
    pub store: MemoryStore,
    pub wechat: FakeWeChat,
    pub memory: crate::credentials::Memory,
    pub config: crate::config::Config,
}

impl World {
    pub fn new(now_secs: u64, extra: &[(&str, &str)]) -> World {
        let clock = FakeClock::at(now_secs * 1000);
        let mut pairs = vec![
            ("WECHAT_API_BASE", "http://wechat.test"),
            ("WECHAT_APP_ID", "wx_test_app"),
            ("WECHAT_APP_SECRET", "s3cr3t-app-secret"),
        ];
        pairs.extend_from_slice(extra);
        World {
            store: MemoryStore::new(&clock),
            wechat: FakeWeChat::new(&clock),
            clock,
            memory: crate::credentials::Memory::default(),
            config: config(&pairs),
        }
    }

    pub fn creds(&self) -> crate::credentials::Credentials<'_, FakeClock, MemoryStore, FakeHttp> {
        crate::credentials::Credentials {
            clock: &self.clock,
            store: &self.store,
            http: &self.wechat.http,
            memory: &self.memory,
            account: self.config.default_account(),
        }
    }

    /// The credentials of a named account.
    pub fn creds_for(
        &self,
        account: &str,
    ) -> crate::credentials::Credentials<'_, FakeClock, MemoryStore, FakeHttp> {
        crate::credentials::Credentials {
            account: self.config.account(account).unwrap(),
            ..self.creds()
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    pub fn put(&self, key: &str, value: serde_json::Value) {
        self.store.insert(key, &value.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

/// A message in the fake queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub text: String,
    pub visible_at_ms: u64,
    pub enqueued_ms: u64,
    /// Deliveries to the consumer so far.
    pub attempts: u32,
}

/// A queue like Cloudflare Queues on the fake clock: delayed messages, per-message retries with
/// a delay, `max_retries`, and a dead-letter queue. Sends can be made to fail.
#[derive(Clone)]
pub struct FakeQueue {
    clock: FakeClock,
    pub messages: Rc<RefCell<Vec<Queued>>>,
    pub dead: Rc<RefCell<Vec<Queued>>>,
    /// The next n sends fail.
    pub fail_next: Rc<Cell<u32>>,
    /// Every successful send: (text, delay_secs).
    pub sent: Rc<RefCell<Vec<(String, u32)>>>,
    /// How long a message is kept (Cloudflare: 24 h on the free plan); older ones vanish.
    pub retention_ms: Rc<Cell<u64>>,
    /// Messages that vanished past the retention.
    pub expired: Rc<RefCell<Vec<Queued>>>,
}

impl FakeQueue {
    pub fn new(clock: &FakeClock) -> Self {
        FakeQueue {
            clock: clock.clone(),
            messages: Rc::default(),
            dead: Rc::default(),
            fail_next: Rc::default(),
            sent: Rc::default(),
            retention_ms: Rc::new(Cell::new(86_400_000)),
            expired: Rc::default(),
        }
    }

    /// Up to `n` messages visible now (or, if none is, the earliest ones once visible), taken
    /// out of the queue as one batch. Messages past the retention vanish on the way.
    pub fn take_batch(&self, n: usize) -> Vec<Queued> {
        let Some(first) = self.take_next() else {
            return Vec::new();
        };
        let visible = first.visible_at_ms.max(self.clock.now_ms());
        let mut batch = vec![first];
        while batch.len() < n {
            let next = self
                .messages
                .borrow()
                .iter()
                .position(|m| m.visible_at_ms <= visible);
            match next {
                Some(i) => batch.push(self.messages.borrow_mut().remove(i)),
                None => break,
            }
        }
        batch
    }

    pub fn len(&self) -> usize {
        self.messages.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest visible message, taken out of the queue. Messages past the retention
    /// vanish on the way, as on Cloudflare: not dead-lettered, just gone.
    pub fn take_next(&self) -> Option<Queued> {
        let retention = self.retention_ms.get();
        let mut messages = self.messages.borrow_mut();
        let (kept, gone): (Vec<Queued>, Vec<Queued>) = messages
            .drain(..)
            .partition(|m| m.visible_at_ms <= m.enqueued_ms.saturating_add(retention));
        *messages = kept;
        self.expired.borrow_mut().extend(gone);
        let (i, _) = messages
            .iter()
            .enumerate()
            .min_by_key(|(_, m)| m.visible_at_ms)?;
        Some(messages.remove(i))
    }

    /// Puts a message back to be delivered again after `delay_secs`.
    pub fn retry(&self, mut message: Queued, delay_secs: u32) {
        message.visible_at_ms = self.clock.now_ms() + u64::from(delay_secs) * 1000;
        self.messages.borrow_mut().push(message);
    }
}

impl crate::ports::Queue for FakeQueue {
    async fn send_batch(&self, messages: &[(String, u32)]) -> Result<(), String> {
        if messages.len() > 100 || messages.iter().map(|(m, _)| m.len()).sum::<usize>() > 256_000 {
            return Err("batch larger than 100 messages or 256 KB (fake)".into());
        }
        if self.fail_next.get() > 0 {
            self.fail_next.set(self.fail_next.get() - 1);
            return Err("queue unavailable (fake)".into());
        }
        for (message, delay) in messages {
            self.push(message, *delay);
        }
        Ok(())
    }

    async fn send(&self, message: &str, delay_secs: u32) -> Result<(), String> {
        if self.fail_next.get() > 0 {
            self.fail_next.set(self.fail_next.get() - 1);
            return Err("queue unavailable (fake)".into());
        }
        self.push(message, delay_secs);
        Ok(())
    }
}

impl FakeQueue {
    fn push(&self, message: &str, delay_secs: u32) {
        if message.len() > 128_000 {
            panic!("a queue message over 128 KB (Cloudflare refuses it)");
        }
        let now = self.clock.now_ms();
        self.sent
            .borrow_mut()
            .push((message.to_owned(), delay_secs));
        self.messages.borrow_mut().push(Queued {
            text: message.to_owned(),
            visible_at_ms: now + u64::from(delay_secs) * 1000,
            enqueued_ms: now,
            attempts: 0,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// WeChat's side of a callback
// ---------------------------------------------------------------------------------------------

/// How WeChat sends a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Plain,
    Safe,
    Compatible,
}

/// A callback as WeChat would POST it for an account with these secrets: `(query, body)`.
/// `message` is XML or WeChat's JSON format.
pub fn callback(
    token: &str,
    encoding_aes_key: &str,
    receive_id: &str,
    message: &str,
    mode: Sent,
    timestamp: u64,
    nonce: &str,
) -> (crate::callback::Query, Vec<u8>) {
    use crate::signature::sha1_sorted;
    let ts = timestamp.to_string();
    let mut pairs = vec![
        ("signature".to_owned(), sha1_sorted(&[token, &ts, nonce])),
        ("timestamp".to_owned(), ts.clone()),
        ("nonce".to_owned(), nonce.to_owned()),
        ("openid".to_owned(), "o_user".to_owned()),
    ];
    if mode == Sent::Plain {
        return (
            crate::callback::Query::from_pairs(pairs),
            message.as_bytes().to_vec(),
        );
    }
    let key = crate::crypto::AesKey::from_encoding_aes_key(encoding_aes_key).unwrap();
    let encrypted =
        crate::crypto::encrypt(&key, *b"0123456789abcdef", message.as_bytes(), receive_id);
    pairs.push(("encrypt_type".to_owned(), "aes".to_owned()));
    pairs.push((
        "msg_signature".to_owned(),
        sha1_sorted(&[token, &ts, nonce, &encrypted]),
    ));
    // JSON when it is JSON (a hostile test's garbage goes in the XML envelope).
    let json = message.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(message).is_ok_and(|v| v.is_object());
    let body = match (json, mode) {
        (true, Sent::Compatible) => {
            let mut v: serde_json::Value = serde_json::from_str(message).unwrap();
            v["Encrypt"] = encrypted.into();
            v.to_string()
        }
        (true, _) => {
            let v: serde_json::Value = serde_json::from_str(message).unwrap();
            serde_json::json!({"ToUserName": v["ToUserName"], "Encrypt": encrypted}).to_string()
        }
        (false, Sent::Compatible) => message.replace("</xml>", &format!("<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")),
        (false, _) => format!("<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"),
    };
    (crate::callback::Query::from_pairs(pairs), body.into_bytes())
}

/// A text message from `from` with this content and MsgId.
pub fn text_message(from: &str, content: &str, msg_id: u64, create_time: u64) -> String {
    format!("<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")
}

/// A decrypt case of `tests/vectors/official.json` whose name contains `name_part`.
pub fn official_vector(name_part: &str) -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/official.json");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["decrypt"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(name_part))
        .unwrap_or_else(|| panic!("no vector {name_part}"))
        .clone()
}

/// What WeChat does with a safe-mode reply: checks its MsgSignature, decrypts it, checks the
/// receive id, parses the message.
pub fn open_reply(
    body: &str,
    token: &str,
    encoding_aes_key: &str,
    receive_id: &str,
) -> crate::xml::Element {
    let env = crate::xml::parse(body.as_bytes()).unwrap();
    let encrypt = env.child_text("Encrypt").unwrap();
    assert!(crate::signature::verify(
        env.child_text("MsgSignature").unwrap(),
        &[
            token,
            env.child_text("TimeStamp").unwrap(),
            env.child_text("Nonce").unwrap(),
            encrypt
        ]
    ));
    let key = crate::crypto::AesKey::from_encoding_aes_key(encoding_aes_key).unwrap();
    let opened = crate::crypto::decrypt(&key, encrypt, receive_id).unwrap();
    crate::xml::parse(&opened.message).unwrap()
}
