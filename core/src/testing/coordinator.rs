//! The account objects, in memory: [`MemoryRows`] (an object's storage) and
//! [`LocalCoordinator`] (every account's object, run in process, asked through JSON as the
//! Durable Object stub is).

use super::*;
use crate::coordinator::{
    decode_request, decode_response, encode, encode_response, AccountObject, CoordinationError,
    Coordinator, Mark, Request, Response, Rows, RowsError,
};

/// An object's storage in memory; clones share it (it outlives the object, as SQLite does).
#[derive(Clone, Default)]
pub struct MemoryRows {
    marks: Rc<RefCell<BTreeMap<String, Mark>>>,
    nonces: Rc<RefCell<BTreeMap<String, (String, u64)>>>,
    /// Every call fails while set.
    pub fail: Rc<Cell<bool>>,
    /// Rows written (inserted, replaced or deleted), as Cloudflare counts them.
    pub written: Rc<Cell<u64>>,
}

impl MemoryRows {
    pub fn marks(&self) -> usize {
        self.marks.borrow().len()
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
    fn mark(&self, event_id: &str) -> Result<Option<Mark>, RowsError> {
        self.check()?;
        Ok(self.marks.borrow().get(event_id).cloned())
    }

    fn put_mark(&self, event_id: &str, mark: &Mark) -> Result<(), RowsError> {
        self.check()?;
        self.wrote(1);
        self.marks
            .borrow_mut()
            .insert(event_id.to_owned(), mark.clone());
        Ok(())
    }

    fn nonce(&self, key: &str) -> Result<Option<(String, u64)>, RowsError> {
        self.check()?;
        Ok(self.nonces.borrow().get(key).cloned())
    }

    fn put_nonce(&self, key: &str, body_sha1: &str, expires_at: u64) -> Result<(), RowsError> {
        self.check()?;
        self.wrote(1);
        self.nonces
            .borrow_mut()
            .insert(key.to_owned(), (body_sha1.to_owned(), expires_at));
        Ok(())
    }

    fn purge(&self, now_secs: u64) -> Result<(), RowsError> {
        self.check()?;
        let before = self.marks().saturating_add(self.nonces.borrow().len());
        self.marks
            .borrow_mut()
            .retain(|_, m| m.expires_at >= now_secs);
        self.nonces.borrow_mut().retain(|_, n| n.1 >= now_secs);
        let after = self.marks().saturating_add(self.nonces.borrow().len());
        self.wrote(before - after);
        Ok(())
    }
}

/// Every account's object on the fake clock. Each request goes through JSON both ways; the
/// objects can be evicted (their memory lost, their rows kept), made unreachable or slow.
#[derive(Clone)]
pub struct LocalCoordinator {
    clock: FakeClock,
    objects: Rc<RefCell<BTreeMap<String, AccountObject<MemoryRows>>>>,
    pub rows: Rc<RefCell<BTreeMap<String, MemoryRows>>>,
    /// Requests fail (the namespace is unreachable) while set.
    pub unreachable: Rc<Cell<bool>>,
    /// Each answer takes this long.
    pub delay_ms: Rc<Cell<u64>>,
    /// Every request, in order: (account, request).
    pub asked: Rc<RefCell<Vec<(String, Request)>>>,
}

impl LocalCoordinator {
    pub fn new(clock: &FakeClock) -> Self {
        LocalCoordinator {
            clock: clock.clone(),
            objects: Rc::default(),
            rows: Rc::default(),
            unreachable: Rc::default(),
            delay_ms: Rc::default(),
            asked: Rc::default(),
        }
    }

    /// Every object forgets its memory (as after eviction or a restart); storage stays.
    pub fn evict(&self) {
        self.objects.borrow_mut().clear();
    }

    /// The storage of `account`'s object.
    pub fn rows_of(&self, account: &str) -> MemoryRows {
        self.rows
            .borrow_mut()
            .entry(account.to_owned())
            .or_default()
            .clone()
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
        let request = decode_request(encode(request).as_bytes())
            .ok_or_else(|| CoordinationError("request not understood".into()))?;
        let rows = self.rows_of(account);
        let response = {
            let mut objects = self.objects.borrow_mut();
            let object = objects
                .entry(account.to_owned())
                .or_insert_with(|| AccountObject::new(rows));
            object.handle(request, self.clock.now_ms())
        };
        decode_response(encode_response(&response).as_bytes())
    }
}
