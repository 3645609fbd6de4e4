//! The relay's flows end to end on the in-memory ports: durable delivery in both modes, the
//! consumer's schedule, dead letters and replay, routing, and passive replies.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::delivery::webhook::WebhookSecret;
use crate::ports::{FetchError, SoftwareCipher};
use crate::relay::DeadLetterQuery;
use crate::testing::{
    self, callback, config, text_message, FakeAnswer, FakeClock, FakeHttp, FakeQueue,
    LocalCoordinator, MemoryStore, Seen, Sent, WeChatState,
};
use crate::wire::crypto::AesKey;

const NOW: u64 = 1_800_000_000;
const TOKEN: &str = "spamtest";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wx2c2769f8efd9abc2";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Receiver = Rc<RefCell<Box<dyn Fn(&Seen) -> Result<FakeAnswer, FetchError>>>>;

struct T {
    clock: FakeClock,
    store: MemoryStore,
    coordinator: LocalCoordinator,
    http: FakeHttp,
    queue: FakeQueue,
    wechat: Rc<WeChatState>,
    receiver: Receiver,
    relay: Relay<FakeClock, MemoryStore, LocalCoordinator, FakeHttp, FakeQueue, SoftwareCipher>,
    seq: std::cell::Cell<u64>,
}

fn world(extra: &[(&str, &str)], with_queue: bool) -> T {
    let clock = FakeClock::at(NOW * 1000);
    let mut pairs = vec![
        ("WECHAT_TOKEN", TOKEN),
        ("WECHAT_ENCODING_AES_KEY", KEY),
        ("WECHAT_APP_ID", APP_ID),
        ("WECHAT_APP_SECRET", "app-secret"),
        ("WECHAT_API_BASE", "http://wechat.test"),
        ("FORWARD_URLS", "http://hooks.test/a"),
        ("FORWARD_SECRET", SECRET),
        // The flows below take plaintext and safe-mode callbacks alike.
        ("WECHAT_MESSAGE_MODE", "compatible"),
    ];
    pairs.extend_from_slice(extra);
    let wechat = Rc::new(WeChatState::default());
    let receiver: Receiver = Rc::new(RefCell::new(Box::new(|_| Ok(FakeAnswer::status(204)))));
    let (w, r) = (wechat.clone(), receiver.clone());
    let http = FakeHttp::new(&clock, move |seen| {
        if seen
            .request
            .url()
            .is_some_and(|u| u.starts_with("http://wechat.test/"))
        {
            w.answer(seen)
        } else {
            (r.borrow())(seen)
        }
    });
    let store = MemoryStore::new(&clock);
    let config = Rc::new(config(&pairs));
    let coordinator = LocalCoordinator::new(&clock).with_token_service(&http, &config);
    let queue = FakeQueue::new(&clock);
    let relay = Relay {
        clock: clock.clone(),
        store: store.clone(),
        coordinator: coordinator.clone(),
        http: http.clone(),
        queue: with_queue.then(|| queue.clone()),
        cipher: SoftwareCipher,
        memory: Rc::default(),
        config,
    };
    T {
        clock,
        store,
        coordinator,
        http,
        queue,
        wechat,
        receiver,
        relay,
        seq: Default::default(),
    }
}

impl T {
    fn receive_with(&self, f: impl Fn(&Seen) -> Result<FakeAnswer, FetchError> + 'static) {
        *self.receiver.borrow_mut() = Box::new(f);
    }

    /// A fresh text message, sent in `mode`.
    fn message(&self, mode: Sent) -> (Query, Vec<u8>, String) {
        self.seq.set(self.seq.get() + 1);
        let from = format!("o_user_{}", self.seq.get());
        let xml = text_message(
            &from,
            "你好 😀",
            7_000_000 + self.seq.get(),
            self.clock.now_secs(),
        );
        // A nonce of its own: in plaintext mode a pair seen with another body is a replay.
        let nonce = format!("n{}", self.seq.get());
        let (q, b) = callback(
            TOKEN,
            KEY,
            APP_ID,
            &xml,
            mode,
            self.clock.now_secs(),
            &nonce,
        );
        (q, b, from)
    }

    fn receive(&self, q: &Query, body: &[u8]) -> Result<Answer, Error> {
        self.clock
            .run(self.relay.receive("default", q, body, [3; 32]))
    }

    /// Receives, then runs the background work to completion.
    fn receive_all(&self, q: &Query, body: &[u8]) -> Result<String, Error> {
        let answer = self.receive(q, body)?;
        if let Some(bg) = answer.background {
            self.clock.run(bg);
        }
        Ok(answer.body)
    }

