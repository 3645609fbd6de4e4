//! Delivery jobs: one event for one target, as a queue message, and the retry schedule the queue
//! consumer follows.
//!
//! A job's text is JSON (`{"v": 1, "event_id", "account", "target", "body", ...}`); it comes back
//! from the queue and is parsed like any outside input. Fields it does not know are ignored, so
//! jobs of an older or newer version read during a deploy. The event's body travels in the job
//! (or, for an event too large for a queue message, in the store, the job carrying its key); the
//! webhook secret does not: the consumer signs each attempt with the current `FORWARD_SECRET`.
//!
//! The schedule: after attempt n fails with a retryable outcome, the next comes after
//! `FORWARD_RETRY_DELAYS[n - 1]` (the last delay repeating), or after the receiver's
//! `Retry-After` when that is longer (at most 12 hours, the queue's limit); after
//! `FORWARD_MAX_ATTEMPTS` attempts, at once for a refusal, or when the next attempt would fall
//! past `QUEUE_RETENTION`, the job becomes a dead letter.

use serde::{Deserialize, Serialize};

use crate::delivery::dead_letters::DeadLetter;
use crate::delivery::{Failed, Outcome};
use crate::ports::Destination;

/// The longest delay Cloudflare Queues accept (12 hours).
pub const MAX_DELAY_SECS: u32 = 43_200;

/// The job format's version.
pub const VERSION: u8 = 1;
/// Cloudflare Queues take messages up to 128 KB; a job must leave room for the queue's own.
pub const MAX_JOB_BYTES: usize = 120 * 1024;

/// The store key prefix of an event's body kept for its jobs.
pub const BODY_PREFIX: &str = "body:";
/// How long a kept body lives: past the longest queue retention (14 days).
pub const BODY_TTL_SECS: u64 = 15 * 86_400;

/// The store key of the kept body of `event_id`.
pub fn body_key(event_id: &str) -> String {
    format!("{BODY_PREFIX}{event_id}")
}

/// One event for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub v: u8,
    pub event_id: String,
    pub account: String,
    /// An `http(s)://` URL or `service:<BINDING>/path`.
    pub target: String,
    /// The event, as forwarded (empty when it is kept in the store, see `body_ref`).
    #[serde(default)]
    pub body: String,
    /// The store key of the event's body, for an event too large for a queue message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_ref: Option<String>,
    /// Attempts made before the job was enqueued (direct mode makes one).
    #[serde(default)]
    pub attempts_before: u32,
    /// Unix ms of the first attempt, if one was made before enqueueing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<u64>,
    /// The outcome of the attempt before enqueueing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The dead letter this job replays; it is removed once the job is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

/// Why a queue message is not a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError(pub String);

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Job {
    pub fn new(event_id: &str, account: &str, target: &Destination, body: &[u8]) -> Job {
        Job::to_target(event_id, account, target.to_string(), body)
    }

    /// A job for a target in its text form (as stored in a dead letter).
    pub fn to_target(event_id: &str, account: &str, target: String, body: &[u8]) -> Job {
        Job {
            v: VERSION,
            event_id: event_id.to_owned(),
            account: account.to_owned(),
            target,
            body: String::from_utf8_lossy(body).into_owned(),
            body_ref: None,
            attempts_before: 0,
            first_attempt_at: None,
            last_status: None,
            last_error: None,
            replay_of: None,
        }
    }

    /// The job as queue message text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the job fits in a queue message.
    pub fn fits(&self) -> bool {
        self.to_text().len() <= MAX_JOB_BYTES
    }

    /// Reads a queue message; anything that is not a well-formed job is an error.
    pub fn parse(text: &str) -> Result<Job, JobError> {
        if text.len() > MAX_JOB_BYTES {
            return Err(JobError(format!("larger than {MAX_JOB_BYTES} bytes")));
        }
        let job: Job = serde_json::from_str(text).map_err(|e| {
            let why: String = e.to_string().chars().take(120).collect();
            JobError(format!("not a delivery job ({why})"))
        })?;
        if job.v == 0 {
            return Err(JobError("job version 0".into()));
        }
        if !is_event_id(&job.event_id) {
            return Err(JobError("event_id is not an event id".into()));
        }
        if !crate::account::is_valid_name(&job.account) {
            return Err(JobError("account is not an account name".into()));
        }
        job.destination()?;
        if let Some(key) = &job.replay_of {
            if !crate::delivery::dead_letters::is_key(key) {
                return Err(JobError("replay_of is not a dead letter key".into()));
            }
        }
        if let Some(key) = &job.body_ref {
            if *key != body_key(&job.event_id) {
                return Err(JobError("body_ref is not this event's body".into()));
            }
        }
        Ok(job)
    }

    /// Where the job goes.
    pub fn destination(&self) -> Result<Destination, JobError> {
        crate::delivery::targets::parse_target(&self.target, &|_| true)
            .map_err(|p| JobError(format!("target {p}")))
    }
}

