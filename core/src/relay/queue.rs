//! Delivery after the hand-off: the attempts right after the answer (direct mode, or no queue),
//! the delivery queue's consumer and the dead-letter queue's, and the dead letters they store.
//!
//! **Every path ends in a delivery or a dead letter.** Each message of a batch gets its own
//! verdict; an attempt's network failure is a failed attempt of that job, never an error of the
//! batch. No retry is scheduled past the queue's retention (`QUEUE_RETENTION`): a dead letter is
//! stored instead. A dead letter that cannot be stored keeps its message in the queue (and its
//! whole job in the error log, in case the platform gives up). A message that is not a job
//! becomes a dead letter of its text. A broken setting the attempt needs (`FORWARD_SECRET`, the
//! schedule) postpones the job rather than delivering it unsigned.

use futures_util::stream::{self, StreamExt};

use super::*;
use crate::config::ConfigError;
use crate::delivery::webhook::WebhookSecret;
use crate::ports::StoreError;

pub use crate::delivery::MAX_PARALLEL_ATTEMPTS;
/// How long a job waits for a broken setting to be fixed before it is looked at again.
pub const POSTPONE_SECS: u32 = 300;
/// How long a job waits, at first, when its dead letter (or its kept body) could not be read or
/// stored; the wait doubles with each delivery of the message, up to [`STORE_RETRY_MAX_SECS`].
pub const STORE_RETRY_SECS: u32 = 60;
pub const STORE_RETRY_MAX_SECS: u32 = 3_600;
/// How long a kept body that cannot be found is looked for again (Workers KV shows another
/// location's write after about a minute).
pub const BODY_PATIENCE_MS: u64 = 10 * 60_000;

/// The wait before the next try of a store that failed on delivery `attempts` of a message.
pub fn store_retry_delay(attempts: u32) -> u32 {
    STORE_RETRY_SECS
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(STORE_RETRY_MAX_SECS)
}
/// A `sendBatch` takes 256 KB; the rest is left for the queue's own framing.
pub const MAX_BATCH_BYTES: usize = 240 * 1024;

