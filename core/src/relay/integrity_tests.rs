//! Nothing dropped, nothing duplicated, at the edges production reaches: batches with failing
//! and slow jobs, the queue's retention, dead-letter storage failures, unreadable and newer
//! jobs, concurrent replays, large backlogs, broken settings.

use super::super::queue::{store_retry_delay, BODY_PATIENCE_MS, STORE_RETRY_MAX_SECS};
use super::*;
use crate::relay::{QueueMessage, MAX_OBJECTS_A_PAGE};

fn job_to(target: &str, n: u32) -> Job {
    let id = crate::event::event_id("default", None, format!("event {n}").as_bytes());
    Job::new(
        &id,
        "default",
        &Destination::Url(target.into()),
        format!(r#"{{"id":"{id}"}}"#).as_bytes(),
    )
}

fn message(job: &Job, attempts: u32, enqueued_ms: u64) -> QueueMessage {
    QueueMessage {
        text: job.to_text(),
        attempts,
        enqueued_ms,
    }
}

/// Hands every message to the consumer as batches of `size`, as Cloudflare Queues would.
fn drain_batches(t: &T, size: usize) {
    for _ in 0..10_000 {
        let batch = t.queue.take_batch(size);
        if batch.is_empty() {
            return;
        }
        let now = t.clock.now_ms();
        if let Some(wait) = batch.iter().map(|m| m.visible_at_ms).min() {
            if wait > now {
                t.clock.run(t.clock.sleep(wait - now));
            }
        }
        let messages: Vec<QueueMessage> = batch
            .iter()
            .map(|m| QueueMessage {
                text: m.text.clone(),
                attempts: m.attempts + 1,
                enqueued_ms: m.enqueued_ms,
            })
            .collect();
        let verdicts = t
            .clock
            .run(t.relay.consume_batch(messages, false, |_, _| {}));
        for (mut m, verdict) in batch.into_iter().zip(verdicts) {
            m.attempts += 1;
            match verdict {
                Verdict::Ack => {}
                Verdict::Retry { .. } if m.attempts > 100 => t.queue.dead.borrow_mut().push(m),
                Verdict::Retry { delay_secs } => t.queue.retry(m, delay_secs),
            }
        }
    }
    panic!("the queue never drained");
}

#[test]
fn a_failing_a_slow_and_a_healthy_job_each_get_their_own_verdict() {
    let t = world(&[], true);
    t.receive_with(|seen| match seen.path().as_str() {
        "/unresolvable" => Err(FetchError::Network("internal error".into())),
        _ => Ok(FakeAnswer::status(204)),
    });
    let started = t.clock.now_ms();
    // Every request takes a while; the slow one longer than an attempt may.
    t.http.delay_ms.set(100);
    t.http
        .delay_for
        .borrow_mut()
        .insert("/slow".into(), crate::delivery::ATTEMPT_TIMEOUT_MS + 1);
    let mut jobs = Vec::new();
    for n in 0..4 {
        jobs.push(job_to("http://bad.test/unresolvable", n));
        jobs.push(job_to("http://hooks.test/slow", n));
        jobs.push(job_to("http://hooks.test/healthy", n));
    }
    let settled = RefCell::new(Vec::new());
    let messages: Vec<QueueMessage> = jobs.iter().map(|j| message(j, 1, NOW * 1000)).collect();
    let verdicts = t.clock.run(
        t.relay
            .consume_batch(messages, false, |i, v| settled.borrow_mut().push((i, v))),
    );
    assert_eq!(verdicts.len(), 12);
    for (i, verdict) in verdicts.iter().enumerate() {
        match i % 3 {
            2 => assert_eq!(*verdict, Verdict::Ack, "healthy job {i}"),
            _ => assert!(
                matches!(verdict, Verdict::Retry { .. }),
                "job {i}: {verdict:?}"
            ),
        }
    }
    // Each message settled once, as it finished.
    let mut order: Vec<usize> = settled.borrow().iter().map(|(i, _)| *i).collect();
    order.sort_unstable();
    assert_eq!(order, (0..12).collect::<Vec<_>>());
    // Never more than six requests at once, and each healthy target got its event once.
    assert!(t.http.max_in_flight.get() <= MAX_PARALLEL_ATTEMPTS as u32);
    assert_eq!(t.http.max_in_flight.get(), MAX_PARALLEL_ATTEMPTS as u32);
    assert_eq!(t.http.count("/healthy"), 4);
    assert!(t.store.keys().iter().all(|k| !k.starts_with("dead:")));
    // The slow ones ran in turn, each with its own full time limit.
    assert!(t.clock.now_ms() - started > crate::delivery::ATTEMPT_TIMEOUT_MS);
}

#[test]
fn a_failing_target_beside_a_healthy_one_duplicates_nothing() {
    let t = world(
        &[(
            "FORWARD_URLS",
            "http://bad.test/unresolvable http://hooks.test/a",
        )],
        true,
    );
    t.receive_with(|seen| match seen.path().as_str() {
        "/unresolvable" => Err(FetchError::Network("internal error".into())),
        _ => Ok(FakeAnswer::status(204)),
    });
    for _ in 0..25 {
        let (q, b, _) = t.message(Sent::Plain);
        t.receive_all(&q, &b).unwrap();
    }
    // A day of retries for the failing target, in batches of ten.
    drain_batches(&t, 10);
    let healthy: Vec<String> = t
        .http
        .requests()
        .iter()
        .filter(|s| s.path() == "/a")
        .map(|s| event_of(s)["id"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::BTreeSet<_> = healthy.iter().collect();
    assert_eq!((healthy.len(), distinct.len()), (25, 25));
    // The failing target's jobs end as dead letters, none lost to the retention.
    assert_eq!(t.dead_letters().len(), 25);
    assert!(t.queue.expired.borrow().is_empty());
}

#[test]
fn no_retry_is_scheduled_past_the_queue_retention() {
    // A receiver asking for 25 hours.
    let t = world(&[], true);
    t.receive_with(|_| {
        Ok(FakeAnswer {
            status: 503,
            headers: vec![("retry-after".into(), "90000".into())],
            body: Vec::new(),
        })
    });
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    t.drain(100);
    assert!(t.queue.expired.borrow().is_empty(), "nothing vanished");
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["last_status"], 503);
    // The first retry came after the queue's longest delay, the second would have been late.
    assert_eq!(t.deliveries().len(), 2);
    assert!(t.clock.now_ms() - NOW * 1000 < 24 * 3_600_000);

    // The schedule alone: every 15 minutes, FORWARD_MAX_ATTEMPTS high, QUEUE_RETENTION 4h.
    let t = world(
        &[
            ("FORWARD_RETRY_DELAYS", "15m"),
            ("FORWARD_MAX_ATTEMPTS", "15"),
            ("QUEUE_RETENTION", "4h"),
        ],
        true,
    );
    t.queue.retention_ms.set(4 * 3_600_000);
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    t.drain(100);
    assert!(t.queue.expired.borrow().is_empty());
    assert_eq!(t.dead_letters().len(), 1);
    assert_eq!(t.deliveries().len(), 15);

    // A schedule that cannot fit is a configuration error naming both settings.
    let t = world(
        &[
            ("FORWARD_RETRY_DELAYS", "1h"),
            ("FORWARD_MAX_ATTEMPTS", "30"),
        ],
        true,
    );
    let e = t.relay.config.schedule().unwrap_err();
    assert!(
        e.to_string().contains("FORWARD_RETRY_DELAYS")
            && e.to_string().contains("FORWARD_MAX_ATTEMPTS"),
        "{e}"
    );
    assert!(t.relay.config.problems().contains(&e));
}

#[test]
fn a_dead_letter_that_cannot_be_stored_keeps_its_message_until_it_can() {
    let t = world(
        &[
            ("FORWARD_MAX_ATTEMPTS", "2"),
            ("FORWARD_RETRY_DELAYS", "1s"),
        ],
        true,
    );
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    t.store.fail_writes.set(true);
    for _ in 0..5 {
        let (m, verdict) = t.step().unwrap();
        assert!(matches!(verdict, Verdict::Retry { .. }), "{verdict:?}");
        t.queue.retry(m, 0);
    }
    assert_eq!(t.queue.len(), 1, "still queued");
    t.store.fail_writes.set(false);
    t.drain(100);
    assert_eq!(t.dead_letters().len(), 1);
    assert!(t.queue.is_empty());
    // The dead-letter queue's consumer does the same.
    let job = job_to("http://hooks.test/a", 9);
    t.store.fail_writes.set(true);
    assert!(matches!(
        t.clock
            .run(t.relay.consume_dead(&job.to_text(), 1, NOW * 1000)),
        Verdict::Retry { .. }
    ));
    t.store.fail_writes.set(false);
    assert_eq!(
        t.clock
            .run(t.relay.consume_dead(&job.to_text(), 1, NOW * 1000)),
        Verdict::Ack
    );
    assert_eq!(t.dead_letters().len(), 2);
}

#[test]
fn unreadable_messages_become_dead_letters_and_newer_jobs_are_delivered() {
    let t = world(&[], true);
    for garbage in ["{oops", "null", r#"{"v":1,"event_id":"evt_x"}"#] {
        assert_eq!(t.clock.run(t.relay.consume(garbage, 1, 0)), Verdict::Ack);
    }
    assert_eq!(t.clock.run(t.relay.consume_dead("[]", 1, 0)), Verdict::Ack);
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 4);
    assert!(letters.iter().all(|l| l["unreadable"] == true));
    // Kept whole in the store, for a person; never replayed.
    assert!(t
        .store
        .keys()
        .iter()
        .any(|k| t.store.peek(k).is_some_and(|v| v.contains("oops"))));
    let replay = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery::default()))
        .unwrap();
    assert_eq!(replay["queued"], 0);
    // Listed last, never replayed, not counted as remaining (a drain loop ends).
    assert_eq!(replay["remaining"], 0);
    let results = replay["replayed"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r["result"] == "unreadable"));
    // Storage down: not acked.
    t.store.fail_writes.set(true);
    assert!(matches!(
        t.clock.run(t.relay.consume("{other", 1, 0)),
        Verdict::Retry { .. }
    ));
    t.store.fail_writes.set(false);
    // A job of a newer version, with fields this one does not know.
    let newer = job_to("http://hooks.test/a", 1)
        .to_text()
        .replace("\"v\":1", "\"v\":2,\"trace\":{\"span\":\"x\"}");
    assert_eq!(t.clock.run(t.relay.consume(&newer, 1, 0)), Verdict::Ack);
    assert_eq!(t.deliveries().len(), 1);
}

