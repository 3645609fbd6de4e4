//! The core's ports over the Workers runtime: the clock and timers, Workers KV, `fetch` and
//! Service Bindings, the settings from the bindings, and the isolate's memory.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use wechat_relay_core::config::{bindings, Config};
use wechat_relay_core::{
    Clock, Destination, FetchError, Http, HttpAnswer, HttpRequest, Memory, Store, StoreError,
};
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, KvStore, Method, Request, RequestInit,
    Response,
};

/// The settings, read from the Worker's bindings (vars and secrets are both strings).
pub fn settings(env: &Env) -> Config {
    Config::load(|name| env.var(name).ok().map(|v| v.to_string()))
}

thread_local! {
    /// What this isolate remembers between requests (single flights, forced refreshes).
    static MEMORY: Rc<Memory> = Rc::new(Memory::default());
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
