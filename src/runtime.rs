//! The core's ports over the Workers runtime: the clock and timers, Workers KV, `fetch` and
//! Service Bindings, the delivery queue, the account objects (`coordinator.rs`), the settings from the bindings, and the isolate's
//! memory; and the [`Relay`] that puts them together for one request.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wechat_relay_core::config::{bindings, Config};
use wechat_relay_core::coordinator::SharedStore;
use wechat_relay_core::{
    Clock, Destination, FetchError, Http, HttpAnswer, HttpRequest, Memory, Page, Queue, QueueError,
    Relay, Store, StoreError,
};

use crate::coordinator::WorkerCoordinator;
use crate::webcrypto::WebCrypto;

/// The relay's store: a platform's state at its object, the rest in Workers KV.
pub type WorkerStore = SharedStore<WorkerClock, WorkerCoordinator, Kv>;

/// The relay over Workers.
pub type WorkerRelay =
    Relay<WorkerClock, WorkerStore, WorkerCoordinator, WorkerHttp, WorkerQueue, WebCrypto>;

/// The relay for one request (or one queue batch, or one cron run).
pub fn relay(env: &Env, config: Rc<Config>) -> WorkerRelay {
    Relay {
        clock: WorkerClock,
        store: SharedStore {
            clock: WorkerClock,
            coordinator: WorkerCoordinator::new(env),
            local: Kv::new(env),
            platforms: platforms(env),
            objects: env.durable_object(bindings::COORDINATOR).is_ok(),
        },
        coordinator: WorkerCoordinator::new(env),
        http: WorkerHttp::new(env),
        queue: WorkerQueue::from_env(env),
        cipher: WebCrypto,
        memory: memory(),
        config,
    }
}
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, KvStore, Method, Request, RequestInit,
    Response,
};

/// The settings, read from the Worker's bindings (vars and secrets are both strings; a
/// Service Binding is any binding `service:` targets can fetch through).
/// The settings, read from the bindings and parsed once per isolate: bindings cannot change while
/// an isolate lives (a new var or secret is a new deployment, hence new isolates), so a
/// deployment with 50 accounts parses them once, not on every callback.
pub fn settings(env: &Env) -> Rc<Config> {
    parsed(env, |p| p.config.clone())
}

/// The names of the third-party platform accounts (whose records their objects keep).
fn platforms(env: &Env) -> Rc<Vec<String>> {
    parsed(env, |p| p.platforms.clone())
}

/// What the isolate parsed of the bindings, parsed at the first call, whichever asks first.
fn parsed<T>(env: &Env, read: impl FnOnce(&Parsed) -> T) -> T {
    SETTINGS.with(|cell| {
        read(cell.get_or_init(|| {
            let config =
                Config::load_with(&|name| env.var(name).ok().map(|v| v.to_string()), &|name| {
                    env.service(name).is_ok()
                });
            Parsed {
                platforms: Rc::new(config.platform_names()),
                config: Rc::new(config),
            }
        }))
    })
}

/// What [`settings`] keeps for the isolate.
struct Parsed {
    config: Rc<Config>,
    platforms: Rc<Vec<String>>,
}

thread_local! {
    /// What this isolate remembers between requests (single flights, forced refreshes).
    static MEMORY: Rc<Memory> = Rc::new(Memory::default());
    /// The settings, parsed at the isolate's first request.
    static SETTINGS: std::cell::OnceCell<Parsed> = const { std::cell::OnceCell::new() };
}

pub fn memory() -> Rc<Memory> {
    MEMORY.with(Rc::clone)
}

/// The runtime's clock; timers are `setTimeout`.
#[derive(Clone, Copy, Default)]
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> u64 {
        Date::now().as_millis()
    }

    async fn sleep(&self, ms: u64) {
        Delay::from(Duration::from_millis(ms)).await;
    }
}

/// Workers KV (`WECHAT_KV`), or its absence: then every read and write fails, and the core
/// falls back to fetching.
#[derive(Clone)]
pub struct Kv(Option<KvStore>);

impl Kv {
    pub fn new(env: &Env) -> Kv {
        match env.kv(bindings::KV) {
            Ok(kv) => Kv(Some(kv)),
            Err(e) => {
                log::error!(error = e.to_string(); "WECHAT_KV binding missing; tokens are fetched on every request");
                Kv(None)
            }
        }
    }

    fn store(&self) -> Result<&KvStore, StoreError> {
        self.0
            .as_ref()
            .ok_or_else(|| StoreError("the WECHAT_KV binding is missing".into()))
    }
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl Store for Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store()?.get(key).text().await.map_err(store_error)
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let mut put = self.store()?.put(key, value).map_err(store_error)?;
        if let Some(ttl) = ttl_secs {
            put = put.expiration_ttl(ttl);
        }
        put.execute().await.map_err(store_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store()?.delete(key).await.map_err(store_error)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let kv = self.store()?;
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = kv.list().prefix(prefix.to_owned());
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(store_error)?;
            keys.extend(page.keys.into_iter().map(|k| k.name));
            match page.cursor {
                Some(c) if !page.list_complete => cursor = Some(c),
                _ => return Ok(keys),
            }
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let mut list = self
            .store()?
            .list()
            .prefix(prefix.to_owned())
            .limit(limit.clamp(1, 1000) as u64);
        if let Some(c) = cursor {
            list = list.cursor(c.to_owned());
        }
        let page = list.execute().await.map_err(store_error)?;
        Ok(Page {
            keys: page.keys.into_iter().map(|k| k.name).collect(),
            cursor: page.cursor.filter(|_| !page.list_complete),
        })
    }
}

