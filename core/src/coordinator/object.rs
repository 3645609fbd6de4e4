//! An account's object: the claims and nonces of its callbacks, over [`Rows`].

use std::collections::BTreeMap;

use super::{Claimed, Nonce, Request, Response, IN_FLIGHT_BOUND_MS, MARK_TTL_SECS};

/// How often, at most, expired marks and nonces are deleted (in seconds).
const PURGE_EVERY_SECS: u64 = 60;

/// A settled claim: the reply WeChat got ("" for `success`), until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub reply: String,
    pub expires_at: u64,
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
    /// The mark of `event_id`, expired or not.
    fn mark(&self, event_id: &str) -> Result<Option<Mark>, RowsError>;
    fn put_mark(&self, event_id: &str, mark: &Mark) -> Result<(), RowsError>;
    /// The body hash and expiry of a stored (timestamp, nonce) pair, expired or not.
    fn nonce(&self, key: &str) -> Result<Option<(String, u64)>, RowsError>;
    fn put_nonce(&self, key: &str, body_sha1: &str, expires_at: u64) -> Result<(), RowsError>;
    /// Deletes the marks and nonces that expired before `now_secs`.
    fn purge(&self, now_secs: u64) -> Result<(), RowsError>;
}

/// A claim in flight: which attempt holds it, since when (Unix milliseconds).
#[derive(Debug, Clone)]
struct Flight {
    attempt: String,
    since_ms: u64,
}

/// One account's object. Single-threaded, as a Durable Object is: [`AccountObject::handle`]
/// runs each request to its end before the next.
pub struct AccountObject<R> {
    rows: R,
    /// In memory: lost with the object, after which a retry is processed again.
    flights: BTreeMap<String, Flight>,
    purged_at: u64,
}

impl<R: Rows> AccountObject<R> {
    pub fn new(rows: R) -> Self {
        AccountObject {
            rows,
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
            } => self
                .claim(&event_id, &attempt, nonce.as_ref(), now_ms)
                .map(Response::Claimed),
            Request::Settle {
                event_id,
                attempt,
                reply,
            } => self
                .settle(&event_id, &attempt, reply, now_ms)
                .map(|taken| Response::Settled { taken }),
        };
        result.unwrap_or_else(|e| Response::Failed { error: e.0 })
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
        if let Some(nonce) = nonce {
            let key = format!("{}:{}", nonce.timestamp, nonce.nonce);
            match self.rows.nonce(&key)? {
                Some((body, expires_at)) if expires_at >= now_secs => {
                    if body != nonce.body_sha1 {
                        return Ok(Claimed::Replayed);
                    }
                }
                _ => self
                    .rows
                    .put_nonce(&key, &nonce.body_sha1, nonce.expires_at)?,
            }
        }
        if let Some(mark) = self.rows.mark(event_id)? {
            if mark.expires_at >= now_secs {
                return Ok(Claimed::Done { reply: mark.reply });
            }
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
            },
        );
        Ok(Claimed::New)
    }

    fn settle(
        &mut self,
        event_id: &str,
        attempt: &str,
        reply: Option<String>,
        now_ms: u64,
    ) -> Result<bool, RowsError> {
        match self.flights.get(event_id) {
            // Taken over by a later attempt: that one settles.
            Some(flight) if flight.attempt != attempt => return Ok(false),
            Some(_) => {
                self.flights.remove(event_id);
            }
            // The object was evicted since the claim: the outcome still counts.
            None => {}
        }
        if let Some(reply) = reply {
            let mark = Mark {
                reply,
                expires_at: (now_ms / 1000).saturating_add(MARK_TTL_SECS),
            };
            self.rows.put_mark(event_id, &mark)?;
        }
        Ok(true)
    }

    /// At most once a minute: deletes expired rows, and forgets the flights of dead attempts
    /// (those past their bound; a claim finds one earlier itself and takes it over).
    fn purge(&mut self, now_ms: u64) -> Result<(), RowsError> {
        let now_secs = now_ms / 1000;
        if now_secs < self.purged_at.saturating_add(PURGE_EVERY_SECS) {
            return Ok(());
        }
        self.rows.purge(now_secs)?;
        self.purged_at = now_secs;
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
        }
    }

    fn settle(id: &str, attempt: &str, reply: Option<&str>) -> Request {
        Request::Settle {
            event_id: id.into(),
            attempt: attempt.into(),
            reply: reply.map(str::to_owned),
        }
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
        let last = T0 + MARK_TTL_SECS * 1000;
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

    fn nonce_claim(id: &str, body: &str, expires_at: u64) -> Request {
        Request::Claim {
            event_id: id.into(),
            attempt: format!("{id}-attempt"),
            nonce: Some(Nonce {
                timestamp: "1700000000".into(),
                nonce: "n1".into(),
                body_sha1: body.into(),
                expires_at,
            }),
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
            claimed(Claimed::Replayed)
        );
        assert_eq!(
            object.handle(nonce_claim("e1", "h1", window_end), T0 + 6),
            claimed(Claimed::New),
            "the same attempt: the same body is not a replay"
        );
        // Replays are refused after an eviction too.
        drop(object);
        let mut object = AccountObject::new(rows.clone());
        assert_eq!(
            object.handle(nonce_claim("e3", "h3", window_end), T0 + 7),
            claimed(Claimed::Replayed)
        );
        // Past the window the pair is forgotten (WeChat's signature check refuses it anyway).
        let later = (window_end + 1) * 1000;
        assert_eq!(
            object.handle(nonce_claim("e4", "h4", later / 1000 + 300), later),
            claimed(Claimed::New)
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
        let text = super::super::encode(&request);
        assert_eq!(super::super::decode_request(text.as_bytes()), Some(request));
        for response in [
            claimed(Claimed::Done { reply: "r".into() }),
            Response::Settled { taken: true },
            Response::Failed { error: "x".into() },
        ] {
            let text = super::super::encode_response(&response);
            assert_eq!(super::super::decode_response(text.as_bytes()), Ok(response));
        }
        assert_eq!(
            super::super::decode_request(b"{\"op\":\"drop_tables\"}"),
            None
        );
        assert!(super::super::decode_response(b"<html>").is_err());
    }
}
