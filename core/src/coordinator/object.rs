//! An account's object: the claims and nonces of its callbacks, over [`Rows`].
//!
//! **Storage layout.** Done marks and nonces are kept in *buckets*: rows of the callbacks
//! settled in one minute (a JSON map of event id → reply and nonce → body hash), each rewritten
//! as a callback settles into it and deleted whole once everything in it expired. A bucket
//! holds about `BUCKET_BYTES`, then the minute's next one starts, so a settle rewrites at most
//! that much however busy the minute is (one bucket a minute made every settle rewrite, and
//! serialize, all the minute's marks before it: quadratic in the minute's traffic). Its size
//! weighs that write against a claim's lookups, one per live bucket: at 100 callbacks a second
//! about 100 buckets are live. A callback costs one row written, and the purge one row per
//! bucket (about one per 370 callbacks, one per 150 with plaintext nonces): about one row
//! written per callback for a busy account, where a row per mark would cost two (its insert
//! and its delete). The live buckets (at most `MARK_TTL_SECS` / 60 + 1 minutes of them, longer
//! only for a clock-skew window above five minutes) are read once per object life and then kept
//! in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::protocol::{
    Claimed, Nonce, Request, Response, Settlement, IN_FLIGHT_BOUND_MS, MARK_TTL_SECS,
};

/// How often, at most, expired buckets are deleted (in seconds).
const PURGE_EVERY_SECS: u64 = 60;
/// A bucket grows to about this many bytes before the minute's next one starts: the most one
/// settle serializes and writes.
const BUCKET_BYTES: usize = 16 * 1024;
/// Buckets of one minute: keys `minute * PARTS ..= minute * PARTS + PARTS - 1` (64 MB a minute,
/// about 1.5 million callbacks, before the last one grows past `BUCKET_BYTES`; a row holds at
/// most 2 MB). Keys of relays before this (64 parts a minute) are far below these and read as
/// they were: a bucket is found by its expiry, never by its key.
const PARTS: u64 = 4096;

/// One stored bucket: its key, when everything in it has expired (Unix seconds), and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBucket {
    pub key: u64,
    pub expires_at: u64,
    pub content: String,
}

/// The object's storage failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsError(pub String);

impl std::fmt::Display for RowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object's storage: synchronous, as a Durable Object's SQLite is (a run of calls with no
/// `.await` between them commits together). What is stored survives the object's eviction.
pub trait Rows {
    /// The buckets that have not expired at `now_secs`.
    fn buckets(&self, now_secs: u64) -> Result<Vec<StoredBucket>, RowsError>;
    /// Inserts or replaces a bucket: one row written.
    fn put_bucket(&self, bucket: &StoredBucket) -> Result<(), RowsError>;
    /// Deletes the buckets that expired before `now_secs`.
    fn purge(&self, now_secs: u64) -> Result<(), RowsError>;
}

/// A bucket's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Bucket {
    /// Event id → the reply WeChat got ("" for `success`).
    #[serde(default)]
    marks: BTreeMap<String, String>,
    /// `timestamp:nonce` → the body's SHA-1.
    #[serde(default)]
    nonces: BTreeMap<String, String>,
    #[serde(skip)]
    expires_at: u64,
    #[serde(skip)]
    bytes: usize,
}

