//! Duplicate marks in the Cache API, as the core's [`Store`] port: one short-lived entry per
//! event id, holding the reply the event got.
//!
//! Why the Cache API: WeChat retries within about 15 s, from the same network, so the retries
//! land on the same Cloudflare location as the first attempt; the Cache API is local to that
//! location, free, and has no write quota. Workers KV would not do: 1,000 writes a day on the
//! free plan and about 60 s before other locations see a write.
//!
//! Limits (also in the README): the mark is per location, so a retry that reaches another
//! location is forwarded again; on `*.workers.dev` the Cache API stores nothing, so dedup only
//! works on a custom domain or route. The core treats a failing cache as "not seen": a
//! duplicate is better than a lost event.

use wechat_relay_core::{Page, Store, StoreError};
use worker::{Cache, Headers, Response};

fn key(id: &str) -> String {
    format!("https://dedup.wechat-relay.internal/{id}")
}

fn cache_error(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

/// The location's Cache API.
#[derive(Clone, Copy, Default)]
pub struct CacheMarks;

impl Store for CacheMarks {
    async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        match Cache::default()
            .get(key(id), false)
            .await
            .map_err(cache_error)?
        {
            None => Ok(None),
            Some(mut resp) => resp.text().await.map(Some).map_err(cache_error),
        }
    }

    async fn put(&self, id: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let headers = Headers::new();
        let max_age = ttl_secs.unwrap_or(300);
        headers
            .set("cache-control", &format!("max-age={max_age}"))
            .map_err(cache_error)?;
        let resp = Response::ok(value)
            .map_err(cache_error)?
            .with_headers(headers);
        Cache::default()
            .put(key(id), resp)
            .await
            .map_err(cache_error)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        Cache::default()
            .delete(key(id), false)
            .await
            .map(|_| ())
            .map_err(cache_error)
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
        Err(StoreError("the Cache API cannot list".into()))
    }

    async fn list_page(
        &self,
        _prefix: &str,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> Result<Page, StoreError> {
        Err(StoreError("the Cache API cannot list".into()))
    }
}
