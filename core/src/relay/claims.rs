//! A callback's claim at its account's object: before anything is handed over, after the
//! answer is known.
//!
//! The claim goes before the hand-off; its settle (the reply WeChat got) before the answer with
//! a reply receiver, or after it without one: then held for this isolate's next claim to the
//! same object to carry, and sent alone after [`REPORT_AFTER_MS`] if none does, so a busy
//! account's callbacks cost one request each and a quiet one's two. A claim is done only when its settle arrives, so an attempt that dies in between leaves
//! a claim that lapses after the bound (WeChat's next retry is processed), never a mark that
//! answers `success` for an event nobody handed over. A retry of a callback in flight asks
//! again every [`WAIT_STEP_MS`] until [`WAIT_LIMIT_MS`], then is answered 503 so that WeChat
//! retries once more: answering `success` for an attempt that may still fail could lose the
//! event. Every question has [`REQUEST_TIMEOUT_MS`]; an object that does not answer in time,
//! or answers that it failed, leaves the callback uncoordinated: processed, and logged.

use super::*;
use crate::coordinator::{
    ask_within, Claimed, Nonce, Request, Response, Settlement, REPORT_AFTER_MS, REQUEST_TIMEOUT_MS,
    WAIT_LIMIT_MS, WAIT_STEP_MS,
};

/// What the claim decided.
pub(super) enum Claim {
    /// Process the callback, then [`Relay::settle`] the claim.
    Go(Held),
    /// Answered before (or by the attempt that was in flight): answer this reply again.
    Answered(String),
}

/// A claim this attempt holds.
pub(super) struct Held {
    object: String,
    event_id: String,
    attempt: String,
    nonce: Option<Nonce>,
    /// The object answered the claim. When it did not (too slow, failed), the outcome is still
    /// reported, quietly: the object may have taken the claim after all.
    coordinated: bool,
}

/// The attempt's id: random, so that two attempts at one callback are told apart.
fn attempt_id(random: &[u8; 32]) -> String {
    random.iter().skip(16).map(|b| format!("{b:02x}")).collect()
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// One question to the object `object`, within [`REQUEST_TIMEOUT_MS`]; `None` (logged)
    /// when it did not answer, or answered that it failed.
    async fn ask_object(
        &self,
        object: &str,
        event_id: &str,
        request: &Request,
    ) -> Option<Response> {
        match ask_within(
            &self.coordinator,
            &self.clock,
            object,
            request,
            REQUEST_TIMEOUT_MS,
        )
        .await
        {
            Ok(response) => Some(response),
            Err(error) => {
                log::warn!(event_id = event_id, account = object, error = error.as_str(); "the account object did not answer; the callback is handled without dedup or replay protection");
                None
            }
        }
    }

    /// Claims `event_id` at the object `object` (the account's; a platform's merchants share
    /// the platform's).
    pub(super) async fn claim(
        &self,
        object: &str,
        event_id: &str,
        nonce: Option<Nonce>,
        random: &[u8; 32],
    ) -> Result<Claim, Error> {
        let mut held = Held {
            object: object.to_owned(),
            event_id: event_id.to_owned(),
            attempt: attempt_id(random),
            nonce,
            coordinated: false,
        };
        let mut carried = self.memory.take_settlements(object);
        let mut request = Request::Claim {
            event_id: held.event_id.clone(),
            attempt: held.attempt.clone(),
            nonce: held.nonce.clone(),
            settled: carried.clone(),
        };
        let started = self.clock.now_ms();
        loop {
            let Some(response) = self.ask_object(object, event_id, &request).await else {
                // Maybe not applied: reported again later (a second report changes nothing).
                self.memory.return_settlements(object, carried);
                return Ok(Claim::Go(held));
            };
            // Applied: asking again carries nothing, and a later failure gives nothing back.
            carried.clear();
            if let Request::Claim { settled, .. } = &mut request {
                settled.clear();
            }
            match response {
                Response::Claimed(Claimed::New) => {
                    held.coordinated = true;
                    return Ok(Claim::Go(held));
                }
                Response::Claimed(Claimed::Done { reply }) => {
                    log::info!(event_id = event_id; "duplicate callback, not forwarded");
                    return Ok(Claim::Answered(reply));
                }
                Response::Claimed(Claimed::Replayed) => {
                    log::warn!(event_id = event_id, account = object; "replayed callback URL refused: its timestamp and nonce came before with another body");
                    return Err(Error::Replayed);
                }
                Response::Claimed(Claimed::InFlight) => {
                    let waited = self.clock.now_ms().saturating_sub(started);
                    if waited.saturating_add(WAIT_STEP_MS) > WAIT_LIMIT_MS {
                        log::warn!(event_id = event_id, waited_ms = waited; "an earlier attempt is still in flight; answering 503 so WeChat retries");
                        return Err(Error::StillInFlight);
                    }
                    self.clock.sleep(WAIT_STEP_MS).await;
                }
                _ => {
                    log::warn!(event_id = event_id; "the account object answered a claim with something else; handling the callback anyway");
                    return Ok(Claim::Go(held));
                }
            }
        }
    }

    /// Reports the outcome of a held claim: the reply WeChat is answered with (`Some`, "" for
    /// `success`), or `None` when nothing was handed over, so WeChat's retry is processed.
    pub(super) async fn settle(&self, held: Held, reply: Option<String>) {
        let request = Request::Settle {
            event_id: held.event_id.clone(),
            attempt: held.attempt,
            reply,
            nonce: held.nonce,
        };
        let answer = match held.coordinated {
            true => {
                self.ask_object(&held.object, &held.event_id, &request)
                    .await
            }
            // The claim went unanswered: report anyway, without a second warning.
            false => ask_within(
                &self.coordinator,
                &self.clock,
                &held.object,
                &request,
                REQUEST_TIMEOUT_MS,
            )
            .await
            .ok(),
        };
        if let Some(Response::Settled { taken: false }) = answer {
            log::warn!(event_id = held.event_id.as_str(); "this attempt's claim was taken over by a later one (it took longer than the bound); the event may be delivered twice");
        }
    }

    /// Reports `success` after the answer, as background work: held for this isolate's next
    /// claim to the same object to carry (so a busy account's callbacks cost one request each),
    /// and sent alone after [`REPORT_AFTER_MS`] if none did.
    pub(super) fn settle_after(&self, held: Held, reply: String) -> Background {
        let relay = self.clone();
        if !held.coordinated {
            return Box::pin(async move { relay.settle(held, Some(reply)).await });
        }
        let attempt = held.attempt.clone();
        relay.memory.hold_settlement(
            &held.object,
            Settlement {
                event_id: held.event_id.clone(),
                attempt: held.attempt,
                reply,
                nonce: held.nonce,
            },
        );
        let (object, event_id) = (held.object, held.event_id);
        Box::pin(async move {
            relay.clock.sleep(REPORT_AFTER_MS).await;
            let Some(settled) = relay.memory.take_settlements_with(&object, &attempt) else {
                return;
            };
            let request = Request::Report { settled };
            relay.ask_object(&object, &event_id, &request).await;
        })
    }
}