impl Bucket {
    fn stored(&self, key: u64) -> StoredBucket {
        StoredBucket {
            key,
            expires_at: self.expires_at,
            content: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// A claim in flight: which attempt holds it, since when (Unix milliseconds), and its nonce
/// (stored when it settles).
#[derive(Debug, Clone)]
struct Flight {
    attempt: String,
    since_ms: u64,
    nonce: Option<(String, String)>,
}

fn nonce_key(nonce: &Nonce) -> String {
    format!("{}:{}", nonce.timestamp, nonce.nonce)
}

/// One account's object. Single-threaded, as a Durable Object is: [`AccountObject::handle`]
/// runs each request to its end before the next.
pub struct AccountObject<R> {
    rows: R,
    /// The live buckets by key, once read.
    buckets: Option<BTreeMap<u64, Bucket>>,
    /// In memory: lost with the object, after which a retry is processed again.
    flights: BTreeMap<String, Flight>,
    purged_at: u64,
}

impl<R: Rows> AccountObject<R> {
    pub fn new(rows: R) -> Self {
        AccountObject {
            rows,
            buckets: None,
            flights: BTreeMap::new(),
            purged_at: 0,
        }
    }

    /// The answer to one request at `now_ms`; a storage failure is [`Response::Failed`].
    pub fn handle(&mut self, request: Request, now_ms: u64) -> Response {
        let result = match request {
            Request::Claim {
                event_id,
                attempt,
                nonce,
                settled,
            } => self
                .report(settled, now_ms)
                .and_then(|_| self.claim(&event_id, &attempt, nonce.as_ref(), now_ms))
                .map(Response::Claimed),
            Request::Report { settled } => self
                .report(settled, now_ms)
                .map(|taken| Response::Settled { taken }),
            Request::Settle {
                event_id,
                attempt,
                reply,
                nonce,
            } => self
                .settle(&event_id, &attempt, reply, nonce.as_ref(), now_ms)
                .map(|taken| Response::Settled { taken }),
            // Answered by the token service in the object (`relay/object.rs`), not here.
            // Never formatted: a refresh names a token.
            _ => Err(RowsError("not a claim".into())),
        };
        result.unwrap_or_else(|e| Response::Failed { error: e.0 })
    }

    /// The live buckets, read from storage on the first request of the object's life.
    fn load(&mut self, now_secs: u64) -> Result<(), RowsError> {
        if self.buckets.is_none() {
            let mut loaded = BTreeMap::new();
            for stored in self.rows.buckets(now_secs)? {
                let mut bucket: Bucket = match serde_json::from_str(&stored.content) {
                    Ok(bucket) => bucket,
                    Err(e) => {
                        // Its marks are lost: a retry of those events is processed again.
                        log::error!(bucket = stored.key, error = e.to_string(); "a stored bucket of marks is unreadable; it is ignored");
                        Bucket::default()
                    }
                };
                bucket.expires_at = stored.expires_at;
                bucket.bytes = stored.content.len();
                loaded.insert(stored.key, bucket);
            }
            self.buckets = Some(loaded);
        }
        Ok(())
    }

    fn claim(
        &mut self,
        event_id: &str,
        attempt: &str,
        nonce: Option<&Nonce>,
        now_ms: u64,
    ) -> Result<Claimed, RowsError> {
        let now_secs = now_ms / 1000;
        self.purge(now_ms)?;
        self.load(now_secs)?;
        let buckets = self.buckets.get_or_insert_with(BTreeMap::new);
        let live = || buckets.values().filter(|b| b.expires_at >= now_secs);
        if let Some(nonce) = nonce {
            let key = nonce_key(nonce);
            let stored = live().find_map(|b| b.nonces.get(&key));
            let flying = self
                .flights
                .iter()
                .filter(|(id, f)| {
                    id.as_str() != event_id
                        && now_ms < f.since_ms.saturating_add(IN_FLIGHT_BOUND_MS)
                })
                .find_map(|(_, f)| f.nonce.as_ref().filter(|(k, _)| *k == key));
            let seen = stored.or(flying.map(|(_, body)| body));
            if seen.is_some_and(|body| *body != nonce.body_sha1) {
                return Ok(Claimed::Replayed);
            }
        }
        if let Some(reply) = live().find_map(|b| b.marks.get(event_id)) {
            return Ok(Claimed::Done {
                reply: reply.clone(),
            });
        }
        if let Some(flight) = self.flights.get(event_id) {
            let held = now_ms < flight.since_ms.saturating_add(IN_FLIGHT_BOUND_MS);
            if held && flight.attempt != attempt {
                return Ok(Claimed::InFlight);
            }
            if !held {
                log::warn!(event_id = event_id, attempt = flight.attempt.as_str(); "a claim was never settled; its attempt is presumed dead and the event is processed again");
            }
        }
        self.flights.insert(
            event_id.to_owned(),
            Flight {
                attempt: attempt.to_owned(),
                since_ms: now_ms,
                nonce: nonce.map(|n| (nonce_key(n), n.body_sha1.clone())),
            },
        );
        Ok(Claimed::New)
    }

    /// Settles each reported outcome; whether every one was taken.
    fn report(&mut self, settled: Vec<Settlement>, now_ms: u64) -> Result<bool, RowsError> {
        let mut all = true;
        for s in settled {
            all &= self.settle(
                &s.event_id,
                &s.attempt,
                Some(s.reply),
                s.nonce.as_ref(),
                now_ms,
            )?;
        }
        Ok(all)
    }

    fn settle(
        &mut self,
        event_id: &str,
        attempt: &str,
        reply: Option<String>,
        nonce: Option<&Nonce>,
        now_ms: u64,
    ) -> Result<bool, RowsError> {
        let now_secs = now_ms / 1000;
        self.load(now_secs)?;
        match self.flights.get(event_id) {
            // Taken over by a later attempt: that one settles.
            Some(flight) if flight.attempt != attempt => return Ok(false),
            Some(_) => {
                self.flights.remove(event_id);
            }
            // The object was evicted since the claim (or the claim's answer was lost): the
            // outcome still counts.
            None => {}
        }
        self.record(event_id, reply, nonce, now_secs)?;
        Ok(true)
    }

    /// Stores an outcome: the mark (`Some`) in this minute's bucket, or its release (`None`);
    /// the nonce either way, so a replay stays refused. Storage is the truth: when a write
    /// fails, the buckets in memory are dropped and read again on the next request.
    fn record(
        &mut self,
        event_id: &str,
        reply: Option<String>,
        nonce: Option<&Nonce>,
        now_secs: u64,
    ) -> Result<(), RowsError> {
        self.load(now_secs)?;
        let buckets = self.buckets.get_or_insert_with(BTreeMap::new);
        let mut touched: Vec<u64> = Vec::new();
        if reply.is_none() {
            for (key, bucket) in buckets.iter_mut() {
                if bucket.marks.remove(event_id).is_some() {
                    touched.push(*key);
                }
            }
        }
        if reply.is_some() || nonce.is_some() {
            let minute = now_secs / 60;
            let first = minute.saturating_mul(PARTS);
            let last = first.saturating_add(PARTS - 1);
            let key = match buckets.range(first..=last).next_back() {
                Some((key, b)) if b.bytes < BUCKET_BYTES || *key == last => *key,
                Some((key, _)) => key.saturating_add(1),
                None => first,
            };
            let bucket = buckets.entry(key).or_default();
            let ends = minute.saturating_add(1).saturating_mul(60);
            bucket.expires_at = bucket.expires_at.max(ends.saturating_add(MARK_TTL_SECS));
            if let Some(reply) = reply {
                bucket.bytes = bucket
                    .bytes
                    .saturating_add(event_id.len() + reply.len() + 8);
                bucket.marks.insert(event_id.to_owned(), reply);
            }
            if let Some(nonce) = nonce {
                let key = nonce_key(nonce);
                bucket.bytes = bucket.bytes.saturating_add(key.len() + 48);
                bucket.nonces.insert(key, nonce.body_sha1.clone());
                bucket.expires_at = bucket.expires_at.max(nonce.expires_at);
            }
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        let mut written = Ok(());
        for key in touched {
            if let Some(bucket) = buckets.get(&key) {
                written = written.and_then(|()| self.rows.put_bucket(&bucket.stored(key)));
            }
        }
        if written.is_err() {
            self.buckets = None;
        }
        written
    }

    /// At most once a minute: deletes the expired buckets, and forgets the flights of dead
    /// attempts (those past their bound; a claim finds one earlier itself and takes it over).
    fn purge(&mut self, now_ms: u64) -> Result<(), RowsError> {
        let now_secs = now_ms / 1000;
        if now_secs < self.purged_at.saturating_add(PURGE_EVERY_SECS) {
            return Ok(());
        }
        self.rows.purge(now_secs)?;
        self.purged_at = now_secs;
        if let Some(buckets) = self.buckets.as_mut() {
            buckets.retain(|_, b| b.expires_at >= now_secs);
        }
        self.flights
            .retain(|_, f| now_ms < f.since_ms.saturating_add(IN_FLIGHT_BOUND_MS));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryRows;

    fn claim(id: &str, attempt: &str) -> Request {
        Request::Claim {
            event_id: id.into(),
            attempt: attempt.into(),
            nonce: None,
            settled: Vec::new(),
        }
    }

    /// A claim and its settle with `success`: a callback handed over.
    fn claim_done(
        object: &mut AccountObject<MemoryRows>,
        id: &str,
        attempt: &str,
        now: u64,
    ) -> Response {
        let claimed = object.handle(claim(id, attempt), now);
        if claimed == Response::Claimed(Claimed::New) {
            object.handle(settle(id, attempt, Some("")), now);
        }
        claimed
    }

    fn settle(id: &str, attempt: &str, reply: Option<&str>) -> Request {
        Request::Settle {
            event_id: id.into(),
            attempt: attempt.into(),
            reply: reply.map(str::to_owned),
            nonce: None,
        }
    }

    /// When a mark settled at `settled_ms` expires (Unix ms): the end of its minute's bucket
    /// plus the TTL.
    fn mark_expiry_ms(settled_ms: u64) -> u64 {
        ((settled_ms / 1000 / 60 + 1) * 60 + MARK_TTL_SECS) * 1000
    }

    fn claimed(c: Claimed) -> Response {
        Response::Claimed(c)
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn a_claim_is_new_then_in_flight_then_done_with_the_stored_reply() {
        let mut object = AccountObject::new(MemoryRows::default());
        assert_eq!(object.handle(claim("e1", "a"), T0), claimed(Claimed::New));
        assert_eq!(
            object.handle(claim("e1", "b"), T0 + 10),
            claimed(Claimed::InFlight)
        );
        // The same attempt asking again (its first answer was lost) keeps its claim.
        assert_eq!(
            object.handle(claim("e1", "a"), T0 + 20),
            claimed(Claimed::New)
        );
        assert_eq!(
            object.handle(settle("e1", "a", Some("<xml>hi</xml>")), T0 + 30),
            Response::Settled { taken: true }
        );
        assert_eq!(
            object.handle(claim("e1", "b"), T0 + 40),
            claimed(Claimed::Done {
                reply: "<xml>hi</xml>".into()
            })
        );
        // Another event is its own.
        assert_eq!(
            object.handle(claim("e2", "b"), T0 + 50),
            claimed(Claimed::New)
        );
    }

    #[test]
    fn a_released_claim_lets_the_retry_through_and_stores_nothing() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        object.handle(claim("e1", "a"), T0);
        assert_eq!(
            object.handle(settle("e1", "a", None), T0 + 5),
            Response::Settled { taken: true }
        );
        assert_eq!(
            object.handle(claim("e1", "b"), T0 + 10),
            claimed(Claimed::New)
        );
        assert_eq!(rows.marks(), 0);
    }

    #[test]
    fn a_dead_attempt_holds_its_claim_only_for_the_bound() {
        let mut object = AccountObject::new(MemoryRows::default());
        object.handle(claim("e1", "a"), T0);
        let before = T0 + IN_FLIGHT_BOUND_MS - 1;
        assert_eq!(
            object.handle(claim("e1", "b"), before),
            claimed(Claimed::InFlight)
        );
        let after = T0 + IN_FLIGHT_BOUND_MS;
        assert_eq!(
            object.handle(claim("e1", "c"), after),
            claimed(Claimed::New)
        );
        // The dead attempt's late settle does not override the new holder's claim.
        assert_eq!(
            object.handle(settle("e1", "a", Some("")), after + 1),
            Response::Settled { taken: false }
        );
        assert_eq!(
            object.handle(claim("e1", "d"), after + 2),
            claimed(Claimed::InFlight)
        );
    }

    #[test]
    fn marks_survive_eviction_and_expire_after_the_ttl() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        object.handle(claim("e1", "a"), T0);
        object.handle(settle("e1", "a", Some("")), T0 + 1);
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        let done = claimed(Claimed::Done { reply: "".into() });
        assert_eq!(object.handle(claim("e1", "b"), T0 + 2), done);
        let last = mark_expiry_ms(T0 + 1);
        assert!(
            last >= T0 + MARK_TTL_SECS * 1000,
            "a mark lasts at least the TTL"
        );
        assert_eq!(object.handle(claim("e1", "b"), last), done);
        let expired = last + 1000;
        assert_eq!(
            object.handle(claim("e1", "c"), expired),
            claimed(Claimed::New)
        );
        // Deleted at the next purge (at most a minute apart).
        object.handle(claim("e9", "c"), expired + PURGE_EVERY_SECS * 1000);
        assert_eq!(rows.marks(), 0, "expired marks are purged");
    }

    #[test]
    fn eviction_in_flight_lets_a_retry_through_and_the_first_settle_still_counts() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        object.handle(claim("e1", "a"), T0);
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        // The retry is processed again: a duplicate, never a loss.
        assert_eq!(
            object.handle(claim("e1", "b"), T0 + 10),
            claimed(Claimed::New)
        );
        // The first attempt's outcome is not the holder's: not taken.
        assert_eq!(
            object.handle(settle("e1", "a", Some("x")), T0 + 20),
            Response::Settled { taken: false }
        );
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        // With no holder left, a settle is stored.
        assert_eq!(
            object.handle(settle("e1", "b", Some("y")), T0 + 30),
            Response::Settled { taken: true }
        );
        assert_eq!(
            object.handle(claim("e1", "c"), T0 + 40),
            claimed(Claimed::Done { reply: "y".into() })
        );
    }

    fn nonce_of(body: &str, expires_at: u64) -> Nonce {
        Nonce {
            timestamp: "1700000000".into(),
            nonce: "n1".into(),
            body_sha1: body.into(),
            expires_at,
        }
    }

    fn nonce_claim(id: &str, body: &str, expires_at: u64) -> Request {
        Request::Claim {
            event_id: id.into(),
            attempt: format!("{id}-attempt"),
            nonce: Some(nonce_of(body, expires_at)),
            settled: Vec::new(),
        }
    }

    #[test]
    fn a_nonce_with_another_body_is_a_replay_with_the_same_body_a_retry() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        let window_end = T0 / 1000 + 300;
        assert_eq!(
            object.handle(nonce_claim("e1", "h1", window_end), T0),
            claimed(Claimed::New)
        );
        assert_eq!(
            object.handle(nonce_claim("e2", "h2", window_end), T0 + 5),
            claimed(Claimed::Replayed),
            "refused while the first is in flight"
        );
        let settled = Request::Settle {
            event_id: "e1".into(),
            attempt: "e1-attempt".into(),
            reply: Some(String::new()),
            nonce: Some(nonce_of("h1", window_end)),
        };
        object.handle(settled, T0 + 5);
        assert_eq!(
            object.handle(nonce_claim("e1", "h1", window_end), T0 + 6),
            claimed(Claimed::Done { reply: "".into() }),
            "WeChat's retry: the same body is not a replay"
        );
        // Replays are refused after an eviction too.
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        assert_eq!(
            object.handle(nonce_claim("e3", "h3", window_end), T0 + 7),
            claimed(Claimed::Replayed)
        );
        // Past the window (and its bucket) the pair is forgotten: WeChat's signature check
        // refuses the timestamp by then anyway.
        let later = mark_expiry_ms(T0 + 7).max((window_end + 1) * 1000) + 1000;
        assert_eq!(
            object.handle(nonce_claim("e4", "h4", later / 1000 + 300), later),
            claimed(Claimed::New)
        );
    }

    #[test]
    fn a_nonce_in_flight_refuses_a_replay_and_is_stored_at_the_settle_even_after_eviction() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        let window_end = T0 / 1000 + 300;
        let first = Request::Claim {
            event_id: "e1".into(),
            attempt: "a".into(),
            nonce: Some(nonce_of("h1", window_end)),
            settled: Vec::new(),
        };
        assert_eq!(object.handle(first, T0), claimed(Claimed::New));
        assert_eq!(rows.written.get(), 0, "a claim in flight writes nothing");
        // Another body under the same pair while the first still waits for its reply.
        assert_eq!(
            object.handle(nonce_claim("e2", "h2", window_end), T0 + 5),
            claimed(Claimed::Replayed)
        );
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        let settle = Request::Settle {
            event_id: "e1".into(),
            attempt: "a".into(),
            reply: Some("r".into()),
            nonce: Some(nonce_of("h1", window_end)),
        };
        assert_eq!(
            object.handle(settle, T0 + 10),
            Response::Settled { taken: true }
        );
        assert_eq!((rows.marks(), rows.nonces()), (1, 1));
        assert_eq!(
            object.handle(nonce_claim("e3", "h3", window_end), T0 + 20),
            claimed(Claimed::Replayed)
        );
    }

    #[test]
    fn a_claim_is_done_only_once_settled_so_a_dead_attempt_never_answers_for_its_event() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        // The attempt dies after its claim: retries wait, then process the event again.
        assert_eq!(object.handle(claim("e1", "a"), T0), claimed(Claimed::New));
        assert_eq!(
            rows.marks(),
            0,
            "nothing is done before the hand-off is reported"
        );
        assert_eq!(
            object.handle(claim("e1", "b"), T0 + 5_000),
            claimed(Claimed::InFlight)
        );
        assert_eq!(
            object.handle(claim("e1", "c"), T0 + IN_FLIGHT_BOUND_MS),
            claimed(Claimed::New)
        );
    }