    /// Webhook deliveries seen so far (not WeChat API calls).
    fn deliveries(&self) -> Vec<Seen> {
        self.http
            .requests()
            .into_iter()
            .filter(|s| {
                !s.request
                    .url()
                    .is_some_and(|u| u.starts_with("http://wechat.test/"))
            })
            .collect()
    }

    /// Hands the next message to the consumer (waiting until it is visible): the message, with
    /// its attempts counted, and the consumer's verdict.
    fn step(&self) -> Option<(testing::Queued, Verdict)> {
        let mut m = self.queue.take_next()?;
        let now = self.clock.now_ms();
        if m.visible_at_ms > now {
            self.clock.run(self.clock.sleep(m.visible_at_ms - now));
        }
        m.attempts += 1;
        let verdict = self
            .clock
            .run(self.relay.consume(&m.text, m.attempts, m.enqueued_ms));
        Some((m, verdict))
    }

    /// Plays the queue like Cloudflare Queues until it is empty: waits for the next visible
    /// message, hands it to the consumer, follows its verdict; after `max_retries` retries a
    /// message goes to the dead-letter queue.
    fn drain(&self, max_retries: u32) {
        for _ in 0..10_000 {
            let Some((m, verdict)) = self.step() else {
                return;
            };
            match verdict {
                Verdict::Ack => {}
                Verdict::Retry { .. } if m.attempts > max_retries => {
                    self.queue.dead.borrow_mut().push(m)
                }
                Verdict::Retry { delay_secs } => self.queue.retry(m, delay_secs),
            }
        }
        panic!("the queue never drained");
    }

    fn dead_letters(&self) -> Vec<serde_json::Value> {
        let v = self
            .clock
            .run(self.relay.dead_letters(&DeadLetterQuery::default()))
            .unwrap();
        v["dead_letters"].as_array().unwrap().clone()
    }
}

fn event_of(seen: &Seen) -> serde_json::Value {
    serde_json::from_slice(seen.request.body.as_deref().unwrap()).unwrap()
}

// --- queue mode -------------------------------------------------------------------------------

/// A platform cipher that always fails: which messages reach it shows in the outcome.
#[derive(Debug, Clone, Copy, Default)]
struct RefusingCipher;

