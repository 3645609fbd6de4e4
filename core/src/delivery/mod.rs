//! Delivering an event to a webhook target: the request (Standard Webhooks headers), what an
//! attempt's outcome means, when to try again, and what a log may show of a target.
//!
//! - 2xx: delivered. 408, 429, 5xx, a network failure or a timeout: worth another attempt,
//!   after at least the receiver's `Retry-After`. Any other status (3xx, 4xx): refused, final.
//! - Every attempt carries the same `webhook-id` (the event id), so receivers can drop repeats.

pub mod dead_letters;
pub mod jobs;
pub mod targets;
pub mod webhook;

use futures_util::StreamExt;

use crate::ports::{Clock, Destination, FetchError, Http, HttpAnswer, HttpRequest};
use crate::time;
use webhook::WebhookSecret;

/// Attempts in flight at once per invocation: the runtime opens 6 connections at a time, and
/// an attempt's time limit must start when its request can start, not while it waits.
pub const MAX_PARALLEL_ATTEMPTS: usize = 6;
/// One attempt's limit: a receiver slower than this is abandoned and tried again.
pub const ATTEMPT_TIMEOUT_MS: u64 = 5_000;
/// The pauses between attempts while delivering inline (inside `wait_until`, which allows 30 s
/// after the answer): four attempts and these pauses stay under it.
pub const INLINE_BACKOFF_MS: [u64; 3] = [500, 1_500, 4_500];
/// Everything inline (attempts and pauses) ends this long after the first attempt, so that the
/// dead letter of what failed is written well inside `wait_until`'s 30 s.
pub const INLINE_BUDGET_MS: u64 = 24_000;
/// The longest `Retry-After` honoured inline; a receiver that asks for more is given up on
/// inline (and left to the retry schedule, where there is one).
pub const INLINE_MAX_PAUSE_MS: u64 = 10_000;

pub const USER_AGENT: &str = concat!("wechat-relay/", env!("CARGO_PKG_VERSION"));

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt; `status` is absent when no answer came.
    Retry {
        status: Option<u16>,
        reason: String,
        /// The receiver's `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The receiver refused it: another attempt will not help.
    Refused {
        status: u16,
    },
}

impl Outcome {
    /// The outcome of an answer with this status (and `Retry-After` header, if any).
    pub fn of_status(status: u16, retry_after: Option<&str>, now_secs: u64) -> Outcome {
        match status {
            200..=299 => Outcome::Delivered,
            408 | 429 | 500..=599 => Outcome::Retry {
                status: Some(status),
                reason: format!("HTTP {status}"),
                retry_after: retry_after.and_then(|v| parse_retry_after(v, now_secs)),
            },
            _ => Outcome::Refused { status },
        }
    }

    /// The outcome of a request that got no answer.
    pub fn of_failure(failure: &FetchError) -> Outcome {
        Outcome::Retry {
            status: None,
            reason: failure.to_string(),
            retry_after: None,
        }
    }

    /// The status, for records and logs.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered => None,
            Outcome::Retry { status, .. } => *status,
            Outcome::Refused { status } => Some(*status),
        }
    }

    /// Why it failed, in words.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".to_owned(),
            Outcome::Retry { reason, .. } => reason.clone(),
            Outcome::Refused { status } => format!("HTTP {status}: refused, not retried"),
        }
    }
}

/// `Retry-After` as seconds from now: delta-seconds or an HTTP date (a date in the past is 0).
pub fn parse_retry_after(value: &str, now_secs: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    time::parse_http_date(value).map(|at| at.saturating_sub(now_secs))
}

/// A webhook target for logs: scheme, host, port and path. User info, query and fragment are
/// dropped, since webhook URLs often carry tokens there.
pub fn redact(target: &Destination) -> String {
    match target {
        Destination::Url(url) => redact_url(url),
        Destination::Service { binding, .. } => format!("service:{binding}"),
    }
}

/// [`redact`] for a URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<unparseable url>".to_owned(),
    }
}

