//! Claims at the account's object, end to end: a retry while the first attempt waits on the
//! reply receiver, replayed plaintext URLs, eviction, an object that fails or is slow, and the
//! requests and rows each callback costs.

use futures_util::future::join;

use super::*;
use crate::coordinator::{Request, REQUEST_TIMEOUT_MS, WAIT_LIMIT_MS};

fn text_reply_world() -> T {
    let t = reply_world(&[]);
    answer_replies(&t, json!({"type": "text", "content": "hi"}));
    t
}

/// Queue mode, with a reply receiver that answers a text or without one.
fn queue_world(reply: bool) -> T {
    match reply {
        true => text_reply_world(),
        false => world(&[], true),
    }
}

fn replies_asked(t: &T) -> usize {
    t.http
        .requests()
        .iter()
        .filter(|s| s.path() == "/reply")
        .count()
}

#[test]
fn a_retry_while_the_first_attempt_waits_on_the_reply_receiver_gets_its_reply_and_nothing_twice() {
    for mode in [Sent::Plain, Sent::Safe] {
        let t = text_reply_world();
        t.http.delay_for.borrow_mut().insert("/reply".into(), 1_500);
        let (q, b, _) = t.message(mode);
        let first = t.relay.receive("default", &q, &b, [1; 32]);
        let retry = async {
            t.clock.sleep(300).await;
            t.relay.receive("default", &q, &b, [2; 32]).await
        };
        let (first, retry) = t.clock.run(join(first, retry));
        let (first, retry) = (first.unwrap(), retry.unwrap());
        assert_eq!(replies_asked(&t), 1, "the reply receiver is asked once");
        assert!(first.body.contains("<xml>"));
        assert!(retry.background.is_none(), "the retry hands nothing over");
        if mode == Sent::Plain {
            assert_eq!(retry.body, first.body, "the same passive reply");
        } else {
            // Sealed again with the retry's randomness: the same message inside.
            let (a, b) = (open_envelope(&first.body), open_envelope(&retry.body));
            assert_eq!(a.child_text("Content"), b.child_text("Content"));
        }
        t.drain(100);
        assert_eq!(
            t.deliveries().iter().filter(|s| s.path() == "/a").count(),
            1
        );
    }
}

#[test]
fn a_retry_of_an_attempt_still_running_after_the_wait_is_503_and_the_next_retry_is_answered() {
    let t = reply_world(&[("REPLY_TIMEOUT_MS", "4500")]);
    answer_replies(&t, json!({"type": "text", "content": "slow"}));
    t.http.delay_for.borrow_mut().insert("/reply".into(), 4_400);
    let (q, b, _) = t.message(Sent::Safe);
    let first = t.relay.receive("default", &q, &b, [1; 32]);
    let retry = async {
        t.clock.sleep(100).await;
        let started = t.clock.now_ms();
        let answer = t.relay.receive("default", &q, &b, [2; 32]).await;
        (answer, t.clock.now_ms() - started)
    };
    let (first, (retry, waited)) = t.clock.run(join(first, retry));
    assert!(first.unwrap().body.contains("<xml>"));
    let err = retry.err().unwrap();
    assert_eq!((err.status(), err.code()), (503, "in_flight"));
    assert!(
        waited <= WAIT_LIMIT_MS,
        "answered inside WeChat's 5 s: {waited} ms"
    );
    // WeChat's next retry gets the first attempt's outcome.
    let again = t.receive(&q, &b).unwrap();
    assert!(again.body.contains("<xml>"));
    assert!(again.background.is_none());
    assert_eq!(replies_asked(&t), 1);
}

#[test]
fn a_replayed_plaintext_url_with_another_body_is_401_and_forwarded_nowhere() {
    let t = world(&[], true);
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    let forged = String::from_utf8(b.clone())
        .unwrap()
        .replace("你好", "forged");
    assert_ne!(forged.as_bytes(), b.as_slice());
    let err = t.receive(&q, forged.as_bytes()).err().unwrap();
    assert_eq!((err.status(), err.code()), (401, "replayed"));
    // After an eviction too: the nonce is stored.
    t.coordinator.evict();
    let err = t.receive(&q, forged.as_bytes()).err().unwrap();
    assert_eq!(err.code(), "replayed");
    // The same body is WeChat's retry: answered, not delivered again.
    assert_eq!(t.receive(&q, &b).unwrap().body, "success");
    t.drain(100);
    assert_eq!(t.deliveries().len(), 1);
    // Safe mode needs no nonce: the body is authenticated.
    let (q, b, _) = t.message(Sent::Safe);
    t.receive_all(&q, &b).unwrap();
    let asked = t.coordinator.asked.borrow();
    let last = asked
        .iter()
        .rev()
        .find(|(_, r)| matches!(r, Request::Claim { .. }))
        .unwrap();
    assert!(matches!(last.1, Request::Claim { nonce: None, .. }));
}

#[test]
fn marks_survive_the_objects_eviction() {
    let t = text_reply_world();
    let (q, b, _) = t.message(Sent::Plain);
    let first = t.receive_all(&q, &b).unwrap();
    t.coordinator.evict();
    t.clock.advance(60_000);
    let again = t.receive(&q, &b).unwrap();
    assert_eq!(again.body, first);
    assert_eq!(replies_asked(&t), 1);
}