impl crate::ports::Cipher for RefusingCipher {
    async fn cbc_decrypt(
        &self,
        _key: &AesKey,
        _ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>, crate::wire::crypto::DecryptError> {
        Err(crate::wire::crypto::DecryptError::Length)
    }
}

#[test]
fn short_messages_are_decrypted_by_the_core_long_ones_by_the_platform_cipher() {
    let t = world(&[], true);
    let relay = Relay {
        clock: t.clock.clone(),
        store: t.store.clone(),
        coordinator: t.coordinator.clone(),
        http: t.http.clone(),
        queue: Some(t.queue.clone()),
        cipher: RefusingCipher,
        memory: Rc::default(),
        config: t.relay.config.clone(),
    };
    let send = |content: &str, seq: u64| {
        let xml = text_message("o_user", content, 9_000_000 + seq, NOW);
        let (q, b) = callback(
            TOKEN,
            KEY,
            APP_ID,
            &xml,
            Sent::Safe,
            NOW,
            &format!("n{seq}"),
        );
        t.clock.run(relay.receive("default", &q, &b, [3; 32]))
    };
    // "short" seals to 256 bytes of ciphertext: the core's AES, the port is not asked.
    assert!(send("short", 1).is_ok());
    // 1 KB of text seals to more than PORT_CIPHER_FROM_BYTES: the port's cipher, which fails.
    let long = "x".repeat(crate::wire::crypto::PORT_CIPHER_FROM_BYTES);
    assert!(matches!(send(&long, 2), Err(Error::Decryption)));
}

#[test]
fn queue_mode_enqueues_before_answering_and_the_consumer_delivers_signed() {
    let t = world(&[], true);
    let (q, b, from) = t.message(Sent::Safe);
    let answer = t.receive(&q, &b).unwrap();
    assert_eq!(answer.body, "success");
    assert_eq!(t.queue.len(), 1, "enqueued before the answer");
    // After the answer only the claim's settle is left: no delivery.
    t.clock.run(answer.background.unwrap());
    assert!(t.deliveries().is_empty());
    t.drain(100);
    let seen = t.deliveries();
    assert_eq!(seen.len(), 1);
    let event = event_of(&seen[0]);
    assert_eq!(event["from"], from.as_str());
    let id = seen[0].header("webhook-id").unwrap();
    assert_eq!(id, event["id"]);
    let ts: u64 = seen[0]
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let secret: WebhookSecret = SECRET.parse().unwrap();
    assert!(secret.verify(
        id,
        ts,
        seen[0].request.body.as_deref().unwrap(),
        seen[0].header("webhook-signature").unwrap()
    ));
}

#[test]
fn a_receiver_failing_three_times_gets_the_event_after_growing_delays() {
    let t = world(&[], true);
    let n = Rc::new(std::cell::Cell::new(0));
    let m = n.clone();
    t.receive_with(move |_| {
        m.set(m.get() + 1);
        Ok(FakeAnswer::status(if m.get() <= 3 { 503 } else { 200 }))
    });
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    t.drain(100);
    let seen = t.deliveries();
    assert_eq!(seen.len(), 4);
    let gaps: Vec<u64> = seen
        .windows(2)
        .map(|w| (w[1].at_ms - w[0].at_ms) / 1000)
        .collect();
    assert_eq!(gaps, [5, 15, 45]);
    assert!(seen
        .iter()
        .all(|s| s.header("webhook-id") == seen[0].header("webhook-id")));
    assert!(t.dead_letters().is_empty());
}

#[test]
fn retry_after_is_honoured() {
    let t = world(&[], true);
    let n = Rc::new(std::cell::Cell::new(0));
    let m = n.clone();
    t.receive_with(move |_| {
        m.set(m.get() + 1);
        Ok(if m.get() == 1 {
            FakeAnswer::status(429).with_header("retry-after", "120")
        } else {
            FakeAnswer::status(200)
        })
    });
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    t.drain(100);
    let seen = t.deliveries();
    assert_eq!((seen[1].at_ms - seen[0].at_ms) / 1000, 120);
}

#[test]
fn a_refusal_is_a_dead_letter_at_once_and_replay_delivers_it_once_back() {
    let t = world(&[], true);
    t.receive_with(|_| Ok(FakeAnswer::status(410)));
    let (q, b, from) = t.message(Sent::Safe);
    t.receive_all(&q, &b).unwrap();
    t.drain(100);
    assert_eq!(t.deliveries().len(), 1, "410 is not retried");
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["last_status"], 410);
    assert_eq!(letters[0]["attempts"], 1);
    assert_eq!(letters[0]["target"], "http://hooks.test/a");
    assert!(letters[0]["first_attempt_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // The receiver is back: replay through the queue, delivered, removed.
    t.receive_with(|_| Ok(FakeAnswer::status(200)));
    let replay = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery::default()))
        .unwrap();
    assert_eq!(replay["queued"], 1);
    assert_eq!(replay["replayed"][0]["result"], "queued");
    t.drain(100);
    let seen = t.deliveries();
    assert_eq!(seen.len(), 2);
    assert_eq!(event_of(&seen[1])["from"], from.as_str());
    assert_eq!(
        seen[1].header("webhook-id"),
        seen[0].header("webhook-id"),
        "same id on replay"
    );
    assert!(t.dead_letters().is_empty());
}

#[test]
fn a_receiver_that_never_recovers_ends_in_dead_letters_after_max_attempts() {
    let t = world(
        &[
            ("FORWARD_RETRY_DELAYS", "1s 2s"),
            ("FORWARD_MAX_ATTEMPTS", "4"),
        ],
        true,
    );
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    for _ in 0..3 {
        let (q, b, _) = t.message(Sent::Plain);
        t.receive_all(&q, &b).unwrap();
    }
    t.drain(100);
    assert_eq!(t.deliveries().len(), 12);
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 3);
    assert!(letters
        .iter()
        .all(|l| l["attempts"] == 4 && l["last_status"] == 500));
    assert!(
        t.queue.dead.borrow().is_empty(),
        "the relay gave up before the queue did"
    );
}

#[test]
fn stop_a_receiver_send_100_start_it_again_all_arrive_once_and_nothing_is_dead() {
    let t = world(&[], true);
    let up = Rc::new(std::cell::Cell::new(false));
    let u = up.clone();
    t.receive_with(move |_| Ok(FakeAnswer::status(if u.get() { 200 } else { 502 })));
    for _ in 0..100 {
        let (q, b, _) = t.message(Sent::Safe);
        assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
    }
    // Down for an hour: retries keep failing.
    let until = t.clock.now_ms() + 3_600_000;
    while t.clock.now_ms() < until {
        let Some((m, verdict)) = t.step() else {
            break;
        };
        match verdict {
            Verdict::Ack => panic!("acknowledged while down"),
            Verdict::Retry { delay_secs } => t.queue.retry(m, delay_secs),
        }
    }
    up.set(true);
    t.drain(100);
    let mut delivered: Vec<String> = t
        .deliveries()
        .iter()
        .rev()
        .take(100)
        .map(|s| s.header("webhook-id").unwrap().to_owned())
        .collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 100, "every event once with a 2xx");
    assert!(t.dead_letters().is_empty());
}