#[test]
fn concurrent_replays_deliver_a_dead_letter_once() {
    for with_queue in [true, false] {
        let t = world(&[("FORWARD_MAX_ATTEMPTS", "1")], with_queue);
        t.receive_with(|_| Ok(FakeAnswer::status(500)));
        let (q, b, _) = t.message(Sent::Plain);
        t.receive_all(&q, &b).unwrap();
        t.drain(100);
        let id = t.dead_letters()[0]["id"].as_str().unwrap().to_owned();
        t.receive_with(|_| Ok(FakeAnswer::status(204)));
        t.http.delay_ms.set(50);
        let before = t.deliveries().len();
        let (a, b) = t
            .clock
            .run(futures_util::future::join3(
                t.relay.replay(&DeadLetterQuery {
                    id: Some(&id),
                    ..Default::default()
                }),
                t.relay.replay(&DeadLetterQuery {
                    id: Some(&id),
                    ..Default::default()
                }),
                t.relay.replay(&DeadLetterQuery::default()),
            ))
            .into_tuple();
        let _ = (a, b);
        t.http.delay_ms.set(0);
        t.drain(100);
        assert_eq!(t.deliveries().len() - before, 1, "queue: {with_queue}");
        assert!(t.dead_letters().is_empty());
        // A replay whose delivery fails leaves one dead letter, not two.
        t.receive_with(|_| Ok(FakeAnswer::status(500)));
        let (q, b, _) = t.message(Sent::Plain);
        t.receive_all(&q, &b).unwrap();
        t.drain(100);
        t.clock
            .run(t.relay.replay(&DeadLetterQuery::default()))
            .unwrap();
        t.drain(100);
        assert_eq!(t.dead_letters().len(), 1, "queue: {with_queue}");
    }
}

