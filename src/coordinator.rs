//! The account objects on Durable Objects: the [`AccountObject`] class (the core's
//! `coordinator::AccountObject` over the object's SQLite) and [`WorkerCoordinator`], the
//! Worker's side (`COORDINATOR` namespace, one object per account name, JSON over the stub's
//! `fetch`; workers-rs 0.8 has no JS RPC to a Rust object).
//!
//! The object holds two tables, with no index beside their primary keys (an index entry is
//! one more row written): `buckets (key, expires_at, content)` for the claim rules, and
//! `entries (key, value, expires_at)` for the token service (a [`Store`]; a deletion is a row
//! without a value). A record the object has never held is looked up once in `WECHAT_KV`,
//! where relays before the objects kept their tokens and merchants, and imported.

use std::cell::RefCell;

use serde::Deserialize;
use wechat_relay_core::config::bindings;
use wechat_relay_core::coordinator::{
    self, CoordinationError, Coordinator, Request as Ask, Response as Answer, Rows, RowsError,
    StoredBucket,
};
use wechat_relay_core::{Clock, ObjectPorts, Page, Store, StoreError};
use worker::{
    durable_object, DurableObject, Env, KvStore, Method, Request, RequestInit, Response,
    SqlStorage, SqlStorageValue, State,
};

use crate::runtime::{self, WorkerClock, WorkerHttp};

/// The object's SQLite, as the core's [`Rows`].
pub struct SqlRows(SqlStorage);

fn sql_error(e: worker::Error) -> RowsError {
    RowsError(format!("SQLite: {e}"))
}

/// SQLite integers are i64; every value here (Unix seconds, bucket keys) is far inside it.
fn int(value: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

#[derive(Deserialize)]
struct Row {
    key: i64,
    expires_at: i64,
    content: String,
}

impl SqlRows {
    fn new(sql: SqlStorage) -> Self {
        if let Err(e) = sql.exec(
            "CREATE TABLE IF NOT EXISTS buckets (key INTEGER PRIMARY KEY, expires_at INTEGER NOT NULL, content TEXT NOT NULL)",
            None,
        ) {
            log::error!(error = e.to_string(); "the account object's table could not be created");
        }
        SqlRows(sql)
    }
}

impl Rows for SqlRows {
    fn buckets(&self, now_secs: u64) -> Result<Vec<StoredBucket>, RowsError> {
        let rows: Vec<Row> = self
            .0
            .exec(
                "SELECT key, expires_at, content FROM buckets WHERE expires_at >= ?",
                vec![int(now_secs)],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(sql_error)?;
        Ok(rows
            .into_iter()
            .map(|r| StoredBucket {
                key: u64::try_from(r.key).unwrap_or_default(),
                expires_at: u64::try_from(r.expires_at).unwrap_or_default(),
                content: r.content,
            })
            .collect())
    }

    fn put_bucket(&self, bucket: &StoredBucket) -> Result<(), RowsError> {
        self.0
            .exec(
                "INSERT OR REPLACE INTO buckets (key, expires_at, content) VALUES (?, ?, ?)",
                vec![
                    int(bucket.key),
                    int(bucket.expires_at),
                    SqlStorageValue::from(bucket.content.as_str()),
                ],
            )
            .map(|_| ())
            .map_err(sql_error)
    }

    fn purge(&self, now_secs: u64) -> Result<(), RowsError> {
        self.0
            .exec(
                "DELETE FROM buckets WHERE expires_at < ?",
                vec![int(now_secs)],
            )
            .map(|_| ())
            .map_err(sql_error)
    }
}

/// The token service's records in the object's SQLite, as the core's [`Store`]; what it does
/// not have is looked up in `WECHAT_KV` (the relay's records before the objects) and imported.
pub struct SqlRecords {
    sql: SqlStorage,
    kv: Option<KvStore>,
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("SQLite: {e}"))
}

#[derive(Deserialize)]
struct Record {
    value: Option<String>,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

impl SqlRecords {
    fn new(sql: SqlStorage, env: &Env) -> Self {
        if let Err(e) = sql.exec(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER)",
            None,
        ) {
            log::error!(error = e.to_string(); "the account object's records table could not be created");
        }
        SqlRecords {
            sql,
            kv: env.kv(bindings::KV).ok(),
        }
    }

    fn now_secs() -> u64 {
        WorkerClock.now_secs()
    }

    fn read(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows: Vec<Record> = self
            .sql
            .exec(
                "SELECT value FROM entries WHERE key = ? AND value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?)",
                vec![SqlStorageValue::from(key), int(Self::now_secs())],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(store_error)?;
        Ok(rows.into_iter().next().and_then(|r| r.value))
    }

    /// Whether the object has ever held `key` (a value, an expired one, or a deletion): then
    /// WECHAT_KV's copy, older, is never imported.
    fn owns(&self, key: &str) -> Result<bool, StoreError> {
        let rows: Vec<Key> = self
            .sql
            .exec(
                "SELECT key FROM entries WHERE key = ?",
                vec![SqlStorageValue::from(key)],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(store_error)?;
        Ok(!rows.is_empty())
    }

    /// A deletion, kept as a row without a value (one row written, as a delete is).
    fn tombstone(&self, key: &str) -> Result<(), StoreError> {
        self.sql
            .exec(
                "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?, NULL, NULL)",
                vec![SqlStorageValue::from(key)],
            )
            .map(|_| ())
            .map_err(store_error)
    }

    fn write(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let expires_at = match ttl_secs {
            Some(ttl) => int(Self::now_secs().saturating_add(ttl)),
            None => SqlStorageValue::Null,
        };
        self.sql
            .exec(
                "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?, ?, ?)",
                vec![
                    SqlStorageValue::from(key),
                    SqlStorageValue::from(value),
                    expires_at,
                ],
            )
            .map(|_| ())
            .map_err(store_error)
    }

    fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Key> = self
            .sql
            .exec(
                "SELECT key FROM entries WHERE substr(key, 1, length(?)) = ? AND key > ? AND value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                vec![
                    SqlStorageValue::from(prefix),
                    SqlStorageValue::from(prefix),
                    SqlStorageValue::from(after.unwrap_or("")),
                    int(Self::now_secs()),
                    SqlStorageValue::Integer(limit),
                ],
            )
            .and_then(|cursor| cursor.to_array())
            .map_err(store_error)?;
        Ok(rows.into_iter().map(|k| k.key).collect())
    }
}

impl Store for SqlRecords {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(found) = self.read(key)? {
            return Ok(Some(found));
        }
        let Some(kv) = self.kv.as_ref().filter(|_| !self.owns(key).unwrap_or(true)) else {
            return Ok(None);
        };
        // Never held here: a record of the relay before its objects, imported on first use.
        let imported = match kv.get(key).text().await {
            Ok(found) => found,
            Err(e) => {
                log::warn!(key = key, error = e.to_string(); "WECHAT_KV unreadable while importing; going on without it");
                None
            }
        };
        // Another request may have written the key while KV was read: that write wins.
        if self.owns(key)? {
            return self.read(key);
        }
        if let Some(value) = &imported {
            self.write(key, value, None)?;
            log::info!(key = key; "record imported from WECHAT_KV into the account object");
        }
        Ok(imported)
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        self.write(key, value, ttl_secs)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.tombstone(key)
    }

    /// Exact: the read and the write run with no await between them, so nothing interleaves.
    async fn put_if(
        &self,
        key: &str,
        value: &str,
        expected: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        if self.read(key)?.as_deref() != expected {
            return Ok(false);
        }
        self.write(key, value, ttl_secs).map(|()| true)
    }

    /// Exact, as `put_if`.
    async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let found = self.read(key)?;
        if found.is_some() {
            self.tombstone(key)?;
        }
        Ok(found)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.keys(prefix, None, usize::MAX)
    }

    async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, 1000);
        // One key more than the page, to know whether there is a next page.
        let mut keys = self.keys(prefix, cursor, limit + 1)?;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let cursor = more.then(|| keys.last().cloned()).flatten();
        Ok(Page { keys, cursor })
    }
}