#[test]
fn enqueue_failure_is_503_with_no_mark_and_the_retry_is_delivered() {
    let t = world(&[], true);
    let (q, b, from) = t.message(Sent::Safe);
    t.queue.fail_next.set(1);
    let err = t.receive(&q, &b).err().unwrap();
    assert_eq!(err.status(), 503);
    assert_eq!(err.code(), "queue_unavailable");
    assert_eq!(
        t.coordinator.marks(),
        0,
        "no mark: WeChat's retry is not a duplicate"
    );
    // WeChat retries the same callback (new nonce, same message).
    let answer = t.receive(&q, &b).unwrap();
    assert_eq!(answer.body, "success");
    t.drain(100);
    assert_eq!(t.deliveries().len(), 1);
    assert_eq!(event_of(&t.deliveries()[0])["from"], from.as_str());
}

#[test]
fn duplicates_are_answered_and_not_delivered_again() {
    let t = world(&[], true);
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    let again = t.receive(&q, &b).unwrap();
    assert_eq!(again.body, "success");
    assert!(again.background.is_none());
    assert_eq!(t.queue.len(), 1);
    // An unreachable account object means "not seen": a duplicate is better than a lost
    // event.
    t.coordinator.unreachable.set(true);
    t.receive_all(&q, &b).unwrap();
    assert_eq!(t.queue.len(), 2);
    assert!(testing::take_logs()
        .iter()
        .any(|l| l.contains("did not answer")));
}

#[test]
fn an_event_too_large_for_a_queue_message_is_kept_and_queued_by_reference() {
    let t = world(
        &[("FORWARD_URLS", "http://hooks.test/a http://hooks.test/b")],
        true,
    );
    // 180 KB of event: larger than a queue message.
    let big = "长".repeat(60_000);
    let xml = text_message("o_big", &big, 1, NOW);
    let (q, b) = callback(TOKEN, KEY, APP_ID, &xml, Sent::Plain, NOW, "1");
    // The receivers are down for 40 minutes: longer than any inline schedule.
    let back_at = (NOW + 2_400) * 1000;
    let clock = t.clock.clone();
    t.receive_with(move |_| {
        Ok(FakeAnswer::status(if clock.now_ms() < back_at {
            503
        } else {
            200
        }))
    });
    t.receive_all(&q, &b).unwrap();
    let sent = t.queue.sent.borrow().clone();
    assert_eq!(sent.len(), 2, "one job per target, in one batch");
    assert!(
        sent.iter().all(|(text, _)| text.len() < 1_000),
        "jobs carry a reference"
    );
    let event_id = Job::parse(&sent[0].0).unwrap().event_id;
    assert!(t.store.peek(&jobs::body_key(&event_id)).is_some());
    t.drain(100);
    let ok: Vec<_> = t
        .deliveries()
        .into_iter()
        .filter(|s| s.at_ms >= back_at)
        .collect();
    assert_eq!(ok.len(), 2, "each target once after the outage");
    for s in &ok {
        assert_eq!(event_of(s)["data"]["content"], big.as_str());
    }
    assert!(t.dead_letters().is_empty());
}

// --- direct mode and no queue -----------------------------------------------------------------

#[test]
fn direct_mode_attempts_after_the_answer_and_enqueues_only_failures() {
    let t = world(&[("FORWARD_MODE", "direct")], true);
    let (q, b, _) = t.message(Sent::Plain);
    let answer = t.receive(&q, &b).unwrap();
    assert!(t.deliveries().is_empty(), "nothing before the answer");
    t.clock.run(answer.background.unwrap());
    assert_eq!(t.deliveries().len(), 1);
    assert!(
        t.queue.sent.borrow().is_empty(),
        "a delivered event spends no queue operation"
    );

    t.receive_with(|_| Ok(FakeAnswer::status(503)));
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    let sent = t.queue.sent.borrow().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, 5, "the schedule's first delay");
    let job = Job::parse(&sent[0].0).unwrap();
    assert_eq!((job.attempts_before, job.last_status), (1, Some(503)));
    t.receive_with(|_| Ok(FakeAnswer::status(200)));
    t.drain(100);
    assert_eq!(t.deliveries().len(), 3);
}

#[test]
fn direct_mode_stores_a_dead_letter_when_the_retry_cannot_be_enqueued() {
    let t = world(&[("FORWARD_MODE", "direct")], true);
    t.receive_with(|_| Err(FetchError::Network("refused".into())));
    t.queue.fail_next.set(1);
    let (q, b, _) = t.message(Sent::Plain);
    assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("refused"));
}