trait IntoTuple<A, B> {
    fn into_tuple(self) -> (A, B);
}

impl<A, B, C> IntoTuple<A, B> for (A, B, C) {
    fn into_tuple(self) -> (A, B) {
        (self.0, self.1)
    }
}

#[test]
fn paging_and_draining_a_large_backlog_stays_under_the_operation_limit() {
    let t = world(&[], true);
    for n in 0..2_500 {
        let job = job_to(&format!("http://hooks.test/{}", n % 3), n);
        let failed = Failed {
            target: job.destination().unwrap(),
            attempts: 96,
            last: Outcome::Refused { status: 410 },
            first_attempt_ms: NOW * 1000,
            last_attempt_ms: NOW * 1000,
        };
        t.clock
            .run(dead_letters::put(
                &t.store,
                &DeadLetter::from_job(&job, &failed),
            ))
            .unwrap();
    }
    // Pages of at most 1,000, each reading only itself.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        t.store.reset_ops();
        let page = t
            .clock
            .run(t.relay.dead_letters(&DeadLetterQuery {
                limit: Some("1000"),
                cursor: cursor.as_deref(),
                ..Default::default()
            }))
            .unwrap();
        // One list per object asked, one read each (and, once, the look-up of WECHAT_KV's).
        assert!(
            t.store.reset_ops() as usize <= 1_000 + MAX_OBJECTS_A_PAGE + 2,
            "one list and one read each"
        );
        for l in page["dead_letters"].as_array().unwrap() {
            assert!(seen.insert(format!("{}{}", l["id"], l["target"])));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2_500);
    let first = t
        .clock
        .run(t.relay.dead_letters(&DeadLetterQuery::default()))
        .unwrap();
    assert_eq!(first["dead_letters"].as_array().unwrap().len(), 100);
    for bad in ["0", "1001", "x"] {
        assert_eq!(
            t.clock
                .run(t.relay.dead_letters(&DeadLetterQuery {
                    limit: Some(bad),
                    ..Default::default()
                }))
                .unwrap_err(),
            Error::MalformedParameter("limit")
        );
    }
    let long = "c".repeat(1_025);
    for bad in ["a b", "dead:\u{0}", "键", long.as_str()] {
        assert_eq!(
            t.clock
                .run(t.relay.dead_letters(&DeadLetterQuery {
                    cursor: Some(bad),
                    ..Default::default()
                }))
                .unwrap_err(),
            Error::MalformedParameter("cursor")
        );
        assert_eq!(
            t.clock
                .run(t.relay.replay(&DeadLetterQuery {
                    cursor: Some(bad),
                    ..Default::default()
                }))
                .unwrap_err(),
            Error::MalformedParameter("cursor")
        );
    }
    // A cursor from another listing (or made up) is only a place to start from, in an object
    // the listing walks.
    let elsewhere = t
        .clock
        .run(t.relay.dead_letters(&DeadLetterQuery {
            cursor: Some("~relay/dead:~relay:~"),
            ..Default::default()
        }))
        .unwrap();
    assert!(elsewhere["dead_letters"].as_array().unwrap().is_empty());
    assert_eq!(elsewhere["cursor"], serde_json::Value::Null);
    for nowhere in ["nobody/", "dead:~"] {
        assert_eq!(
            t.clock
                .run(t.relay.dead_letters(&DeadLetterQuery {
                    cursor: Some(nowhere),
                    ..Default::default()
                }))
                .unwrap_err(),
            Error::MalformedParameter("cursor")
        );
    }
    // Replay until nothing remains: each event once, each call under 1,000 operations.
    let mut calls = 0;
    loop {
        t.store.reset_ops();
        let r = t
            .clock
            .run(t.relay.replay(&DeadLetterQuery::default()))
            .unwrap();
        assert!(t.store.reset_ops() < 1_000, "{r}");
        calls += 1;
        if r["remaining"] == 0 {
            break;
        }
        assert!(calls < 100, "replay never drained");
    }
    t.drain(100);
    let ids: Vec<String> = t
        .deliveries()
        .iter()
        .map(|s| format!("{}{}", event_of(s)["id"], s.path()))
        .collect();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (2_500, 2_500));
}

