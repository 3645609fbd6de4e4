//! The account objects, in memory: [`MemoryRows`] (an object's storage) and
//! [`LocalCoordinator`] (every account's object, run in process, asked through JSON as the
//! Durable Object stub is).

use super::*;
use crate::config::Config;
use crate::coordinator::{
    decode_request, decode_response, encode, encode_response, AccountObject, CoordinationError,
    Coordinator, HealthBook, Request, Response, Rows, RowsError, StoredBucket,
};
use crate::relay::ObjectPorts;
use crate::token::Memory;

/// An object's storage in memory; clones share it (it outlives the object, as SQLite does).
#[derive(Clone, Default)]
pub struct MemoryRows {
    buckets: Rc<RefCell<BTreeMap<u64, StoredBucket>>>,
    /// Every call fails while set.
    pub fail: Rc<Cell<bool>>,
    /// Rows written (inserted, replaced or deleted), as Cloudflare counts them.
    pub written: Rc<Cell<u64>>,
    /// The largest row written so far (its content's bytes).
    pub largest: Rc<Cell<usize>>,
}

impl MemoryRows {
    /// The stored buckets' contents, parsed.
    fn contents(&self) -> Vec<serde_json::Value> {
        self.buckets
            .borrow()
            .values()
            .map(|b| serde_json::from_str(&b.content).unwrap())
            .collect()
    }

    /// How many done marks are stored.
    pub fn marks(&self) -> usize {
        self.contents()
            .iter()
            .map(|c| c["marks"].as_object().map_or(0, |m| m.len()))
            .sum()
    }

    /// How many nonces are stored.
    pub fn nonces(&self) -> usize {
        self.contents()
            .iter()
            .map(|c| c["nonces"].as_object().map_or(0, |m| m.len()))
            .sum()
    }

    /// How many rows (buckets) are stored.
    pub fn rows(&self) -> usize {
        self.buckets.borrow().len()
    }

    /// Overwrites every stored bucket's content (a corrupted row).
    pub fn corrupt(&self) {
        for bucket in self.buckets.borrow_mut().values_mut() {
            bucket.content = "{not json".into();
        }
    }

    fn check(&self) -> Result<(), RowsError> {
        match self.fail.get() {
            true => Err(RowsError("SQLite is unavailable (fake)".into())),
            false => Ok(()),
        }
    }

    fn wrote(&self, rows: usize) {
        self.written.set(self.written.get() + rows as u64);
    }
}

impl Rows for MemoryRows {
    fn buckets(&self, now_secs: u64) -> Result<Vec<StoredBucket>, RowsError> {
        self.check()?;
        Ok(self
            .buckets
            .borrow()
            .values()
            .filter(|b| b.expires_at >= now_secs)
            .cloned()
            .collect())
    }

    fn put_bucket(&self, bucket: &StoredBucket) -> Result<(), RowsError> {
        self.check()?;
        self.wrote(1);
        self.largest
            .set(self.largest.get().max(bucket.content.len()));
        self.buckets.borrow_mut().insert(bucket.key, bucket.clone());
        Ok(())
    }

    fn purge(&self, now_secs: u64) -> Result<(), RowsError> {
        self.check()?;
        let before = self.rows();
        self.buckets
            .borrow_mut()
            .retain(|_, b| b.expires_at >= now_secs);
        self.wrote(before - self.rows());
        Ok(())
    }
}

/// What the objects run the token service with: the fake WeChat and the settings.
type TokenService = (FakeHttp, Rc<Config>);

/// Every account's object on the fake clock. Each request goes through JSON both ways; the
/// objects can be evicted (their memory lost, their rows kept), made unreachable or slow.
#[derive(Clone)]
pub struct LocalCoordinator {
    clock: FakeClock,
    objects: Rc<RefCell<BTreeMap<String, AccountObject<MemoryRows>>>>,
    /// Each object's counts in memory (lost on eviction, as the object's are).
    healths: Rc<RefCell<BTreeMap<String, Rc<HealthBook>>>>,
    pub rows: Rc<RefCell<BTreeMap<String, MemoryRows>>>,
    /// Requests fail (the namespace is unreachable) while set.
    pub unreachable: Rc<Cell<bool>>,
    /// Each answer takes this long.
    pub delay_ms: Rc<Cell<u64>>,
    /// Every request, in order: (account, request).
    pub asked: Rc<RefCell<Vec<(String, Request)>>>,
    /// The token service the objects run (their `fetch` and the settings), once set.
    tokens: Rc<RefCell<Option<TokenService>>>,
    /// Each object's storage for the token service, kept across evictions.
    pub stores: Rc<RefCell<BTreeMap<String, MemoryStore>>>,
    /// Each object's memory of flights and forced refreshes, lost with an eviction.
    memories: Rc<RefCell<BTreeMap<String, Rc<Memory>>>>,
}