/// One account's object (the `AccountObject` class of wrangler.toml's migrations).
#[durable_object]
pub struct AccountObject {
    rules: RefCell<coordinator::AccountObject<SqlRows>>,
    ports: ObjectPorts<WorkerClock, SqlRecords, WorkerHttp>,
    state: State,
}

impl AccountObject {
    /// Sets the alarm the counts asked for (one row written, at most once a minute).
    async fn set_alarm(&self) {
        let Some(at) = self.ports.alarm_to_set() else {
            return;
        };
        let after = std::time::Duration::from_millis(at.saturating_sub(WorkerClock.now_ms()));
        if let Err(e) = self.state.storage().set_alarm(after).await {
            self.ports.alarm_not_set();
            log::warn!(error = e.to_string(); "the account object's alarm could not be set; its last counts are written at its next request");
        }
    }
}

impl DurableObject for AccountObject {
    fn new(state: State, env: Env) -> Self {
        crate::logging::install();
        let sql = state.storage().sql();
        AccountObject {
            rules: RefCell::new(coordinator::AccountObject::new(SqlRows::new(sql.clone()))),
            // Bindings do not change while the object lives.
            ports: ObjectPorts::new(
                WorkerClock,
                SqlRecords::new(sql, &env),
                WorkerHttp::new(&env),
                runtime::settings(&env),
            ),
            state,
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        crate::logging::install();
        // The whole body first; the claim rules are borrowed only inside `answer`, never
        // across an await.
        let body = req.bytes().await?;
        let answer = self.ports.answer(&self.rules, &body).await;
        self.set_alarm().await;
        Response::ok(coordinator::encode_response(&answer))
    }

    /// The counts of the last minute written (the only alarm the object sets).
    async fn alarm(&self) -> worker::Result<Response> {
        crate::logging::install();
        self.ports.alarm().await;
        self.set_alarm().await;
        Response::ok("")
    }
}

/// The Worker's side: the `COORDINATOR` namespace, or its absence (then every question fails
/// and callbacks are handled uncoordinated, with a warning each).
#[derive(Clone)]
pub struct WorkerCoordinator {
    env: Env,
}

impl WorkerCoordinator {
    pub fn new(env: &Env) -> Self {
        WorkerCoordinator { env: env.clone() }
    }

    async fn send(&self, object: &str, ask: &Ask) -> worker::Result<Vec<u8>> {
        let stub = self
            .env
            .durable_object(bindings::COORDINATOR)?
            .get_by_name(object)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(coordinator::encode(ask).into()));
        let request = Request::new_with_init("https://account-object.internal/", &init)?;
        let mut response = stub.fetch_with_request(request).await?;
        response.bytes().await
    }
}

impl Coordinator for WorkerCoordinator {
    async fn ask(&self, object: &str, ask: &Ask) -> Result<Answer, CoordinationError> {
        let body = self
            .send(object, ask)
            .await
            .map_err(|e| CoordinationError(format!("{}: {e}", bindings::COORDINATOR)))?;
        coordinator::decode_response(&body)
    }
}