/// One message of a queue batch, as the consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub text: String,
    /// Deliveries of this message so far, this one included.
    pub attempts: u32,
    /// Unix ms of the message's enqueueing.
    pub enqueued_ms: u64,
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// A whole queue batch: one verdict per message, at most [`MAX_PARALLEL_ATTEMPTS`] of them
    /// in flight at once. `settle(i, verdict)` is called as each message is done (so it is
    /// acked or retried then, whatever happens to the rest); the verdicts come back in order.
    pub async fn consume_batch(
        &self,
        messages: Vec<QueueMessage>,
        dead_letter_queue: bool,
        settle: impl Fn(usize, Verdict),
    ) -> Vec<Verdict> {
        let settle = &settle;
        let mut done = stream::iter(messages.into_iter().enumerate())
            .map(|(i, m)| async move {
                let verdict = if dead_letter_queue {
                    self.consume_dead(&m.text, m.attempts, m.enqueued_ms).await
                } else {
                    self.consume(&m.text, m.attempts, m.enqueued_ms).await
                };
                settle(i, verdict);
                (i, verdict)
            })
            .buffer_unordered(MAX_PARALLEL_ATTEMPTS)
            .collect::<Vec<(usize, Verdict)>>()
            .await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, v)| v).collect()
    }

    /// The jobs of one event made to fit: each in a queue message and all in one batch. When
    /// they do not, the event's body is kept in the store once and each job carries its key.
    pub(super) async fn fit(
        &self,
        mut jobs: Vec<Job>,
        body: &[u8],
    ) -> Result<Vec<Job>, StoreError> {
        let total: usize = jobs.iter().map(|j| j.to_text().len()).sum();
        if jobs.iter().all(Job::fits) && total <= MAX_BATCH_BYTES {
            return Ok(jobs);
        }
        let Some(first) = jobs.first() else {
            return Ok(jobs);
        };
        let key = jobs::body_key(&first.event_id);
        let text = String::from_utf8_lossy(body);
        // Kept already (a replay of another target of the event): one write per key a second
        // is all Workers KV allows.
        let kept = matches!(self.store.get(&key).await, Ok(Some(found)) if found == text);
        if !kept {
            self.store
                .put(&key, &text, Some(jobs::BODY_TTL_SECS))
                .await?;
        }
        for job in &mut jobs {
            job.body = String::new();
            job.body_ref = Some(key.clone());
        }
        Ok(jobs)
    }

    /// A job with its body in hand: `Err` is the verdict when the kept body cannot be read
    /// now (retried), or is gone for good (the job kept whole as an unreadable dead letter: a
    /// replay must never send the event's id with another body).
    async fn resolve(
        &self,
        mut job: Job,
        text: &str,
        attempts: u32,
        enqueued_ms: u64,
    ) -> Result<Job, Verdict> {
        let Some(key) = job.body_ref.take() else {
            return Ok(job);
        };
        match self.store.get(&key).await {
            Ok(Some(body)) => {
                job.body = body;
                Ok(job)
            }
            Ok(None) if self.clock.now_ms().saturating_sub(enqueued_ms) < BODY_PATIENCE_MS => {
                // Written elsewhere a moment ago: not visible here yet.
                log::info!(event_id = job.event_id.as_str(); "the event's kept body is not visible yet; retrying");
                Err(Verdict::Retry {
                    delay_secs: STORE_RETRY_SECS,
                })
            }
            Ok(None) => {
                log::error!(event_id = job.event_id.as_str(), key = key.as_str(); "the event's kept body is gone; the job is kept as an unreadable dead letter");
                Err(self
                    .keep_unreadable(text, "the event's kept body is gone", attempts)
                    .await)
            }
            Err(e) => {
                log::warn!(event_id = job.event_id.as_str(), error = e.to_string(); "the event's kept body could not be read; retrying");
                Err(Verdict::Retry {
                    delay_secs: store_retry_delay(attempts),
                })
            }
        }
    }

    /// The settings an attempt needs, each of which may be broken.
    fn delivery_settings(&self) -> Result<(&Schedule, Option<WebhookSecret>), ConfigError> {
        let schedule = self.config.schedule()?;
        let secret = self.config.forward_secret()?.cloned();
        Ok((schedule, secret))
    }

    /// A failure record for a job that was not attempted (a broken setting).
    fn not_attempted(&self, job: &Job, attempts: u32, first_ms: u64, why: &str) -> Failed {
        let now = self.clock.now_ms();
        Failed {
            target: job
                .destination()
                .unwrap_or_else(|_| Destination::Url(job.target.clone())),
            attempts,
            last: Outcome::Retry {
                status: job.last_status,
                reason: format!("not attempted: {why}"),
                retry_after: None,
            },
            first_attempt_ms: job.first_attempt_at.unwrap_or(first_ms),
            last_attempt_ms: now,
        }
    }

    /// A queue message as a job with its body in hand, or the verdict when it is not one (kept
    /// as an unreadable dead letter) or its kept body cannot be had now.
    async fn read_job(
        &self,
        text: &str,
        deliveries: u32,
        enqueued_ms: u64,
    ) -> Result<Job, Verdict> {
        match Job::parse(text) {
            Ok(job) => self.resolve(job, text, deliveries, enqueued_ms).await,
            Err(e) => Err(self.keep_unreadable(text, &e.to_string(), deliveries).await),
        }
    }

    /// The delivery queue's consumer: one attempt for a job that has had `attempts` deliveries
    /// from the queue (this one included), enqueued at `enqueued_ms`.
    pub async fn consume(&self, text: &str, attempts: u32, enqueued_ms: u64) -> Verdict {
        let job = match self.read_job(text, attempts, enqueued_ms).await {
            Ok(job) => job,
            Err(verdict) => return verdict,
        };
        let total = job.attempts_before.saturating_add(attempts);
        // The queue deletes a message by its own age; a job tried before it was enqueued is
        // older still.
        let first_ms = job
            .first_attempt_at
            .map_or(enqueued_ms, |f| f.min(enqueued_ms));
        let (schedule, secret) = match self.delivery_settings() {
            Ok(settings) => settings,
            Err(e) => {
                log::error!(event_id = job.event_id.as_str(), setting = e.setting.as_str(), error = e.to_string(); "delivery postponed until the setting is fixed");
                // The real retention when it parses, else the shortest there can be.
                let fallback = Schedule {
                    retention_secs: self.config.queue_retention_secs(),
                    ..Schedule::default()
                };
                return match fallback.retry_or_dead(POSTPONE_SECS, first_ms, self.clock.now_ms()) {
                    Next::Retry { delay_secs } => Verdict::Retry { delay_secs },
                    _ => {
                        let failed = self.not_attempted(&job, total, first_ms, &format!("{e}"));
                        self.dead_letter_verdict(&job, &failed, attempts).await
                    }
                };
            }
        };
        let Ok(target) = job.destination() else {
            return self.keep_unreadable(text, "no destination", attempts).await;
        };
        let (outcome, at) = self
            .attempt(&target, &job.event_id, job.body.as_bytes(), secret.as_ref())
            .await;
        let failed = Failed {
            target,
            attempts: total,
            last: outcome,
            first_attempt_ms: job.first_attempt_at.unwrap_or(enqueued_ms),
            last_attempt_ms: at,
        };
        match schedule.next(&failed.last, total, first_ms, self.clock.now_ms()) {
            Next::Done => {
                if let Some(key) = &job.replay_of {
                    self.remove_delivered(&job, key).await;
                }
                Verdict::Ack
            }
            Next::Retry { delay_secs } => {
                log::info!(event_id = job.event_id.as_str(), target = delivery::redact(&failed.target), attempts = total.to_string(), reason = failed.last.reason(), retry_in = delay_secs.to_string(); "delivery failed; retrying");
                Verdict::Retry { delay_secs }
            }
            Next::DeadLetter => self.dead_letter_verdict(&job, &failed, attempts).await,
            Next::PastRetention { delay_secs } => {
                log::warn!(event_id = job.event_id.as_str(), target = delivery::redact(&failed.target), retry_in = delay_secs.to_string(); "the next attempt would come after the queue's retention (QUEUE_RETENTION); storing a dead letter now");
                self.dead_letter_verdict(&job, &failed, attempts).await
            }
        }
    }

    /// The dead-letter queue's consumer: a job the queue gave up on (its own `max_retries` ran
    /// out before the relay's schedule did, or the consumer kept failing). One last attempt;
    /// if that fails, a dead letter.
    pub async fn consume_dead(&self, text: &str, deliveries: u32, enqueued_ms: u64) -> Verdict {
        let job = match self.read_job(text, deliveries, enqueued_ms).await {
            Ok(job) => job,
            Err(verdict) => return verdict,
        };
        let attempts = job.attempts_before.saturating_add(1);
        // Never unsigned: with a broken FORWARD_SECRET the job waits as a dead letter.
        let secret = match self.config.forward_secret() {
            Ok(secret) => secret.cloned(),
            Err(e) => {
                log::error!(event_id = job.event_id.as_str(), setting = e.setting.as_str(), error = e.to_string(); "not delivered until the setting is fixed; storing a dead letter to replay then");
                let failed = self.not_attempted(&job, attempts, enqueued_ms, &format!("{e}"));
                return self.dead_letter_verdict(&job, &failed, deliveries).await;
            }
        };
        let Ok(target) = job.destination() else {
            return self
                .keep_unreadable(text, "no destination", deliveries)
                .await;
        };
        let (outcome, now) = self
            .attempt(&target, &job.event_id, job.body.as_bytes(), secret.as_ref())
            .await;
        if outcome == Outcome::Delivered {
            if let Some(key) = &job.replay_of {
                self.remove_delivered(&job, key).await;
            }
            return Verdict::Ack;
        }
        let reason = format!("{} (the queue's retries ran out)", outcome.reason());
        let failed = Failed {
            target,
            attempts,
            last: Outcome::Retry {
                status: outcome.status(),
                reason,
                retry_after: None,
            },
            first_attempt_ms: job.first_attempt_at.unwrap_or(enqueued_ms),
            last_attempt_ms: now,
        };
        self.dead_letter_verdict(&job, &failed, deliveries).await
    }

    /// A message that is not a job: kept as a dead letter of its text, never silently acked.
    async fn keep_unreadable(&self, text: &str, why: &str, attempts: u32) -> Verdict {
        let letter = DeadLetter::unreadable(text, why, self.clock.now_ms());
        match dead_letters::put(&self.store, &letter).await {
            Ok(()) => {
                log::error!(id = letter.id.as_str(), reason = why; "unreadable queue message kept as a dead letter");
                Verdict::Ack
            }
            Err(e) => {
                log::error!(reason = why, error = e.to_string(), message = text; "unreadable queue message not stored; retrying (its whole text is in this line)");
                Verdict::Retry {
                    delay_secs: store_retry_delay(attempts),
                }
            }
        }
    }

    /// Stores the dead letter: acknowledged once stored, retried (ever less often) until it is.
    async fn dead_letter_verdict(&self, job: &Job, failed: &Failed, attempts: u32) -> Verdict {
        delivery::log_failed(&job.event_id, failed);
        if self.store_dead_letter(job, failed).await {
            Verdict::Ack
        } else {
            Verdict::Retry {
                delay_secs: store_retry_delay(attempts),
            }
        }
    }

    /// A dead letter stored outside the consumer (after the answer): tried three times; if the
    /// store still fails, the job goes to the queue (when there is one), whose consumer tries
    /// the delivery again and keeps the message until its dead letter is stored.
    pub(super) async fn keep_failed(&self, job: &Job, failed: &Failed) {
        for pause_ms in [250, 1_000, 0] {
            if self.store_dead_letter(job, failed).await {
                return;
            }
            if pause_ms > 0 {
                self.clock.sleep(pause_ms).await;
            }
        }
        let Some(queue) = &self.queue else {
            return;
        };
        let body = job.body.clone().into_bytes();
        let sent = match self.fit(vec![job.clone()], &body).await {
            Ok(jobs) => match jobs.first() {
                Some(job) => queue
                    .send(&job.to_text(), STORE_RETRY_SECS)
                    .await
                    .map_err(|e| e.0),
                None => Err("no job".to_owned()),
            },
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => {
                log::warn!(event_id = job.event_id.as_str(); "dead letter not stored; the job went back to the queue instead")
            }
            Err(e) => {
                log::error!(event_id = job.event_id.as_str(), error = e.as_str(), job = job.to_text(); "dead letter not stored and the job not queued (the whole job is in this line)")
            }
        }
    }

    pub(super) async fn store_dead_letter(&self, job: &Job, failed: &Failed) -> bool {
        let letter = DeadLetter::from_job(job, failed);
        match dead_letters::put(&self.store, &letter).await {
            Ok(()) => {
                log::error!(event_id = job.event_id.as_str(), target = delivery::redact(&failed.target), attempts = failed.attempts.to_string(); "dead letter stored");
                true
            }
            Err(e) => {
                // If the platform gives up on the message anyway, this line is the job.
                log::error!(event_id = job.event_id.as_str(), error = e.to_string(), job = job.to_text(); "dead letter could not be stored; kept in the queue (the whole job is in this line)");
                false
            }
        }
    }

    /// One attempt of an event at a target, signed with the current secret: the outcome, and
    /// when it was made.
    pub(super) async fn attempt(
        &self,
        target: &Destination,
        event_id: &str,
        body: &[u8],
        secret: Option<&WebhookSecret>,
    ) -> (Outcome, u64) {
        let at = self.clock.now_ms();
        let outcome =
            delivery::attempt(&self.clock, &self.http, target, event_id, body, secret).await;
        (outcome, at)
    }

    /// A dead letter replayed by an older version (its job names it), delivered at last.
    async fn remove_delivered(&self, job: &Job, key: &str) {
        // A job of a relay before the objects names the letter's WECHAT_KV key; the letter may
        // have moved into its account's object since.
        let moved = dead_letters::key(&job.account, &job.event_id, &job.target);
        let keys = if moved == key {
            vec![key]
        } else {
            vec![key, moved.as_str()]
        };
        for key in keys {
            if let Err(e) = self.store.delete(key).await {
                log::warn!(key = key, error = e.to_string(); "replayed dead letter delivered but not removed");
            }
        }
    }

    /// Delivery right after the answer. With a queue: one attempt per target (at most
    /// [`MAX_PARALLEL_ATTEMPTS`] at once), and the retry schedule for what failed. Without: four
    /// attempts inline, inside `wait_until`. What still fails becomes a dead letter.
    pub(super) async fn deliver_now(
        self,
        event_id: String,
        account: String,
        body: Vec<u8>,
        targets: Vec<Destination>,
        retry_through_queue: bool,
    ) {
        let secret = match self.config.forward_secret() {
            Ok(secret) => secret.cloned(),
            Err(e) => {
                // Checked before the answer; a setting cannot change within a request.
                log::error!(event_id = event_id.as_str(), error = e.to_string(); "not delivered: FORWARD_SECRET is malformed");
                return;
            }
        };
        if !retry_through_queue {
            let delivery = delivery::Delivery {
                event_id: event_id.clone(),
                body: body.clone(),
                targets,
                secret,
            };
            for failed in delivery::deliver_inline(&self.clock, &self.http, &delivery).await {
                let job = Job::new(&event_id, &account, &failed.target, &body);
                self.keep_failed(&job, &failed).await;
            }
            return;
        }
        let (relay, event_id_ref, body_ref, secret_ref) = (&self, &event_id, &body, &secret);
        let outcomes: Vec<(Destination, Outcome, u64)> = stream::iter(targets)
            .map(|target| async move {
                let (outcome, at) = relay
                    .attempt(&target, event_id_ref, body_ref, secret_ref.as_ref())
                    .await;
                (target, outcome, at)
            })
            .buffered(MAX_PARALLEL_ATTEMPTS)
            .collect()
            .await;
        let schedule = self.config.schedule().cloned().unwrap_or_default();
        let now = self.clock.now_ms();
        let mut retries: Vec<(Job, Failed, u32)> = Vec::new();
        for (target, outcome, at) in outcomes {
            let mut job = Job::new(&event_id, &account, &target, &body);
            job.attempts_before = 1;
            job.first_attempt_at = Some(at);
            job.last_status = outcome.status();
            job.last_error = Some(outcome.reason());
            let failed = Failed {
                target,
                attempts: 1,
                last: outcome,
                first_attempt_ms: at,
                last_attempt_ms: at,
            };
            match schedule.next(&failed.last, 1, at, now) {
                Next::Done => {}
                Next::Retry { delay_secs } => retries.push((job, failed, delay_secs)),
                Next::DeadLetter | Next::PastRetention { .. } => {
                    delivery::log_failed(&event_id, &failed);
                    self.keep_failed(&job, &failed).await;
                }
            }
        }
        self.schedule_retries(retries, &body).await;
    }

    /// Enqueues the retries of attempts made outside the consumer; what the queue (or, for a
    /// large event, the store) refuses becomes a dead letter.
    async fn schedule_retries(&self, retries: Vec<(Job, Failed, u32)>, body: &[u8]) {
        let Some(queue) = &self.queue else {
            return;
        };
        if retries.is_empty() {
            return;
        }
        let jobs: Vec<Job> = retries.iter().map(|(j, _, _)| j.clone()).collect();
        let jobs = match self.fit(jobs, body).await {
            Ok(jobs) => jobs,
            Err(e) => {
                return self
                    .retries_not_scheduled(retries.iter(), &format!("keeping the event: {e}"))
                    .await
            }
        };
        // One batch per delay (they differ only by a receiver's Retry-After); batches keep
        // the jobs' order, so a refused batch is the next `batch.len()` retries of its group.
        let mut delays: Vec<u32> = retries.iter().map(|(_, _, d)| *d).collect();
        delays.sort_unstable();
        delays.dedup();
        for delay in delays {
            let (group, group_jobs): (Vec<&(Job, Failed, u32)>, Vec<Job>) = retries
                .iter()
                .zip(&jobs)
                .filter(|((_, _, d), _)| *d == delay)
                .map(|(retry, job)| (retry, job.clone()))
                .unzip();
            let mut sent = 0;
            for batch in batches(&group_jobs, delay) {
                if let Err(e) = queue.send_batch(&batch).await {
                    let refused = group.iter().skip(sent).take(batch.len()).copied();
                    self.retries_not_scheduled(refused, &e.0).await;
                }
                sent += batch.len();
            }
        }
    }

    async fn retries_not_scheduled<'a>(
        &self,
        retries: impl Iterator<Item = &'a (Job, Failed, u32)>,
        error: &str,
    ) {
        for (job, failed, _) in retries {
            log::error!(event_id = job.event_id.as_str(), error = error; "could not schedule a retry; storing a dead letter");
            delivery::log_failed(&job.event_id, failed);
            self.keep_failed(job, failed).await;
        }
    }
}
