//! Once per WeChat retry storm: a short-lived mark per event id in the Cache API.
//!
//! Why the Cache API: WeChat retries within about 15 s, from the same network, so the retries
//! land on the same Cloudflare location as the first attempt; the Cache API is local to that
//! location, free, and has no write quota. Workers KV would not do: 1,000 writes a day on the
//! free plan and about 60 s before other locations see a write.
//!
//! Limits (also in the README): the mark is per location, so a retry that reaches another
//! location is forwarded again; on `*.workers.dev` the Cache API stores nothing, so dedup only
//! works on a custom domain or route. The event id is stable across retries, so receivers can
//! always drop the rare duplicate by `webhook-id`. When the cache fails, the event is forwarded
//! anyway: a duplicate is better than a lost event.

use worker::{Cache, Headers, Response};

/// How long a mark lives: well past WeChat's three retries (5 s apart).
const MARK_SECONDS: u32 = 300;

fn key(id: &str) -> String {
    format!("https://dedup.wechat-relay.internal/{id}")
}

/// Whether this id was seen recently; marks it as seen. Never fails: a broken cache means
/// "not seen", so the event is forwarded.
pub async fn seen_before(id: &str) -> bool {
    let cache = Cache::default();
    match cache.get(key(id), false).await {
        Ok(Some(_)) => return true,
        Ok(None) => {}
        Err(e) => {
            log::warn!(event_id = id, error = e.to_string(); "dedup cache read failed; forwarding anyway");
            return false;
        }
    }
    if let Err(e) = mark(&cache, id).await {
        log::warn!(event_id = id, error = e.to_string(); "dedup cache write failed; forwarding anyway");
    }
    false
}

async fn mark(cache: &Cache, id: &str) -> worker::Result<()> {
    let headers = Headers::new();
    headers.set("cache-control", &format!("max-age={MARK_SECONDS}"))?;
    let resp = Response::ok("1")?.with_headers(headers);
    cache.put(key(id), resp).await
}
