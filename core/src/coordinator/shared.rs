//! The Worker's store: the records a third-party platform's object owns are read and written
//! there, one request an operation; every other key stays in the local store (Workers KV).
//!
//! A key belongs to the object of the platform it names: `component:<platform>:…`,
//! `authorizer:<platform>:…`, `credential:<platform>:…` (the component token) and
//! `forced:<platform>:…` (its forced-refresh count), for the platform accounts given; and every
//! account's dead letters, `dead:<account>:…` (and the deployment's, `dead:~relay:…`). When the
//! object cannot be asked, a read falls back to the local store (the state a relay before the
//! objects kept there) and a write fails, which the flows log. A deployment without the objects
//! keeps everything in the local store.

use std::rc::Rc;

use super::protocol::{
    ask_within, Coordinator, Request, Response, StoreOp, NOT_UNDERSTOOD, RELAY_OBJECT,
    REQUEST_TIMEOUT_MS,
};
use crate::ports::{read_each, Clock, Entries, Page, Store, StoreError};

/// The kinds of keys an object owns.
const OWNED: [&str; 4] = ["component", "authorizer", "credential", "forced"];

/// The store of the relay's flows: platform state at the platforms' objects, the rest local.
#[derive(Clone)]
pub struct SharedStore<C, K, S> {
    pub clock: C,
    pub coordinator: K,
    pub local: S,
    /// The names of the third-party platform accounts.
    pub platforms: Rc<Vec<String>>,
    /// Whether the deployment has the account objects (the COORDINATOR binding): without
    /// them every key is local, as it was before the objects.
    pub objects: bool,
}

impl<C: Clock, K: Coordinator, S: Store> SharedStore<C, K, S> {
    /// The object that owns `key`, if one does.
    fn owner<'k>(&self, key: &'k str) -> Option<&'k str> {
        if !self.objects {
            return None;
        }
        let mut parts = key.splitn(3, ':');
        let (kind, name) = (parts.next()?, parts.next()?);
        parts.next()?;
        let owned = match kind {
            "dead" => crate::account::is_valid_name(name) || name == RELAY_OBJECT,
            _ => OWNED.contains(&kind) && self.platforms.iter().any(|p| p == name),
        };
        owned.then_some(name)
    }

    /// One operation at `object`: its answer, or why there is none, as [`ask_within`] says it.
    async fn answer_of(&self, object: &str, op: StoreOp) -> Result<Response, String> {
        let request = Request::Store { record: op };
        ask_within(
            &self.coordinator,
            &self.clock,
            object,
            &request,
            REQUEST_TIMEOUT_MS,
        )
        .await
    }

    async fn ask(&self, object: &str, op: StoreOp) -> Result<Response, StoreError> {
        self.answer_of(object, op)
            .await
            .map_err(|e| unanswered(object, &e))
    }
}

fn unanswered(object: &str, why: &str) -> StoreError {
    StoreError(format!("account object {object}: {why}"))
}

/// Never the answer's content: it may be a record with a refresh token.
fn unexpected(_: Response) -> StoreError {
    StoreError("the account object answered something else than a store answer".into())
}

impl<C: Clock, K: Coordinator, S: Store> Store for SharedStore<C, K, S> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some(object) = self.owner(key) else {
            return self.local.get(key).await;
        };
        match self
            .ask(
                object,
                StoreOp::Get {
                    key: key.to_owned(),
                },
            )
            .await
        {
            Ok(Response::Value { value }) => Ok(value),
            Ok(other) => Err(unexpected(other)),
            // A dead letter is only ever at its object: reading KV instead would make a listing
            // skip it as expired.
            Err(e) if key.starts_with("dead:") => Err(e),
            Err(e) => {
                log::warn!(key = key, error = e.to_string(); "the platform's object did not answer; reading WECHAT_KV instead");
                self.local.get(key).await
            }
        }
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let Some(object) = self.owner(key) else {
            return self.local.put(key, value, ttl_secs).await;
        };
        let op = StoreOp::Put {
            key: key.to_owned(),
            value: value.to_owned(),
            ttl_secs,
        };
        match self.ask(object, op).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some(object) = self.owner(key) else {
            return self.local.delete(key).await;
        };
        match self
            .ask(
                object,
                StoreOp::Delete {
                    key: key.to_owned(),
                },
            )
            .await?
        {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some(object) = self.owner(key) else {
            return self.local.take(key).await;
        };
        match self
            .ask(
                object,
                StoreOp::Take {
                    key: key.to_owned(),
                },
            )
            .await?
        {
            Response::Value { value } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    async fn put_if(
        &self,
        key: &str,
        value: &str,
        expected: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        let Some(object) = self.owner(key) else {
            return self.local.put_if(key, value, expected, ttl_secs).await;
        };
        let op = StoreOp::PutIf {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: expected.map(str::to_owned),
            ttl_secs,
        };
        match self.ask(object, op).await? {
            Response::Swapped { written } => Ok(written),
            other => Err(unexpected(other)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let Some(object) = self.owner(prefix) else {
            return self.local.list(prefix).await;
        };
        let op = StoreOp::List {
            prefix: prefix.to_owned(),
        };
        match self.ask(object, op).await? {
            Response::Keys { keys, .. } => Ok(keys),
            other => Err(unexpected(other)),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let Some(object) = self.owner(prefix) else {
            return self.local.list_page(prefix, cursor, limit).await;
        };
        let op = StoreOp::ListPage {
            prefix: prefix.to_owned(),
            cursor: cursor.map(str::to_owned),
            limit,
        };
        match self.ask(object, op).await? {
            Response::Keys { keys, cursor } => Ok(Page { keys, cursor }),
            other => Err(unexpected(other)),
        }
    }

    /// At an object, one request for the whole page (where a listing and a read per entry
    /// would be one request each); an object of a relay before this (during a deploy) is asked
    /// the way it understands.
    async fn read_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let Some(object) = self.owner(prefix) else {
            return self.local.read_page(prefix, cursor, limit).await;
        };
        let op = StoreOp::ReadPage {
            prefix: prefix.to_owned(),
            cursor: cursor.map(str::to_owned),
            limit,
        };
        match self.answer_of(object, op).await {
            Ok(Response::Entries { entries, cursor }) => Ok(Entries { entries, cursor }),
            Ok(other) => Err(unexpected(other)),
            Err(e) if e == NOT_UNDERSTOOD => read_each(self, prefix, cursor, limit).await,
            Err(e) => Err(unanswered(object, &e)),
        }
    }
}