/// The POST of an event to a target, signed when there is a secret.
pub fn request(
    target: &Destination,
    event_id: &str,
    body: &[u8],
    secret: Option<&WebhookSecret>,
    now_secs: u64,
) -> HttpRequest {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
    ];
    match secret {
        Some(secret) => headers.extend(webhook::headers(secret, event_id, now_secs, body)),
        None => headers.push(("webhook-id", event_id.to_owned())),
    }
    HttpRequest {
        method: "POST",
        destination: target.clone(),
        headers,
        body: Some(body.to_vec()),
    }
}

/// Makes one attempt and says what it came to.
pub async fn attempt<C: Clock, H: Http>(
    clock: &C,
    http: &H,
    target: &Destination,
    event_id: &str,
    body: &[u8],
    secret: Option<&WebhookSecret>,
) -> Outcome {
    let request = request(target, event_id, body, secret, clock.now_secs());
    match http.send(&request, ATTEMPT_TIMEOUT_MS).await {
        Ok(answer) => Outcome::of_status(
            answer.status(),
            answer.header("retry-after").as_deref(),
            clock.now_secs(),
        ),
        Err(failure) => Outcome::of_failure(&failure),
    }
}

/// The pause before inline attempt `attempts + 1` after `outcome`, or `None` to stop.
pub fn inline_pause(attempts: u32, outcome: &Outcome) -> Option<u64> {
    let Outcome::Retry { retry_after, .. } = outcome else {
        return None;
    };
    let planned = *INLINE_BACKOFF_MS.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    match retry_after.map(|s| s.saturating_mul(1000)) {
        Some(asked) if asked > INLINE_MAX_PAUSE_MS => None,
        Some(asked) => Some(planned.max(asked)),
        None => Some(planned),
    }
}

/// An event to deliver to its targets.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub body: Vec<u8>,
    pub targets: Vec<Destination>,
    pub secret: Option<WebhookSecret>,
}

/// A target that did not take the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub target: Destination,
    pub attempts: u32,
    pub last: Outcome,
    pub first_attempt_ms: u64,
    pub last_attempt_ms: u64,
}

/// Delivers to every target independently, each with up to four attempts inside the inline
/// budget; returns the targets that did not take it (each logged).
pub async fn deliver_inline<C: Clock, H: Http>(
    clock: &C,
    http: &H,
    delivery: &Delivery,
) -> Vec<Failed> {
    let results: Vec<Option<Failed>> = futures_util::stream::iter(&delivery.targets)
        .map(|target| deliver_to(clock, http, delivery, target))
        .buffer_unordered(MAX_PARALLEL_ATTEMPTS)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

async fn deliver_to<C: Clock, H: Http>(
    clock: &C,
    http: &H,
    delivery: &Delivery,
    target: &Destination,
) -> Option<Failed> {
    let first_attempt_ms = clock.now_ms();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last_attempt_ms = clock.now_ms();
        let outcome = attempt(
            clock,
            http,
            target,
            &delivery.event_id,
            &delivery.body,
            delivery.secret.as_ref(),
        )
        .await;
        if outcome == Outcome::Delivered {
            return None;
        }
        if let Some(pause) = inline_pause(attempts, &outcome) {
            // Another attempt only if it can end inside the budget.
            let ends = clock
                .now_ms()
                .saturating_add(pause)
                .saturating_add(ATTEMPT_TIMEOUT_MS);
            if ends <= first_attempt_ms.saturating_add(INLINE_BUDGET_MS) {
                clock.sleep(pause).await;
                continue;
            }
        }
        let failed = Failed {
            target: target.clone(),
            attempts,
            last: outcome,
            first_attempt_ms,
            last_attempt_ms,
        };
        log_failed(&delivery.event_id, &failed);
        return Some(failed);
    }
}

/// One structured line for a delivery that failed for good, without secrets.
pub fn log_failed(event_id: &str, failed: &Failed) {
    let status = failed
        .last
        .status()
        .map(|s| s.to_string())
        .unwrap_or_else(|| failed.last.reason());
    log::error!(
        event_id = event_id,
        target = redact(&failed.target),
        status = status,
        attempts = failed.attempts.to_string();
        "forward failed"
    );
}