impl LocalCoordinator {
    pub fn new(clock: &FakeClock) -> Self {
        LocalCoordinator {
            clock: clock.clone(),
            objects: Rc::default(),
            healths: Rc::default(),
            rows: Rc::default(),
            unreachable: Rc::default(),
            delay_ms: Rc::default(),
            asked: Rc::default(),
            tokens: Rc::default(),
            stores: Rc::default(),
            memories: Rc::default(),
        }
    }

    /// Lets the objects answer credential requests: through `http` (the fake WeChat), with
    /// `config`.
    pub fn with_token_service(self, http: &FakeHttp, config: &Rc<Config>) -> Self {
        *self.tokens.borrow_mut() = Some((http.clone(), config.clone()));
        self
    }

    /// Every object forgets its memory (as after eviction or a restart); storage stays.
    pub fn evict(&self) {
        self.objects.borrow_mut().clear();
        self.healths.borrow_mut().clear();
        self.memories.borrow_mut().clear();
    }

    /// The storage of `account`'s object for the token service.
    /// The counts `account`'s object keeps in memory.
    pub fn health_of(&self, account: &str) -> Rc<HealthBook> {
        self.healths
            .borrow_mut()
            .entry(account.to_owned())
            .or_default()
            .clone()
    }

    pub fn store_of(&self, account: &str) -> MemoryStore {
        self.stores
            .borrow_mut()
            .entry(account.to_owned())
            .or_insert_with(|| MemoryStore::new(&self.clock))
            .clone()
    }

    /// The credential requests asked so far.
    pub fn credential_requests(&self) -> usize {
        self.asked
            .borrow()
            .iter()
            .filter(|(_, r)| !r.is_claim())
            .count()
    }

    /// The storage of `account`'s object.
    pub fn rows_of(&self, account: &str) -> MemoryRows {
        self.rows
            .borrow_mut()
            .entry(account.to_owned())
            .or_default()
            .clone()
    }

    /// The done marks stored by every object.
    pub fn marks(&self) -> usize {
        self.rows.borrow().values().map(MemoryRows::marks).sum()
    }

    /// The claims asked so far (not counting settles).
    pub fn claims(&self) -> usize {
        self.asked
            .borrow()
            .iter()
            .filter(|(_, r)| matches!(r, Request::Claim { .. }))
            .count()
    }
}

impl Coordinator for LocalCoordinator {
    async fn ask(&self, account: &str, request: &Request) -> Result<Response, CoordinationError> {
        self.asked
            .borrow_mut()
            .push((account.to_owned(), request.clone()));
        let delay = self.delay_ms.get();
        if delay > 0 {
            self.clock.sleep(delay).await;
        }
        if self.unreachable.get() {
            return Err(CoordinationError(
                "the account object is unreachable (fake)".into(),
            ));
        }
        let body = encode(request);
        let request = decode_request(body.as_bytes())
            .ok_or_else(|| CoordinationError("request not understood".into()))?;
        if !request.is_claim() {
            let Some((http, config)) = self.tokens.borrow().clone() else {
                return Err(CoordinationError(
                    "this fake's objects run no token service".into(),
                ));
            };
            let memory = self
                .memories
                .borrow_mut()
                .entry(account.to_owned())
                .or_default()
                .clone();
            let mut ports =
                ObjectPorts::new(self.clock.clone(), self.store_of(account), http, config);
            ports.memory = memory;
            ports.health = self.health_of(account);
            let unused = RefCell::new(AccountObject::new(MemoryRows::default()));
            let response = ports.answer(&unused, body.as_bytes()).await;
            return decode_response(encode_response(&response).as_bytes());
        }
        let rows = self.rows_of(account);
        let is_claim = matches!(request, Request::Claim { .. });
        let now_ms = self.clock.now_ms();
        let response = {
            let mut objects = self.objects.borrow_mut();
            let object = objects
                .entry(account.to_owned())
                .or_insert_with(|| AccountObject::new(rows));
            object.handle(request, now_ms)
        };
        if is_claim && response.is_new_claim() {
            self.health_of(account).callback(now_ms);
        }
        decode_response(encode_response(&response).as_bytes())
    }
}