/// `fetch` to the internet, and Service Bindings to other Workers.
#[derive(Clone)]
pub struct WorkerHttp {
    env: Env,
}

impl WorkerHttp {
    pub fn new(env: &Env) -> Self {
        WorkerHttp { env: env.clone() }
    }
}

/// A response whose body has not been read.
pub struct Answer(pub Response);

impl HttpAnswer for Answer {
    fn status(&self) -> u16 {
        self.0.status_code()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.0.headers().get(name).ok().flatten()
    }

    async fn bytes(mut self) -> Result<Vec<u8>, FetchError> {
        self.0
            .bytes()
            .await
            .map_err(|e| FetchError::Network(format!("reading the answer: {e}")))
    }
}

fn build(request: &HttpRequest, url: &str) -> worker::Result<Request> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(request.method.to_owned()))
        .with_headers(headers);
    if let Some(body) = &request.body {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    Request::new_with_init(url, &init)
}

impl Http for WorkerHttp {
    type Answer = Answer;

    async fn send(&self, request: &HttpRequest, timeout_ms: u64) -> Result<Answer, FetchError> {
        let network = |e: worker::Error| FetchError::Network(e.to_string());
        let timeout = Delay::from(Duration::from_millis(timeout_ms));
        pin_mut!(timeout);
        match &request.destination {
            Destination::Url(url) => {
                let controller = AbortController::default();
                let signal = controller.signal();
                let fetch = Fetch::Request(build(request, url).map_err(network)?);
                let send = fetch.send_with_signal(&signal);
                pin_mut!(send);
                match select(send, timeout).await {
                    Either::Left((answer, _)) => answer.map(Answer).map_err(network),
                    Either::Right(_) => {
                        controller.abort();
                        Err(FetchError::Timeout)
                    }
                }
            }
            Destination::Service { binding, path } => {
                let service = self.env.service(binding).map_err(network)?;
                // The host is arbitrary: the binding decides where the request goes.
                let url = format!(
                    "https://{}.service.internal{path}",
                    binding.to_ascii_lowercase()
                );
                let send = service.fetch_request(build(request, &url).map_err(network)?);
                pin_mut!(send);
                match select(send, timeout).await {
                    Either::Left((answer, _)) => answer.map(Answer).map_err(network),
                    Either::Right(_) => Err(FetchError::Timeout),
                }
            }
        }
    }
}

/// The delivery queue's producer (`FORWARD_QUEUE`), when bound. Called through its `send`
/// method, so anything with a Queue's `send(body, options)` works (a test can bind a stand-in
/// that fails).
#[derive(Clone)]
pub struct WorkerQueue(Object);

impl WorkerQueue {
    pub fn from_env(env: &Env) -> Option<WorkerQueue> {
        let binding =
            Reflect::get(env.as_ref(), &JsValue::from_str(bindings::FORWARD_QUEUE)).ok()?;
        if binding.is_undefined() || binding.is_null() {
            return None;
        }
        binding.dyn_into::<Object>().ok().map(WorkerQueue)
    }
}

fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

impl WorkerQueue {
    /// Calls the binding's method `name` with `args` and waits for it.
    async fn call(&self, name: &str, args: &js_sys::Array) -> Result<(), String> {
        let method: Function = Reflect::get(&self.0, &JsValue::from_str(name))
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| format!("FORWARD_QUEUE has no {name} method"))?;
        // Reflect.apply, not method.call(...): on an RPC stub `call` would be a remote method.
        let result = Reflect::apply(&method, &self.0, args).map_err(js_error)?;
        JsFuture::from(Promise::resolve(&result))
            .await
            .map(|_| ())
            .map_err(js_error)
    }
}

/// `{contentType: "text", delaySeconds}`, the options of one message.
fn message_options(target: &Object, delay_secs: u32) -> Result<(), String> {
    Reflect::set(target, &"contentType".into(), &"text".into()).map_err(js_error)?;
    if delay_secs > 0 {
        Reflect::set(target, &"delaySeconds".into(), &JsValue::from(delay_secs))
            .map_err(js_error)?;
    }
    Ok(())
}

impl Queue for WorkerQueue {
    async fn send(&self, message: &str, delay_secs: u32) -> Result<(), QueueError> {
        let options = Object::new();
        message_options(&options, delay_secs).map_err(QueueError)?;
        self.call(
            "send",
            &js_sys::Array::of2(&JsValue::from_str(message), &options),
        )
        .await
        .map_err(QueueError)
    }

    async fn send_batch(&self, messages: &[(String, u32)]) -> Result<(), QueueError> {
        let batch = js_sys::Array::new();
        for (message, delay_secs) in messages {
            let entry = Object::new();
            Reflect::set(&entry, &"body".into(), &JsValue::from_str(message))
                .map_err(|e| QueueError(js_error(e)))?;
            message_options(&entry, *delay_secs).map_err(QueueError)?;
            batch.push(&entry);
        }
        self.call("sendBatch", &js_sys::Array::of1(&batch))
            .await
            .map_err(QueueError)
    }
}