#[test]
fn a_quiet_callback_costs_two_requests_and_one_row_and_a_retry_one_request_and_no_row() {
    for reply in [false, true] {
        let t = queue_world(reply);
        let (q, b, _) = t.message(Sent::Safe);
        let answer = t.receive(&q, &b).unwrap();
        let kinds = || -> Vec<&'static str> {
            t.coordinator
                .asked
                .borrow()
                .iter()
                .map(|(_, r)| match r {
                    Request::Claim { .. } => "claim",
                    Request::Settle { .. } | Request::Report { .. } => "settle",
                    _ => "other",
                })
                .collect()
        };
        if reply {
            assert_eq!(
                kinds(),
                ["claim", "settle"],
                "settled before the reply is answered"
            );
        } else {
            assert_eq!(kinds(), ["claim"], "only the claim on the answer's path");
        }
        if let Some(background) = answer.background {
            t.clock.run(background);
        }
        assert_eq!(kinds(), ["claim", "settle"]);
        let written = t.coordinator.rows_of("default").written.get();
        assert_eq!(written, 1);
        t.receive_all(&q, &b).unwrap();
        assert_eq!(kinds(), ["claim", "settle", "claim"]);
        assert_eq!(
            t.coordinator.rows_of("default").written.get(),
            written,
            "a retry writes nothing"
        );
    }
}

#[test]
fn an_attempt_that_dies_after_its_claim_leaves_nothing_answered_for_it() {
    let t = world(&[("FORWARD_MODE", "direct")], true);
    let (q, b, _) = t.message(Sent::Safe);
    // Answered, but the isolate dies before its background work (delivery, settle) runs.
    let answer = t.receive(&q, &b).unwrap();
    drop(answer.background);
    assert!(t.deliveries().is_empty());
    // WeChat's retry after the bound reaches another isolate: processed, and delivered.
    t.clock.advance(crate::coordinator::IN_FLIGHT_BOUND_MS);
    let other = Relay {
        memory: Rc::default(),
        ..t.relay.clone()
    };
    let answer = t
        .clock
        .run(other.receive("default", &q, &b, [9; 32]))
        .unwrap();
    t.clock.run(answer.background.unwrap());
    assert_eq!(t.deliveries().len(), 1);
}

#[test]
fn a_claim_answered_too_late_is_still_released_when_the_hand_off_fails() {
    let t = world(&[], true);
    // The object takes the claim, but its answer comes after the 2 s limit.
    t.coordinator.delay_ms.set(REQUEST_TIMEOUT_MS + 500);
    let (q, b, _) = t.message(Sent::Safe);
    t.queue.fail_next.set(1);
    assert_eq!(t.receive(&q, &b).err().unwrap().status(), 503);
    t.coordinator.delay_ms.set(0);
    // The release went out anyway: WeChat's retry is processed, not answered from a claim.
    t.receive_all(&q, &b).unwrap();
    assert_eq!(t.queue.len(), 1);
}

#[test]
fn an_object_that_fails_or_is_slow_leaves_the_callback_handled_and_logged() {
    let t = world(&[], true);
    t.coordinator.rows_of("default").fail.set(true);
    let (q, b, _) = t.message(Sent::Safe);
    assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
    assert_eq!(t.queue.len(), 1, "handed over anyway");
    assert!(testing::take_logs()
        .iter()
        .any(|l| l.contains("did not answer")));

    let t = world(&[], true);
    t.coordinator.delay_ms.set(REQUEST_TIMEOUT_MS + 1_000);
    let (q, b, _) = t.message(Sent::Safe);
    let started = t.clock.now_ms();
    assert_eq!(t.receive(&q, &b).unwrap().body, "success");
    assert!(t.clock.now_ms() - started <= REQUEST_TIMEOUT_MS + 10);
    assert_eq!(t.queue.len(), 1);
}

#[test]
fn a_refused_hand_off_releases_the_claim_so_the_retry_is_processed() {
    for reply in [false, true] {
        let t = queue_world(reply);
        let (q, b, _) = t.message(Sent::Safe);
        t.queue.fail_next.set(1);
        assert_eq!(t.receive(&q, &b).err().unwrap().status(), 503);
        assert_eq!(
            t.coordinator.marks(),
            0,
            "released (reply receiver: {reply})"
        );
        t.receive_all(&q, &b).unwrap();
        assert_eq!(t.queue.len(), 1);
        assert_eq!(t.coordinator.marks(), 1);
    }
}

#[test]
fn on_a_busy_account_each_claim_carries_the_last_outcome_so_a_callback_costs_one_request() {
    let t = world(&[], true);
    let mut backgrounds = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let (q, b, _) = t.message(Sent::Safe);
        let answer = t.receive(&q, &b).unwrap();
        backgrounds.extend(answer.background);
        sent.push((q, b));
        t.clock.advance(100);
    }
    t.clock.run(futures_util::future::join_all(backgrounds));
    let asked = t.coordinator.asked.borrow().clone();
    assert_eq!(
        asked.len(),
        11,
        "ten claims, and one report for the last outcome"
    );
    assert!(matches!(asked.last(), Some((_, Request::Report { .. }))));
    assert_eq!(t.coordinator.marks(), 10, "every outcome arrived");
    // Every retry is answered from its mark.
    for (q, b) in &sent {
        let again = t.receive(q, b).unwrap();
        assert!(again.background.is_none());
    }
    assert_eq!(t.queue.len(), 10);
}

#[test]
fn outcomes_a_failed_claim_carried_are_reported_again() {
    let t = world(&[], true);
    let (q1, b1, _) = t.message(Sent::Safe);
    let first = t.receive(&q1, &b1).unwrap();
    // The next claim (carrying the first outcome) reaches no object.
    t.coordinator.unreachable.set(true);
    let (q2, b2, _) = t.message(Sent::Safe);
    let second = t.receive(&q2, &b2).unwrap();
    t.coordinator.unreachable.set(false);
    t.clock.run(futures_util::future::join_all(
        first.background.into_iter().chain(second.background),
    ));
    assert!(
        t.coordinator.marks() >= 1,
        "the first outcome was reported after all"
    );
    assert!(t.receive(&q1, &b1).unwrap().background.is_none());
}