#[test]
fn without_a_queue_four_attempts_inline_then_a_dead_letter_that_replay_delivers() {
    let t = world(&[], false);
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    let (q, b, _) = t.message(Sent::Plain);
    assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
    assert_eq!(t.deliveries().len(), 4);
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["attempts"], 4);
    t.receive_with(|_| Ok(FakeAnswer::status(200)));
    let id = letters[0]["id"].as_str().unwrap().to_owned();
    let replay = t
        .clock
        .run(t.relay.replay(&DeadLetterQuery {
            id: Some(&id),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(replay["delivered"], 1);
    assert_eq!(t.deliveries().len(), 5);
    assert!(t.dead_letters().is_empty());
    assert_eq!(
        t.clock
            .run(t.relay.replay(&DeadLetterQuery {
                id: Some(&id),
                ..Default::default()
            }))
            .unwrap_err(),
        Error::NotFound
    );
    assert_eq!(
        t.clock
            .run(t.relay.replay(&DeadLetterQuery {
                id: Some("../x"),
                ..Default::default()
            }))
            .unwrap_err(),
        Error::MalformedParameter("id")
    );
}

// --- consumers --------------------------------------------------------------------------------

#[test]
fn the_dead_letter_queue_consumer_tries_once_more_then_stores() {
    let t = world(&[], true);
    t.receive_with(|_| Ok(FakeAnswer::status(503)));
    let job = Job::new(
        "evt_0123456789abcdef0123456789abcdef",
        "default",
        &Destination::Url("http://hooks.test/a".into()),
        b"{}",
    );
    assert_eq!(
        t.clock
            .run(t.relay.consume_dead(&job.to_text(), 1, NOW * 1000)),
        Verdict::Ack
    );
    let letters = t.dead_letters();
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("retries ran out"));
    t.receive_with(|_| Ok(FakeAnswer::status(200)));
    let job2 = Job::new(
        "evt_1123456789abcdef0123456789abcdef",
        "default",
        &Destination::Url("http://hooks.test/a".into()),
        b"{}",
    );
    assert_eq!(
        t.clock
            .run(t.relay.consume_dead(&job2.to_text(), 1, NOW * 1000)),
        Verdict::Ack
    );
    assert_eq!(t.dead_letters().len(), 1);
    // Garbage is dropped, not retried forever.
    assert_eq!(t.clock.run(t.relay.consume("{oops", 1, 0)), Verdict::Ack);
    assert_eq!(
        t.clock.run(t.relay.consume_dead("null", 1, 0)),
        Verdict::Ack
    );
}

#[test]
fn a_dead_letter_that_cannot_be_stored_is_retried_not_dropped() {
    let t = world(&[("FORWARD_MAX_ATTEMPTS", "1")], true);
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    t.store.fail_writes.set(true);
    let job = Job::new(
        "evt_0123456789abcdef0123456789abcdef",
        "default",
        &Destination::Url("http://hooks.test/a".into()),
        b"{}",
    );
    assert!(matches!(
        t.clock.run(t.relay.consume(&job.to_text(), 1, 0)),
        Verdict::Retry { .. }
    ));
}

// --- routing ----------------------------------------------------------------------------------

#[test]
fn routes_choose_targets_and_unrouted_events_go_nowhere() {
    let t = world(
        &[
            ("FORWARD_URLS", ""),
            (
                "FORWARD_ROUTES",
                r#"{"text": ["http://hooks.test/text"], "event.subscribe": ["http://hooks.test/subs"]}"#,
            ),
        ],
        true,
    );
    let (q, b, _) = t.message(Sent::Plain);
    t.receive_all(&q, &b).unwrap();
    let subscribe = format!("<xml><ToUserName>gh</ToUserName><FromUserName>o_s</FromUserName><CreateTime>{NOW}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>");
    let (q, b) = callback(TOKEN, KEY, APP_ID, &subscribe, Sent::Plain, NOW, "2");
    t.receive_all(&q, &b).unwrap();
    let click = format!("<xml><ToUserName>gh</ToUserName><FromUserName>o_c</FromUserName><CreateTime>{NOW}</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey></xml>");
    let (q, b) = callback(TOKEN, KEY, APP_ID, &click, Sent::Plain, NOW, "3");
    testing::take_logs();
    assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
    assert!(testing::take_logs()
        .iter()
        .any(|l| l.contains("matches no route")));
    t.drain(100);
    let paths: Vec<String> = t.deliveries().iter().map(Seen::path).collect();
    assert_eq!(paths, ["/text", "/subs"]);
}

#[test]
fn a_bad_route_document_is_a_500_naming_it_and_nothing_is_handed_over() {
    let t = world(&[("FORWARD_ROUTES", r#"{"text": ["service:NOPE"]}"#)], true);
    let (q, b, _) = t.message(Sent::Plain);
    let err = t.receive(&q, &b).err().unwrap();
    assert_eq!(err.status(), 500);
    assert!(err.to_string().contains("FORWARD_ROUTES"));
    assert!(t.queue.sent.borrow().is_empty());
    assert_eq!(t.coordinator.claims(), 0, "refused before the claim");
}

// --- passive replies --------------------------------------------------------------------------

fn reply_world(extra: &[(&str, &str)]) -> T {
    let mut pairs = vec![("REPLY_URL", "http://replies.test/reply")];
    pairs.extend_from_slice(extra);
    world(&pairs, true)
}

fn answer_replies(t: &T, answer: serde_json::Value) {
    let body = answer.to_string();
    t.receive_with(move |seen| {
        Ok(if seen.path() == "/reply" {
            FakeAnswer::json(serde_json::from_str(&body).unwrap())
        } else {
            FakeAnswer::status(200)
        })
    });
}

/// Opens a safe-mode reply envelope like WeChat.
fn open_envelope(body: &str) -> crate::wire::xml::Element<'static> {
    testing::open_reply(body, TOKEN, KEY, APP_ID)
}

#[test]
fn every_reply_type_in_plaintext_and_safe_mode() {
    let cases = [
        (json!({"type": "text", "content": "a]]>b 你好 😀"}), "text"),
        (json!({"type": "image", "media_id": "M1"}), "image"),
        (json!({"type": "voice", "media_id": "M2"}), "voice"),
        (
            json!({"type": "video", "media_id": "M3", "title": "T", "description": "D"}),
            "video",
        ),
        (
            json!({"type": "music", "title": "T", "description": "D", "music_url": "u", "hq_music_url": "h", "thumb_media_id": "th"}),
            "music",
        ),
        (
            json!({"type": "news", "articles": [{"title": "A", "description": "d", "pic_url": "p", "url": "u"}, {"title": "B"}]}),
            "news",
        ),
        (
            json!({"type": "transfer_customer_service", "kf_account": "kf@x"}),
            "transfer_customer_service",
        ),
    ];
    for (answer, msg_type) in cases {
        for mode in [Sent::Plain, Sent::Safe] {
            let t = reply_world(&[]);
            answer_replies(&t, answer.clone());
            let (q, b, from) = t.message(mode);
            let body = t.receive_all(&q, &b).unwrap();
            let reply = match mode {
                Sent::Plain => crate::wire::xml::parse(body.as_bytes()).unwrap(),
                _ => open_envelope(&body),
            };
            assert_eq!(reply.child_text("MsgType"), Some(msg_type), "{answer}");
            assert_eq!(reply.child_text("ToUserName"), Some(from.as_str()));
            assert_eq!(reply.child_text("FromUserName"), Some("gh_test"));
            match msg_type {
                "text" => assert_eq!(reply.child_text("Content"), Some("a]]>b 你好 😀")),
                "image" => assert_eq!(
                    reply.child("Image").unwrap().child_text("MediaId"),
                    Some("M1")
                ),
                "news" => {
                    assert_eq!(reply.child_text("ArticleCount"), Some("2"));
                    let items = &reply.child("Articles").unwrap().children;
                    assert_eq!(items[1].child_text("Title"), Some("B"));
                }
                "transfer_customer_service" => {
                    assert_eq!(
                        reply.child("TransInfo").unwrap().child_text("KfAccount"),
                        Some("kf@x")
                    )
                }
                _ => {}
            }
            // The reply receiver got the event, signed; the event is still forwarded.
            let to_reply = t
                .deliveries()
                .into_iter()
                .find(|s| s.path() == "/reply")
                .unwrap();
            assert!(to_reply.header("webhook-signature").is_some());
            t.drain(100);
            assert!(t.deliveries().iter().any(|s| s.path() == "/a"));
        }
    }
}

#[test]
fn retries_get_the_same_reply() {
    let t = reply_world(&[]);
    answer_replies(&t, json!({"type": "text", "content": "once"}));
    let (q, b, _) = t.message(Sent::Safe);
    let first = open_envelope(&t.receive_all(&q, &b).unwrap());
    t.receive_with(|_| Ok(FakeAnswer::status(500)));
    let second = open_envelope(&t.receive_all(&q, &b).unwrap());
    assert_eq!(first.child_text("Content"), second.child_text("Content"));
    assert_eq!(
        t.deliveries()
            .iter()
            .filter(|s| s.path() == "/reply")
            .count(),
        1,
        "asked once"
    );
}

#[test]
fn no_reply_answers_success_and_still_forwards() {
    for answer in [
        FakeAnswer::status(204),
        FakeAnswer::status(500),
        FakeAnswer::status(200).with_body("not json"),
        FakeAnswer::json(json!({"type": "location"})),
    ] {
        let t = reply_world(&[]);
        let a = answer.clone();
        t.receive_with(move |seen| {
            Ok(if seen.path() == "/reply" {
                a.clone()
            } else {
                FakeAnswer::status(200)
            })
        });
        let (q, b, _) = t.message(Sent::Safe);
        assert_eq!(t.receive_all(&q, &b).unwrap(), "success");
        t.drain(100);
        assert!(t.deliveries().iter().any(|s| s.path() == "/a"));
    }
}

#[test]
fn a_slow_reply_answers_success_in_time_then_goes_through_the_customer_service_api() {
    let t = reply_world(&[("REPLY_TIMEOUT_MS", "3000")]);
    answer_replies(&t, json!({"type": "text", "content": "sorry I'm late"}));
    t.http.delay_ms.set(4_000);
    let (q, b, from) = t.message(Sent::Safe);
    let started = t.clock.now_ms();
    let answer = t.receive(&q, &b).unwrap();
    assert_eq!(answer.body, "success");
    assert!(
        t.clock.now_ms() - started <= 3_100,
        "answered within the reply timeout"
    );
    t.http.delay_ms.set(0);
    t.clock.run(answer.background.unwrap());
    let sent = t
        .http
        .requests()
        .into_iter()
        .find(|s| s.path() == "/cgi-bin/message/custom/send")
        .unwrap();
    assert_eq!(
        sent.json(),
        json!({"touser": from, "msgtype": "text", "text": {"content": "sorry I'm late"}})
    );
    assert_eq!(sent.query("access_token"), t.wechat.current());
    t.drain(100);
    assert!(
        t.deliveries().iter().any(|s| s.path() == "/a"),
        "still forwarded"
    );
}

#[test]
fn a_late_reply_without_an_app_secret_is_logged_not_sent() {
    let t = reply_world(&[("WECHAT_APP_SECRET", "")]);
    answer_replies(&t, json!({"type": "text", "content": "late"}));
    t.http.delay_ms.set(3_500);
    let (q, b, _) = t.message(Sent::Plain);
    let answer = t.receive(&q, &b).unwrap();
    testing::take_logs();
    t.clock.run(answer.background.unwrap());
    assert!(testing::take_logs()
        .iter()
        .any(|l| l.contains("without an AppSecret")));
    assert!(t
        .http
        .requests()
        .iter()
        .all(|s| s.path() != "/cgi-bin/message/custom/send"));
}

#[test]
fn json_accounts_get_json_replies() {
    let t = reply_world(&[]);
    answer_replies(&t, json!({"type": "transfer_customer_service"}));
    let msg = json!({"ToUserName": "gh_97417a04a28d", "FromUserName": "o_mp", "CreateTime": NOW, "MsgType": "text", "Content": "hi", "MsgId": 42}).to_string();
    let (q, b) = callback(TOKEN, KEY, APP_ID, &msg, Sent::Safe, NOW, "5");
    let answer = t.receive(&q, &b).unwrap();
    assert_eq!(answer.content_type, "application/json");
    let env: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let key = AesKey::from_encoding_aes_key(KEY).unwrap();
    let opened =
        crate::wire::crypto::decrypt(&key, env["Encrypt"].as_str().unwrap(), APP_ID).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&opened.message).unwrap();
    assert_eq!(reply["MsgType"], "transfer_customer_service");
    assert_eq!(reply["ToUserName"], "o_mp");
}

// --- accounts ---------------------------------------------------------------------------------

const WECOM_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn wecom_world(extra: &[(&str, &str)]) -> T {
    let mut pairs = vec![
        (
            "WECHAT_ACCOUNTS",
            r#"{"staff": {"kind": "wecom", "corp_id": "ww_corp", "agent_id": "1000002"}}"#,
        ),
        ("WECHAT_STAFF_TOKEN", "stafftoken"),
        ("WECHAT_STAFF_ENCODING_AES_KEY", WECOM_KEY),
        ("WECHAT_STAFF_APP_SECRET", "staff-secret"),
        ("WECOM_API_BASE", "http://wechat.test"),
        ("REPLY_URL", "http://replies.test/reply"),
    ];
    pairs.extend_from_slice(extra);
    world(&pairs, true)
}

fn wecom_message(t: &T) -> (Query, Vec<u8>) {
    let xml = format!("<xml><ToUserName><![CDATA[ww_corp]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>{NOW}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>99</MsgId><AgentID>1000002</AgentID></xml>");
    let _ = t;
    callback(
        "stafftoken",
        WECOM_KEY,
        "ww_corp",
        &xml,
        Sent::Safe,
        NOW,
        "77",
    )
}

#[test]
fn a_wecom_app_gets_replies_sealed_for_its_corp_and_events_with_its_account() {
    let t = wecom_world(&[]);
    answer_replies(&t, json!({"type": "text", "content": "收到"}));
    let (q, b) = wecom_message(&t);
    let answer = t
        .clock
        .run(t.relay.receive("staff", &q, &b, [5; 32]))
        .unwrap();
    let reply = testing::open_reply(&answer.body, "stafftoken", WECOM_KEY, "ww_corp");
    assert_eq!(reply.child_text("Content"), Some("收到"));
    assert_eq!(reply.child_text("ToUserName"), Some("zhangsan"));
    t.drain(100);
    let event = event_of(
        &t.deliveries()
            .into_iter()
            .find(|s| s.path() == "/a")
            .unwrap(),
    );
    assert_eq!(
        (event["account"].as_str(), event["app_id"].as_str()),
        (Some("staff"), Some("ww_corp"))
    );
    assert_eq!(event["data"]["agent_id"], 1000002);
}

#[test]
fn a_late_wecom_reply_goes_through_message_send_with_the_agent() {
    let t = wecom_world(&[]);
    answer_replies(&t, json!({"type": "text", "content": "late"}));
    t.http.delay_ms.set(3_500);
    let (q, b) = wecom_message(&t);
    let answer = t
        .clock
        .run(t.relay.receive("staff", &q, &b, [5; 32]))
        .unwrap();
    assert_eq!(answer.body, "success");
    t.http.delay_ms.set(0);
    t.clock.run(answer.background.unwrap());
    let sent = t
        .http
        .requests()
        .into_iter()
        .find(|s| s.path() == "/cgi-bin/message/send")
        .unwrap();
    assert_eq!(
        sent.json(),
        json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1000002, "text": {"content": "late"}})
    );
    assert_eq!(sent.query("access_token"), t.wechat.token_of("ww_corp"));
}