pub use crate::event::is_event_id;

/// A dead letter and a job are one delivery's two states: here, above both, where a job becomes
/// a dead letter and a dead letter a job again.
impl DeadLetter {
    /// The dead letter of a job whose last attempt came to `failed`.
    pub fn from_job(job: &Job, failed: &Failed) -> DeadLetter {
        DeadLetter {
            id: job.event_id.clone(),
            account: job.account.clone(),
            target: job.target.clone(),
            body: job.body.clone(),
            attempts: failed.attempts,
            last_status: failed.last.status(),
            last_error: failed.last.reason(),
            first_attempt_at: failed.first_attempt_ms,
            last_attempt_at: failed.last_attempt_ms,
            unreadable: false,
        }
    }

    /// A fresh job that replays this dead letter (a new round of attempts).
    pub fn to_job(&self) -> Job {
        let mut job = Job::to_target(
            &self.id,
            &self.account,
            self.target.clone(),
            self.body.as_bytes(),
        );
        job.replay_of = Some(self.key());
        job
    }
}

/// What to do with a job after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered: acknowledge.
    Done,
    /// Try again after this many seconds.
    Retry { delay_secs: u32 },
    /// Refused, or out of attempts: store a dead letter and acknowledge.
    DeadLetter,
    /// Worth another attempt, but it would come after the queue deletes the message: store a
    /// dead letter now instead.
    PastRetention { delay_secs: u32 },
}

/// The delay before the attempt that follows attempt `attempts` (1-based).
pub fn delay_after(attempts: u32, delays: &[u32]) -> u32 {
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    delays
        .get(index)
        .or_else(|| delays.last())
        .copied()
        .unwrap_or(0)
}

/// The retry schedule: `FORWARD_MAX_ATTEMPTS` attempts, `FORWARD_RETRY_DELAYS` between them,
/// all inside `QUEUE_RETENTION` (a queue deletes a message older than that, without a trace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub max_attempts: u32,
    pub delays: Vec<u32>,
    pub retention_secs: u64,
}

impl Schedule {
    /// How long before the queue's retention runs out the last attempt must be due: room for
    /// a backlog in the consumer and the dead letter's write.
    pub const MARGIN_SECS: u64 = 900;

    /// The sum of the delays between the first and the last attempt.
    pub fn span_secs(&self) -> u64 {
        (1..self.max_attempts)
            .map(|n| u64::from(delay_after(n, &self.delays)))
            .sum()
    }

    /// The latest time (Unix ms) an attempt of a job first tried (or enqueued) at `first_ms`
    /// may be scheduled for.
    pub fn deadline_ms(&self, first_ms: u64) -> u64 {
        let usable = self.retention_secs.saturating_sub(Self::MARGIN_SECS);
        first_ms.saturating_add(usable.saturating_mul(1000))
    }