#[test]
fn a_malformed_forward_secret_never_delivers_unsigned() {
    let t = world(&[("FORWARD_SECRET", "not-a-secret")], true);
    let job = job_to("http://hooks.test/a", 1);
    // The main consumer postpones; the dead-letter queue's keeps a dead letter.
    assert!(matches!(
        t.clock.run(t.relay.consume(&job.to_text(), 1, NOW * 1000)),
        Verdict::Retry {
            delay_secs: super::super::queue::POSTPONE_SECS
        }
    ));
    assert_eq!(
        t.clock
            .run(t.relay.consume_dead(&job.to_text(), 1, NOW * 1000)),
        Verdict::Ack
    );
    assert!(t.deliveries().is_empty());
    assert_eq!(t.dead_letters().len(), 1);
    assert!(t.dead_letters()[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("FORWARD_SECRET"));
    // Postponed near the retention's end: a dead letter rather than a lost job.
    let late = NOW * 1000 + 23 * 3_600_000 + 50 * 60_000;
    t.clock.set_secs(late / 1000);
    let other = job_to("http://hooks.test/b", 2);
    assert_eq!(
        t.clock
            .run(t.relay.consume(&other.to_text(), 1, NOW * 1000)),
        Verdict::Ack
    );
    assert_eq!(t.dead_letters().len(), 2);
    assert!(t.deliveries().is_empty());
}

#[test]
fn one_callbacks_jobs_are_enqueued_all_or_none() {
    let t = world(
        &[(
            "FORWARD_URLS",
            "http://hooks.test/a http://hooks.test/b http://hooks.test/c",
        )],
        true,
    );
    let (q, b, _) = t.message(Sent::Plain);
    t.queue.fail_next.set(1);
    let refused = t.receive(&q, &b).err().map(|e| e.status());
    assert_eq!(refused, Some(503));
    assert!(t.queue.is_empty(), "none of the three");
    t.receive_all(&q, &b).unwrap();
    assert_eq!(t.queue.len(), 3);
}

#[test]
fn a_kept_body_not_yet_visible_is_waited_for_and_a_lost_one_never_replays_empty() {
    let t = world(&[], true);
    let big = "长".repeat(60_000);
    let xml = text_message("o_big", &big, 1, NOW);
    let (q, b) = callback(TOKEN, KEY, APP_ID, &xml, Sent::Plain, NOW, "1");
    t.receive_all(&q, &b).unwrap();
    let job_text = t.queue.sent.borrow()[0].0.clone();
    let key = jobs::body_key(&Job::parse(&job_text).unwrap().event_id);
    let kept = t.store.peek(&key).unwrap();
    // Another location has not seen the write yet: retried, not dead-lettered.
    t.store.clock_delete(&key);
    assert!(matches!(
        t.clock.run(t.relay.consume(&job_text, 1, NOW * 1000)),
        Verdict::Retry { .. }
    ));
    assert!(t.dead_letters().is_empty());
    t.store.insert(&key, &kept);
    assert_eq!(
        t.clock.run(t.relay.consume(&job_text, 2, NOW * 1000)),
        Verdict::Ack
    );
    // Gone for good (deleted by hand, long after): the job is kept whole, unreplayable.
    t.store.clock_delete(&key);
    t.clock.advance(BODY_PATIENCE_MS + 1);
    assert_eq!(
        t.clock.run(t.relay.consume(&job_text, 3, NOW * 1000)),
        Verdict::Ack
    );
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["unreadable"], true);
    let before = t.deliveries().len();
    t.clock
        .run(t.relay.replay(&DeadLetterQuery::default()))
        .unwrap();
    t.drain(10);
    assert_eq!(
        t.deliveries().len(),
        before,
        "never sent with an empty body"
    );
}

