//! The ports: what the relay's flows need from the outside world, as small traits.
//!
//! The Worker shell implements them over Workers KV, `fetch` (and Service Bindings), the Cache
//! API, Queues and the runtime's clock; [`crate::testing`] implements them in memory, so every
//! flow runs natively under `cargo test`. Nothing here is Workers-specific: the traits speak of
//! keys, strings, bytes, statuses and milliseconds.
//!
//! The futures are not `Send`: a Worker isolate is single-threaded, and so are the fakes.
#![allow(async_fn_in_trait)]

/// Wall-clock time and waiting.
pub trait Clock {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;

    /// Unix time in seconds.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Resolves after `ms` milliseconds.
    async fn sleep(&self, ms: u64);
}

/// A storage failure: the store's own words, for logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A queue's refusal: the producer's own words, for logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key-value store with expiry (Workers KV: eventually consistent, no compare-and-swap).
pub trait Store {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes `value`; with `ttl_secs`, the entry disappears after that long (at least 60 s).
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every key that starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// At most `limit` keys that start with `prefix`, in key order, from where `cursor` left off;
    /// and the cursor of the next page, `None` after the last.
    async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;
    /// At most `limit` entries under `prefix`, in key order, from where `cursor` left off, each
    /// with its value or why it could not be read, and the next page's cursor. By default
    /// [`read_each`]: a listing and a read of each key; a store that keeps the values beside
    /// the keys answers at once (an account's object: one request where the default makes one
    /// per entry).
    async fn read_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        read_each(self, prefix, cursor, limit).await
    }
    /// How many keys start with `prefix`, counting keys only (1,000 a list operation).
    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut cursor: Option<String> = None;
        let mut n = 0;
        loop {
            let page = self.list_page(prefix, cursor.as_deref(), 1000).await?;
            n += page.keys.len();
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }
    /// Reads and removes an entry, so that of two callers taking one key only one gets it (as
    /// far as the store can promise: Workers KV reads its own location's writes, a Durable
    /// Object is exact).
    async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let found = self.get(key).await?;
        if found.is_some() {
            self.delete(key).await?;
        }
        Ok(found)
    }
    /// Compare-and-set: writes `value` only if the entry is now `expected` (`None`: absent);
    /// whether it wrote. Exact in a Durable Object and in memory; over Workers KV (this default)
    /// a read then a write, which another location can interleave.
    async fn put_if(
        &self,
        key: &str,
        value: &str,
        expected: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        if self.get(key).await?.as_deref() != expected {
            return Ok(false);
        }
        self.put(key, value, ttl_secs).await?;
        Ok(true)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<String>,
    /// Where the next page starts; `None` when this was the last.
    pub cursor: Option<String>,
}

/// One page of a listing with its values: (key, its value or why it was not read), in key
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    pub entries: Vec<(String, Result<String, String>)>,
    /// Where the next page starts; `None` when this was the last.
    pub cursor: Option<String>,
}

/// A page of `store` read a key at a time: its listing, then each key's value (an entry gone in
/// between is left out, one that could not be read is kept with the reason).
pub async fn read_each<S: Store + ?Sized>(
    store: &S,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Entries, StoreError> {
    let page = store.list_page(prefix, cursor, limit).await?;
    let mut entries = Vec::with_capacity(page.keys.len());
    for key in page.keys {
        match store.get(&key).await {
            Ok(Some(value)) => entries.push((key, Ok(value))),
            Ok(None) => {}
            Err(e) => entries.push((key, Err(e.0))),
        }
    }
    Ok(Entries {
        entries,
        cursor: page.cursor,
    })
}

/// The HTTP methods the relay knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
}

impl Method {
    pub fn parse(method: &str) -> Option<Method> {
        Some(match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
        }
    }

    /// Whether requests with this method carry no body.
    pub fn is_bodiless(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// Where an outbound request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// An `http://` or `https://` URL on the internet.
    Url(String),
    /// A Service Binding to another Worker, by binding name, with the path and query to ask for.
    Service { binding: String, path: String },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Url(url) => f.write_str(url),
            Destination::Service { binding, path } => write!(f, "service:{binding}{path}"),
        }
    }
}

/// An outbound HTTP request, described without doing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub destination: Destination,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpRequest {
    pub fn get(url: String) -> Self {
        HttpRequest {
            method: "GET",
            destination: Destination::Url(url),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST of a JSON document.
    pub fn post_json(url: String, body: &serde_json::Value) -> Self {
        HttpRequest {
            method: "POST",
            destination: Destination::Url(url),
            headers: vec![("content-type", "application/json".to_owned())],
            body: Some(body.to_string().into_bytes()),
        }
    }

    /// The URL, for requests to the internet.
    pub fn url(&self) -> Option<&str> {
        match &self.destination {
            Destination::Url(url) => Some(url),
            Destination::Service { .. } => None,
        }
    }
}

/// Why an outbound request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Refused, reset, DNS, TLS: the runtime's words.
    Network(String),
    /// No response headers within the time limit; the request was aborted.
    Timeout,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Network(e) => write!(f, "network error: {e}"),
            FetchError::Timeout => f.write_str("timeout"),
        }
    }
}

/// An answer whose body has not been read yet, so a large one can be streamed on untouched.
pub trait HttpAnswer {
    fn status(&self) -> u16;
    /// A response header, by lowercase name.
    fn header(&self, name: &str) -> Option<String>;
    async fn bytes(self) -> Result<Vec<u8>, FetchError>;
}

/// Outbound HTTP: WeChat's API, webhooks, Service Bindings.
pub trait Http {
    type Answer: HttpAnswer;
    /// Sends `request`, waiting at most `timeout_ms` for the response headers.
    async fn send(
        &self,
        request: &HttpRequest,
        timeout_ms: u64,
    ) -> Result<Self::Answer, FetchError>;
}

/// A queue producer (Cloudflare Queues): messages come back to the consumer, maybe later.
pub trait Queue {
    /// Enqueues `message` (text), to be delivered after `delay_secs`.
    async fn send(&self, message: &str, delay_secs: u32) -> Result<(), QueueError>;
    /// Enqueues every message (text, delay) or none (`sendBatch`: at most 100 messages and
    /// 256 KB together).
    async fn send_batch(&self, messages: &[(String, u32)]) -> Result<(), QueueError>;
}

/// AES-256-CBC decryption of whole blocks, no padding removed (WeChat's padding is checked by
/// the core). The shell uses WebCrypto; [`SoftwareCipher`] is the core's own.
pub trait Cipher {
    async fn cbc_decrypt(
        &self,
        key: &crate::wire::crypto::AesKey,
        ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>, crate::wire::crypto::DecryptError>;
}

/// The core's software AES.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftwareCipher;

impl Cipher for SoftwareCipher {
    async fn cbc_decrypt(
        &self,
        key: &crate::wire::crypto::AesKey,
        mut ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>, crate::wire::crypto::DecryptError> {
        crate::wire::crypto::cbc_decrypt(key, &mut ciphertext)?;
        Ok(ciphertext)
    }
}