    /// The decision after attempt number `attempts` (counting every attempt the event has had
    /// for this target) came to `outcome` at `now_ms`, for a job whose queue message (or first
    /// attempt, whichever was earlier) dates from `first_ms`.
    pub fn next(&self, outcome: &Outcome, attempts: u32, first_ms: u64, now_ms: u64) -> Next {
        match outcome {
            Outcome::Delivered => Next::Done,
            Outcome::Refused { .. } => Next::DeadLetter,
            Outcome::Retry { .. } if attempts >= self.max_attempts => Next::DeadLetter,
            Outcome::Retry { retry_after, .. } => {
                let planned = delay_after(attempts, &self.delays);
                let asked = retry_after
                    .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
                    .unwrap_or(0);
                let delay_secs = planned.max(asked).min(MAX_DELAY_SECS);
                self.retry_or_dead(delay_secs, first_ms, now_ms)
            }
        }
    }

    /// A retry after `delay_secs`, unless it would fall past the retention.
    pub fn retry_or_dead(&self, delay_secs: u32, first_ms: u64, now_ms: u64) -> Next {
        let due = now_ms.saturating_add(u64::from(delay_secs).saturating_mul(1000));
        if due > self.deadline_ms(first_ms) {
            Next::PastRetention { delay_secs }
        } else {
            Next::Retry { delay_secs }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "evt_0123456789abcdef0123456789abcdef";

    fn job() -> Job {
        Job::new(
            ID,
            "default",
            &Destination::Url("https://h.example/x".into()),
            br#"{"id":"x"}"#,
        )
    }

    #[test]
    fn round_trip() {
        let mut j = job();
        j.attempts_before = 1;
        j.first_attempt_at = Some(5);
        j.last_status = Some(503);
        j.replay_of = Some(format!("dead:{ID}:0011aabb"));
        assert_eq!(Job::parse(&j.to_text()), Ok(j.clone()));
        let service = Job::new(
            ID,
            "shop",
            &Destination::Service {
                binding: "B".into(),
                path: "/in".into(),
            },
            b"{}",
        );
        assert_eq!(
            Job::parse(&service.to_text())
                .unwrap()
                .destination()
                .unwrap(),
            Destination::Service {
                binding: "B".into(),
                path: "/in".into()
            }
        );
        assert!(job().fits());
        let big = Job::new(
            ID,
            "default",
            &Destination::Url("https://h.example/".into()),
            &vec![b'a'; MAX_JOB_BYTES],
        );
        assert!(!big.fits());
    }

    #[test]
    fn hostile_messages_are_errors() {
        let good = job().to_text();
        let cases = [
            String::new(),
            "null".into(),
            "[]".into(),
            "{}".into(),
            good.replace("\"v\":1", "\"v\":0"),
            good.replace(ID, "evt_XYZ"),
            good.replace(ID, "../../etc"),
            good.replace("\"default\"", "\"Not Valid\""),
            good.replace("https://h.example/x", "ftp://x"),
            good.replace("https://h.example/x", "service:"),
            good.replace(
                "\"v\":1",
                "\"v\":1,\"body_ref\":\"credential:default:access_token\"",
            ),
            good.replace(
                "\"v\":1",
                "\"v\":1,\"replay_of\":\"credential:default:access_token\"",
            ),
            "x".repeat(MAX_JOB_BYTES + 1),
        ];
        for text in cases {
            assert!(Job::parse(&text).is_err(), "{text:.200}");
        }
        // A job of a newer version, with fields this one does not know, is still delivered.
        let newer = good.replace("\"v\":1", "\"v\":2,\"priority\":\"high\",\"extra\":[1]");
        assert_eq!(Job::parse(&newer).unwrap().event_id, ID);
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..3_000 {
            let mut bytes = good.as_bytes().to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % bytes.len();
                bytes[i] = (state >> 40) as u8;
            }
            let _ = Job::parse(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn the_schedule_grows_then_repeats() {
        let d = [5, 15, 45, 120, 300, 900];
        let delays: Vec<u32> = (1..=9).map(|n| delay_after(n, &d)).collect();
        assert_eq!(delays, [5, 15, 45, 120, 300, 900, 900, 900, 900]);
        assert_eq!(delay_after(0, &d), 5);
        assert_eq!(delay_after(3, &[]), 0);
        // The default schedule's last attempt stays inside a day.
        let total: u64 = (1..crate::config::DEFAULT_MAX_ATTEMPTS)
            .map(|n| u64::from(delay_after(n, &d)))
            .sum();
        assert!(total < 23 * 3600, "{total}");
        // A receiver back after 20 s has its event within two minutes.
        assert!(delay_after(1, &d) + delay_after(2, &d) + delay_after(3, &d) < 120);
    }

    fn schedule(max: u32, delays: &[u32]) -> Schedule {
        Schedule {
            max_attempts: max,
            delays: delays.to_vec(),
            retention_secs: 86_400,
        }
    }

    #[test]
    fn decisions() {
        let s = schedule(5, &[5, 15]);
        let next = |o: &Outcome, n| s.next(o, n, 0, 0);
        let retry = |after| Outcome::Retry {
            status: Some(503),
            reason: String::new(),
            retry_after: after,
        };
        assert_eq!(next(&Outcome::Delivered, 3), Next::Done);
        assert_eq!(next(&Outcome::Refused { status: 410 }, 1), Next::DeadLetter);
        assert_eq!(next(&retry(None), 1), Next::Retry { delay_secs: 5 });
        assert_eq!(next(&retry(None), 4), Next::Retry { delay_secs: 15 });
        assert_eq!(next(&retry(None), 5), Next::DeadLetter);
        assert_eq!(next(&retry(Some(60)), 1), Next::Retry { delay_secs: 60 });
        assert_eq!(next(&retry(Some(1)), 2), Next::Retry { delay_secs: 15 });
        assert_eq!(
            next(&retry(Some(10_000_000)), 1),
            Next::Retry {
                delay_secs: MAX_DELAY_SECS
            }
        );
    }

    /// A `Retry-After: 90000` (or a schedule) that would reach past the queue's retention is a
    /// dead letter now, not a message the platform deletes.
    #[test]
    fn nothing_is_scheduled_past_the_retention() {
        let s = schedule(96, &[5, 15, 45, 120, 300, 900]);
        let hour = 3_600_000u64;
        let asked = |secs| Outcome::Retry {
            status: Some(503),
            reason: "HTTP 503".into(),
            retry_after: Some(secs),
        };
        // 12 h (the queue's longest delay) from the first hour: fine; from hour 12: too late.
        assert_eq!(
            s.next(&asked(90_000), 1, 0, hour),
            Next::Retry {
                delay_secs: MAX_DELAY_SECS
            }
        );
        assert_eq!(
            s.next(&asked(90_000), 2, 0, 12 * hour),
            Next::PastRetention {
                delay_secs: MAX_DELAY_SECS
            }
        );
        // The schedule's own 15 minutes, late in the day.
        let plain = asked(0);
        assert_eq!(
            s.next(&plain, 50, 0, 23 * hour + 40 * 60_000),
            Next::PastRetention { delay_secs: 900 }
        );
        assert_eq!(
            s.next(&plain, 50, 0, 22 * hour),
            Next::Retry { delay_secs: 900 }
        );
        // Counted from when the job was first tried, not from this message.
        assert_eq!(
            s.next(&plain, 50, 10 * hour, 23 * hour),
            Next::Retry { delay_secs: 900 }
        );
        // The default schedule fits in a day with the margin; 14 days takes longer schedules.
        assert!(s.span_secs() <= 86_400 - Schedule::MARGIN_SECS);
        assert!(schedule(101, &[900]).span_secs() > 86_400 - Schedule::MARGIN_SECS);
    }
}
