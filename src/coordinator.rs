//! The account objects on Durable Objects: the [`AccountObject`] class (the core's
//! `coordinator::AccountObject` over the object's SQLite) and [`WorkerCoordinator`], the
//! Worker's side (`COORDINATOR` namespace, one object per account name, JSON over the stub's
//! `fetch`; workers-rs 0.8 has no JS RPC to a Rust object).
//!
//! The object holds one table, `buckets (key, expires_at, content)`, with no index beside its
//! primary key (an index entry is one more row written).

use std::cell::RefCell;

use serde::Deserialize;
use wechat_relay_core::config::bindings;
use wechat_relay_core::coordinator::{
    self, CoordinationError, Coordinator, Request as Ask, Response as Answer, Rows, RowsError,
    StoredBucket,
};
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, SqlStorage,
    SqlStorageValue, State,
};

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

/// One account's object (the `AccountObject` class of wrangler.toml's migrations).
#[durable_object]
pub struct AccountObject {
    rules: RefCell<coordinator::AccountObject<SqlRows>>,
}

impl DurableObject for AccountObject {
    fn new(state: State, _env: Env) -> Self {
        AccountObject {
            rules: RefCell::new(coordinator::AccountObject::new(SqlRows::new(
                state.storage().sql(),
            ))),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        crate::logging::install();
        // Read the whole body before touching the rules: no borrow across an await.
        let body = req.bytes().await?;
        let Some(ask) = coordinator::decode_request(&body) else {
            return Response::error("not a request of the relay's", 400);
        };
        let answer = self.rules.borrow_mut().handle(ask, Date::now().as_millis());
        Response::ok(coordinator::encode_response(&answer))
    }

    /// No alarm is ever set (an alarm is one row written); the default handler would panic.
    async fn alarm(&self) -> worker::Result<Response> {
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