#[test]
fn a_store_that_keeps_failing_is_retried_ever_less_often() {
    let delays: Vec<u32> = (1..=10).map(store_retry_delay).collect();
    assert_eq!(&delays[..4], &[60, 120, 240, 480]);
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(delays[9], STORE_RETRY_MAX_SECS);
    // Direct mode: a dead letter that cannot be stored after the answer goes to the queue.
    let t = world(&[("FORWARD_MODE", "direct")], true);
    t.receive_with(|_| Ok(FakeAnswer::status(410)));
    t.store.fail_writes.set(true);
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    assert_eq!(t.queue.len(), 1, "the job went back to the queue");
    t.store.fail_writes.set(false);
    t.drain(100);
    assert_eq!(t.dead_letters().len(), 1);
}

fn letter_of(account: &str, target: &str, n: u32) -> DeadLetter {
    let id = crate::event::event_id(account, None, format!("event {n}").as_bytes());
    let job = Job::new(
        &id,
        account,
        &Destination::Url(target.into()),
        format!(r#"{{"id":"{id}","type":"message.text"}}"#).as_bytes(),
    );
    let failed = Failed {
        target: job.destination().unwrap(),
        attempts: 3,
        last: Outcome::Refused { status: 410 },
        first_attempt_ms: NOW * 1000,
        last_attempt_ms: NOW * 1000,
    };
    DeadLetter::from_job(&job, &failed)
}

#[test]
fn dead_letters_are_walked_account_by_account_and_filtered() {
    let t = world(
        &[(
            "WECHAT_ACCOUNTS",
            r#"{"shop": {"kind": "official", "app_id": "wxshop"}}"#,
        )],
        true,
    );
    for n in 0..3 {
        for (account, target) in [
            ("default", "http://hooks.test/a"),
            ("shop", "http://hooks.test/b"),
        ] {
            t.clock
                .run(dead_letters::put(&t.store, &letter_of(account, target, n)))
                .unwrap();
        }
    }
    let raw = DeadLetter::unreadable("{oops", "not json", NOW * 1000);
    t.clock.run(dead_letters::put(&t.store, &raw)).unwrap();
    // Pages of 2 walk default's, then shop's, then the deployment's, each letter once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = t
            .clock
            .run(t.relay.dead_letters(&DeadLetterQuery {
                limit: Some("2"),
                cursor: cursor.as_deref(),
                ..Default::default()
            }))
            .unwrap();
        let listed = page["dead_letters"].as_array().unwrap();
        assert!(!listed.is_empty(), "never an empty page");
        for l in listed {
            seen.push((l["account"].as_str().unwrap().to_owned(), l["type"].clone()));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let accounts: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        accounts,
        ["default", "default", "default", "shop", "shop", "shop", ""]
    );
    assert_eq!(seen[0].1, "message.text");
    // One account's, one target's.
    let shop = |q: DeadLetterQuery| {
        t.clock.run(t.relay.dead_letters(&q)).unwrap()["dead_letters"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        shop(DeadLetterQuery {
            account: Some("shop"),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        shop(DeadLetterQuery {
            target: Some("/b"),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        shop(DeadLetterQuery {
            account: Some("default"),
            target: Some("/b"),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        t.clock
            .run(t.relay.dead_letters(&DeadLetterQuery {
                account: Some("Shop!"),
                ..Default::default()
            }))
            .unwrap_err(),
        Error::MalformedParameter("account")
    );
    // A replay of one account's sends only those; `remaining` counts that account's.
    let r = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery {
            account: Some("shop"),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(
        (r["queued"].as_u64(), r["remaining"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(r["replayed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["account"] == "shop" && e["target"] == "http://hooks.test/b"));
    t.drain(10);
    assert_eq!(t.deliveries().len(), 3);
    assert!(t.deliveries().iter().all(|s| s.path() == "/b"));
    let everyone = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery::default()))
        .unwrap();
    // default's three; the unreadable message is listed, never replayed, and not counted.
    assert_eq!(everyone["queued"], 3);
    assert_eq!(everyone["remaining"], 0);
    assert!(everyone["replayed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["result"] == "unreadable"));
}

#[test]
fn dead_letters_a_relay_before_the_objects_kept_are_listed_and_replayed() {
    let t = world(&[], true);
    let old = letter_of("default", "http://hooks.test/a", 1);
    let hash = old.key().rsplit(':').next().unwrap().to_owned();
    let legacy = format!("dead:{}:{hash}", old.id);
    t.store
        .insert(&legacy, &serde_json::to_string(&old).unwrap());
    let page = t
        .clock
        .run(t.relay.dead_letters(&DeadLetterQuery::default()))
        .unwrap();
    assert_eq!(page["dead_letters"][0]["id"], old.id.as_str());
    assert_eq!(t.store.peek(&legacy), None, "moved out of WECHAT_KV");
    assert!(
        t.store.peek(&old.key()).is_some(),
        "into the account's object"
    );
    let r = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery {
            id: Some(&old.id),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(r["queued"], 1);
    t.drain(10);
    assert_eq!(t.deliveries().len(), 1);
    assert!(t.dead_letters().is_empty());
}

#[test]
fn one_events_replay_finds_it_past_the_first_objects_a_call_asks() {
    let accounts: Vec<String> = (0..30)
        .map(|i| format!(r#""shop{i:02}": {{"kind": "official", "app_id": "wxshop{i:011}"}}"#))
        .collect();
    let doc = format!("{{{}}}", accounts.join(", "));
    let t = world(&[("WECHAT_ACCOUNTS", doc.as_str())], true);
    let last = letter_of("shop29", "http://hooks.test/a", 1);
    t.clock.run(dead_letters::put(&t.store, &last)).unwrap();
    let r = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery {
            id: Some(&last.id),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(r["queued"], 1, "{r}");
    assert_eq!(
        t.clock
            .run(t.relay.replay(&DeadLetterQuery {
                id: Some("evt_ffffffffffffffffffffffffffffffff"),
                ..Default::default()
            }))
            .unwrap_err(),
        Error::NotFound
    );
}

#[test]
fn a_replay_job_of_a_relay_before_the_objects_removes_the_moved_letter() {
    let t = world(&[], true);
    let old = letter_of("default", "http://hooks.test/a", 7);
    let hash = old.key().rsplit(':').next().unwrap().to_owned();
    let mut job = old.to_job();
    // Queued by the old relay, naming the letter's WECHAT_KV key; the letter moved since.
    job.replay_of = Some(format!("dead:{}:{hash}", old.id));
    t.clock.run(dead_letters::put(&t.store, &old)).unwrap();
    t.clock.run(
        t.relay
            .consume_batch(vec![message(&job, 1, NOW * 1000)], false, |_, _| {}),
    );
    assert_eq!(t.deliveries().len(), 1);
    assert!(t.dead_letters().is_empty(), "the moved copy is gone too");
}