/// When an attempt was made, for records (RFC 3339).
pub fn at(unix_ms: u64) -> String {
    time::rfc3339_millis(unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, FakeAnswer, FakeClock, FakeHttp};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn what_statuses_mean() {
        assert_eq!(Outcome::of_status(200, None, NOW), Outcome::Delivered);
        assert_eq!(Outcome::of_status(204, None, NOW), Outcome::Delivered);
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(Outcome::of_status(s, None, NOW), Outcome::Retry { status: Some(x), .. } if x == s),
                "{s}"
            );
        }
        for s in [301, 400, 401, 404, 410, 413, 422] {
            assert_eq!(
                Outcome::of_status(s, None, NOW),
                Outcome::Refused { status: s },
                "{s}"
            );
        }
        assert!(matches!(
            Outcome::of_failure(&FetchError::Timeout),
            Outcome::Retry { status: None, ref reason, .. } if reason == "timeout"
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120", NOW), Some(120));
        assert_eq!(parse_retry_after(" 0 ", NOW), Some(0));
        let date = "Fri, 15 Jan 2027 08:00:00 GMT";
        let at = time::parse_http_date(date).unwrap();
        assert_eq!(parse_retry_after(date, at - 30), Some(30));
        assert_eq!(parse_retry_after(date, at + 30), Some(0));
        assert_eq!(parse_retry_after("soon", NOW), None);
        assert_eq!(parse_retry_after("-5", NOW), None);
        match Outcome::of_status(503, Some("7"), NOW) {
            Outcome::Retry { retry_after, .. } => assert_eq!(retry_after, Some(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inline_pauses_grow_and_honour_retry_after() {
        let retry = |after| Outcome::Retry {
            status: Some(503),
            reason: String::new(),
            retry_after: after,
        };
        assert_eq!(inline_pause(1, &retry(None)), Some(500));
        assert_eq!(inline_pause(2, &retry(None)), Some(1_500));
        assert_eq!(inline_pause(3, &retry(None)), Some(4_500));
        assert_eq!(inline_pause(4, &retry(None)), None);
        assert_eq!(inline_pause(1, &retry(Some(3))), Some(3_000));
        assert_eq!(inline_pause(3, &retry(Some(1))), Some(4_500));
        assert_eq!(
            inline_pause(1, &retry(Some(60))),
            None,
            "too long to wait inline"
        );
        assert_eq!(inline_pause(1, &Outcome::Refused { status: 410 }), None);
    }

    #[test]
    fn redaction_drops_credentials_query_and_fragment() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example.com:8443/wechat?token=sekrit#x"),
            "https://hooks.example.com:8443/wechat"
        );
        assert_eq!(redact_url("not a url"), "<unparseable url>");
        assert_eq!(
            redact(&Destination::Service {
                binding: "BACKEND".into(),
                path: "/x?k=v".into()
            }),
            "service:BACKEND"
        );
    }

    #[test]
    fn requests_are_signed_when_there_is_a_secret() {
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let target = Destination::Url("https://h.example/x".into());
        let r = request(&target, "evt_1", b"{}", Some(&secret), NOW);
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("webhook-id").as_deref(), Some("evt_1"));
        assert_eq!(header("webhook-timestamp"), Some(NOW.to_string()));
        assert!(secret.verify("evt_1", NOW, b"{}", &header("webhook-signature").unwrap()));
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        let unsigned = request(&target, "evt_1", b"{}", None, NOW);
        assert!(!unsigned
            .headers
            .iter()
            .any(|(k, _)| *k == "webhook-signature"));
        assert!(unsigned
            .headers
            .iter()
            .any(|(k, v)| *k == "webhook-id" && v == "evt_1"));
    }

    fn delivery(targets: &[&str]) -> Delivery {
        Delivery {
            event_id: "evt_abc".into(),
            body: br#"{"id":"evt_abc"}"#.to_vec(),
            targets: targets
                .iter()
                .map(|t| Destination::Url((*t).to_owned()))
                .collect(),
            secret: None,
        }
    }

    #[test]
    fn inline_retries_until_accepted_with_the_same_id() {
        let clock = FakeClock::at(NOW * 1000);
        let n = std::rc::Rc::new(std::cell::Cell::new(0));
        let m = n.clone();
        let http = FakeHttp::new(&clock, move |_| {
            m.set(m.get() + 1);
            Ok(FakeAnswer::status(if m.get() < 3 { 503 } else { 200 }))
        });
        let failed = clock.run(deliver_inline(
            &clock,
            &http,
            &delivery(&["http://h.test/a"]),
        ));
        assert!(failed.is_empty());
        let seen = http.requests();
        assert_eq!(seen.len(), 3);
        assert!(seen
            .iter()
            .all(|s| s.header("webhook-id") == Some("evt_abc")));
        assert_eq!(seen[1].at_ms - seen[0].at_ms, 500);
        assert_eq!(seen[2].at_ms - seen[1].at_ms, 1_500);
    }

    #[test]
    fn inline_gives_up_after_four_attempts_and_logs_one_line() {
        let clock = FakeClock::at(NOW * 1000);
        let http = FakeHttp::new(&clock, |_| Ok(FakeAnswer::status(500)));
        testing::take_logs();
        let failed = clock.run(deliver_inline(
            &clock,
            &http,
            &delivery(&["http://h.test/down?token=sekrit"]),
        ));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attempts, 4);
        assert_eq!(failed[0].last.status(), Some(500));
        assert_eq!(http.requests().len(), 4);
        let logs = testing::take_logs();
        let line = logs.iter().find(|l| l.contains("forward failed")).unwrap();
        assert!(
            line.contains("target=http://h.test/down ")
                || line.ends_with("target=http://h.test/down"),
            "{line}"
        );
        assert!(
            line.contains("attempts=4") && line.contains("status=500"),
            "{line}"
        );
        assert!(!logs.join("").contains("sekrit"));
    }

    #[test]
    fn inline_refusals_are_final_and_targets_independent() {
        let clock = FakeClock::at(NOW * 1000);
        let http = FakeHttp::new(&clock, |seen| {
            Ok(FakeAnswer::status(if seen.path() == "/gone" {
                410
            } else {
                200
            }))
        });
        let failed = clock.run(deliver_inline(
            &clock,
            &http,
            &delivery(&["http://h.test/gone", "http://h.test/ok"]),
        ));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last, Outcome::Refused { status: 410 });
        assert_eq!(failed[0].attempts, 1);
        assert_eq!(http.count("/gone"), 1);
        assert_eq!(http.count("/ok"), 1);
    }

    #[test]
    fn a_slow_receiver_is_abandoned_and_retried() {
        let clock = FakeClock::at(NOW * 1000);
        let http = FakeHttp::new(&clock, |_| Ok(FakeAnswer::status(200)));
        http.delay_ms.set(ATTEMPT_TIMEOUT_MS + 1_000);
        let failed = clock.run(deliver_inline(
            &clock,
            &http,
            &delivery(&["http://h.test/slow"]),
        ));
        assert_eq!(failed[0].last.reason(), "timeout");
        // Three attempts and their pauses fit in the budget; a fourth would not.
        assert_eq!(failed[0].attempts, 3);
        assert!(clock.now_ms() - NOW * 1000 <= INLINE_BUDGET_MS);
    }

    #[test]
    fn inline_delivery_keeps_six_attempts_in_flight_at_most() {
        let clock = FakeClock::at(NOW * 1000);
        let http = FakeHttp::new(&clock, |_| Ok(FakeAnswer::status(204)));
        http.delay_ms.set(1_000);
        let targets: Vec<String> = (0..10).map(|n| format!("http://h.test/{n}")).collect();
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let failed = clock.run(deliver_inline(&clock, &http, &delivery(&refs)));
        assert!(failed.is_empty());
        assert_eq!(http.requests().len(), 10);
        assert_eq!(http.max_in_flight.get(), MAX_PARALLEL_ATTEMPTS as u32);
    }
}
