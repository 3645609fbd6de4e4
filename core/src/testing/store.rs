//! Store.

use super::*;

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

    async fn put_if(
        &self,
        key: &str,
        value: &str,
        expected: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        // No await between the read and the write: exact, as in a Durable Object.
        if self.fail_reads.get() {
            return Err(StoreError("store read failed (fake)".into()));
        }
        if self.peek(key).as_deref() != expected {
            self.count();
            return Ok(false);
        }
        self.put(key, value, ttl_secs).await.map(|()| true)
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