    #[test]
    fn a_failed_write_leaves_memory_as_storage_is() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        claim_done(&mut object, "e1", "a", T0);
        object.handle(claim("e2", "a"), T0 + 1);
        // The settle of e2 cannot be written, nor e1's release.
        rows.fail.set(true);
        assert!(matches!(
            object.handle(settle("e2", "a", Some("")), T0 + 2),
            Response::Failed { .. }
        ));
        rows.fail.set(false);
        assert_eq!(
            object.handle(claim("e2", "b"), T0 + 3),
            claimed(Claimed::New),
            "no mark in memory that storage does not have"
        );
        rows.fail.set(true);
        object.handle(claim("e1", "x"), T0 + 4);
        assert!(matches!(
            object.handle(settle("e1", "a", None), T0 + 5),
            Response::Failed { .. }
        ));
        rows.fail.set(false);
        assert_eq!(
            object.handle(claim("e1", "y"), T0 + 6),
            claimed(Claimed::Done { reply: "".into() }),
            "the stored mark, as the next object would see it"
        );
    }

    #[test]
    fn a_busy_minute_costs_about_one_row_written_per_callback() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        // Ten minutes at one callback a second, each retried once.
        let start = 1_700_000_040_000; // a minute boundary
        for i in 0..600u64 {
            let now = start + i * 1000;
            let id = format!("e{i}");
            assert_eq!(
                claim_done(&mut object, &id, "a", now),
                claimed(Claimed::New)
            );
            assert!(matches!(
                claim_done(&mut object, &id, "b", now + 500),
                Response::Claimed(Claimed::Done { .. })
            ));
        }
        // A further ten minutes of nothing but the purge.
        for m in 0..10u64 {
            object.handle(claim("x", "a"), start + 600_000 + m * 60_000);
        }
        let written = rows.written.get();
        assert!(
            (600..=612).contains(&written),
            "600 callbacks, 10 buckets, their 10 deletes: {written} rows written"
        );
        assert!(rows.rows() <= 1, "expired buckets are deleted");
    }

    #[test]
    fn a_settle_in_a_busy_minute_rewrites_one_small_bucket_not_the_minute() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        // 3,000 callbacks in one minute, each with a plaintext nonce.
        let start = 1_700_000_040_000; // a minute boundary
        for i in 0..3000u64 {
            let now = start + i * 10;
            let id = format!("evt_{i:032x}");
            let nonce = Nonce {
                timestamp: (now / 1000).to_string(),
                nonce: format!("n{i}"),
                body_sha1: "f".repeat(40),
                expires_at: now / 1000 + 600,
            };
            object.handle(
                Request::Claim {
                    event_id: id.clone(),
                    attempt: "a".into(),
                    nonce: Some(nonce.clone()),
                    settled: vec![],
                },
                now,
            );
            object.handle(
                Request::Settle {
                    event_id: id,
                    attempt: "a".into(),
                    reply: Some(String::new()),
                    nonce: Some(nonce),
                },
                now,
            );
        }
        let largest = rows.largest.get();
        assert!(
            largest <= BUCKET_BYTES + 256,
            "the largest row written is {largest} bytes"
        );
        assert_eq!(rows.written.get(), 3000, "one row written per settle");
        assert!(
            rows.rows() > 10,
            "the minute is split: {} rows",
            rows.rows()
        );
        // Every mark and nonce is found again by the next object.
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        for i in [0u64, 1499, 2999] {
            assert!(matches!(
                object.handle(claim(&format!("evt_{i:032x}"), "b"), start + 30_000),
                Response::Claimed(Claimed::Done { .. })
            ));
        }
        assert_eq!((rows.marks(), rows.nonces()), (3000, 3000));
    }

    #[test]
    fn a_full_bucket_starts_the_next_part_of_its_minute() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        let reply = "x".repeat(4000);
        for i in 0..100 {
            let id = format!("e{i}");
            object.handle(claim(&id, "a"), T0);
            object.handle(settle(&id, "a", Some(&reply)), T0);
        }
        assert!(rows.rows() >= 2, "{} rows", rows.rows());
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        for i in [0, 99] {
            assert!(matches!(
                object.handle(claim(&format!("e{i}"), "b"), T0 + 1),
                Response::Claimed(Claimed::Done { .. })
            ));
        }
    }

    #[test]
    fn a_corrupted_bucket_is_ignored_not_a_failure() {
        let rows = MemoryRows::default();
        let mut object = AccountObject::new(rows.clone());
        claim_done(&mut object, "e1", "a", T0);
        drop(object);
        rows.corrupt();
        let mut object = AccountObject::new(rows.clone());
        assert_eq!(
            claim_done(&mut object, "e1", "b", T0 + 5),
            claimed(Claimed::New),
            "a duplicate rather than a refusal"
        );
    }

    #[test]
    fn a_failing_storage_is_a_failed_answer_not_a_panic() {
        let rows = MemoryRows::default();
        rows.fail.set(true);
        let mut object = AccountObject::new(rows);
        assert!(matches!(
            object.handle(claim("e1", "a"), T0),
            Response::Failed { .. }
        ));
    }

    #[test]
    fn requests_and_responses_round_trip_through_json() {
        let request = nonce_claim("e1", "h", 5);
        let text = super::super::protocol::encode(&request);
        assert_eq!(
            super::super::protocol::decode_request(text.as_bytes()),
            Some(request)
        );
        for response in [
            claimed(Claimed::Done { reply: "r".into() }),
            Response::Settled { taken: true },
            Response::Failed { error: "x".into() },
        ] {
            let text = super::super::protocol::encode_response(&response);
            assert_eq!(
                super::super::protocol::decode_response(text.as_bytes()),
                Ok(response)
            );
        }
        assert_eq!(
            super::super::protocol::decode_request(b"{\"drop_tables\":{}}"),
            None
        );
        assert!(super::super::protocol::decode_response(b"<html>").is_err());
    }
}