#[test]
fn a_json_mini_program_replies_in_json() {
    let t = reply_world(&[
        (
            "WECHAT_ACCOUNTS",
            r#"{"mini": {"kind": "miniprogram", "app_id": "wxmini", "format": "json", "mode": "plain"}}"#,
        ),
        ("WECHAT_MINI_TOKEN", "minitoken"),
    ]);
    answer_replies(&t, json!({"type": "transfer_customer_service"}));
    let msg = json!({"ToUserName": "gh_mini", "FromUserName": "o_mp", "CreateTime": NOW, "MsgType": "text", "Content": "客服", "MsgId": 1}).to_string();
    let (q, b) = callback("minitoken", KEY, "wxmini", &msg, Sent::Plain, NOW, "9");
    let answer = t
        .clock
        .run(t.relay.receive("mini", &q, &b, [5; 32]))
        .unwrap();
    assert_eq!(answer.content_type, "application/json");
    let reply: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        (reply["MsgType"].as_str(), reply["ToUserName"].as_str()),
        (Some("transfer_customer_service"), Some("o_mp"))
    );
}

#[path = "integrity_tests.rs"]
mod integrity;

// --- the token routes -------------------------------------------------------------------------

#[test]
fn the_token_routes_answer_for_the_account_or_refuse_a_merchant_of_a_non_platform() {
    let t = world(&[], true);
    let token = t.clock.run(t.relay.token("default", None)).unwrap();
    assert_eq!(
        token["access_token"].as_str(),
        t.wechat.token_of(APP_ID).as_deref()
    );
    assert!(token["expires_at"].as_u64().unwrap() > NOW);
    let refreshed = t
        .clock
        .run(t.relay.refresh_token("default", None, b""))
        .unwrap();
    assert_eq!(refreshed["refreshed"], true);
    assert_ne!(refreshed["access_token"], token["access_token"]);
    // At most one forced refresh a minute: the stored token comes back.
    let again = t
        .clock
        .run(t.relay.refresh_token("default", None, b""))
        .unwrap();
    assert_eq!(
        (&again["refreshed"], &again["access_token"]),
        (&json!(false), &refreshed["access_token"])
    );
    // A merchant exists only under a platform account.
    assert_eq!(
        t.clock
            .run(t.relay.token("default", Some("wx1111111111111111")))
            .unwrap_err()
            .code(),
        "not_available"
    );
    assert_eq!(
        t.clock.run(t.relay.token("nobody", None)).unwrap_err(),
        Error::NotFound
    );
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod claims;

#[cfg(test)]
#[path = "object_tests.rs"]
mod object;
