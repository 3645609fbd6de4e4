//! The admin routes over the dead letters: a page of them, and replays that take each out of
//! the list before sending it, so that concurrent replays send it once and a failed replay
//! leaves one dead letter. Each call reads only what it returns or replays.

use super::*;
use crate::delivery::dead_letters::Entry;

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// `GET /admin/dead-letters?limit=&cursor=`: one page (100 by default, at most 1,000) and
    /// the next page's cursor (null after the last). A record that cannot be read is listed
    /// with its key and the reason.
    pub async fn dead_letters(
        &self,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let limit = dead_letters::limit_of(limit)?;
        let cursor = dead_letters::cursor_of(cursor)?;
        let (entries, next) = dead_letters::page(&self.store, None, cursor, limit)
            .await
            .map_err(|e| Error::Internal(format!("listing dead letters: {e}")))?;
        let list: Vec<serde_json::Value> = entries.iter().map(shown).collect();
        Ok(json!({ "dead_letters": list, "cursor": next }))
    }

    /// `POST /admin/replay[?id=][&limit=&cursor=]`: one event's dead letters, or a page of
    /// them (at most 200 through the queue, 10 without one), sent again: through the queue
    /// when there is one, else with one attempt each now. Answers what became of each and how
    /// many dead letters remain; calling it until `remaining` is 0 drains the list.
    pub async fn replay(
        &self,
        id: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        if let Some(id) = id {
            if !jobs::is_event_id(id) {
                return Err(Error::MalformedParameter("id"));
            }
        }
        let most = if self.queue.is_some() {
            MAX_QUEUED_REPLAYS
        } else {
            MAX_INLINE_REPLAYS
        };
        let limit = match limit {
            None | Some("") => most,
            some => dead_letters::limit_of(some)?.min(most),
        };
        let cursor = dead_letters::cursor_of(cursor)?;
        // Settings first: nothing is taken out of the list for a replay that cannot run.
        let secret = self.config.forward_secret()?.cloned();
        let (entries, next) = dead_letters::page(&self.store, id, cursor, limit)
            .await
            .map_err(|e| Error::Internal(format!("listing dead letters: {e}")))?;
        if id.is_some() && entries.is_empty() {
            return Err(Error::NotFound);
        }
        let mut results = Vec::new();
        let (mut queued, mut delivered, mut failed_count) = (0, 0, 0);
        for (key, read) in entries {
            let (letter, result, error) = match read {
                Err(e) => (None, "unreadable", Some(e)),
                Ok(letter) if letter.unreadable => (
                    Some(letter),
                    "unreadable",
                    Some("not a job: recover it by hand".to_owned()),
                ),
                Ok(letter) => {
                    let (result, error) = self.replay_one(&key, &letter, secret.as_ref()).await;
                    (Some(letter), result, error)
                }
            };
            match result {
                "queued" => queued += 1,
                "delivered" => delivered += 1,
                "taken" => continue,
                _ => failed_count += 1,
            }
            let mut entry = serde_json::Map::new();
            entry.insert(
                "id".into(),
                letter.as_ref().map_or(key.clone(), |l| l.id.clone()).into(),
            );
            if let Some(l) = &letter {
                entry.insert(
                    "target".into(),
                    l.summary().get("target").cloned().unwrap_or_default(),
                );
            }
            entry.insert("result".into(), result.into());
            if let Some(e) = error {
                entry.insert("error".into(), e.into());
            }
            results.push(serde_json::Value::Object(entry));
        }
        let remaining = dead_letters::count(&self.store)
            .await
            .map_err(|e| Error::Internal(format!("counting dead letters: {e}")))?;
        Ok(json!({
            "replayed": results,
            "queued": queued,
            "delivered": delivered,
            "failed": failed_count,
            "remaining": remaining,
            "cursor": next,
        }))
    }

    /// One dead letter replayed: taken out of the list, then queued (the consumer stores it
    /// again if it fails) or attempted once (and put back if that fails). `"taken"` when a
    /// concurrent replay took it first.
    async fn replay_one(
        &self,
        key: &str,
        letter: &DeadLetter,
        secret: Option<&crate::delivery::webhook::WebhookSecret>,
    ) -> (&'static str, Option<String>) {
        // Claimed in this isolate first, so two replays here never both read it before either
        // takes it; then taken out of the store.
        if !self.memory.claim_replay(key) {
            return ("taken", None);
        }
        let result = self.replay_claimed(key, letter, secret).await;
        self.memory.release_replay(key);
        result
    }

    async fn replay_claimed(
        &self,
        key: &str,
        letter: &DeadLetter,
        secret: Option<&crate::delivery::webhook::WebhookSecret>,
    ) -> (&'static str, Option<String>) {
        match self.store.take(key).await {
            Ok(Some(_)) => {}
            Ok(None) => return ("taken", None),
            Err(e) => return ("failed", Some(format!("not taken out of the list: {e}"))),
        }
        let mut job = letter.to_job();
        // Taken out of the list already: nothing for the consumer to remove on delivery.
        job.replay_of = None;
        let Ok(target) = job.destination() else {
            self.put_back(letter).await;
            return ("failed", Some("its target is not a target".into()));
        };
        match &self.queue {
            Some(queue) => {
                let body = letter.body.clone().into_bytes();
                let sent = match self.fit(vec![job], &body).await {
                    Ok(jobs) => match jobs.first() {
                        Some(job) => queue.send(&job.to_text(), 0).await.map_err(|e| e.0),
                        None => Err("no job".to_owned()),
                    },
                    Err(e) => Err(format!("keeping the event: {e}")),
                };
                match sent {
                    Ok(()) => ("queued", None),
                    Err(e) => {
                        self.put_back(letter).await;
                        ("failed", Some(e))
                    }
                }
            }
            None => {
                let (outcome, now) = self
                    .attempt(&target, &letter.id, letter.body.as_bytes(), secret)
                    .await;
                if outcome == Outcome::Delivered {
                    return ("delivered", None);
                }
                let mut again = letter.clone();
                again.attempts = again.attempts.saturating_add(1);
                again.last_status = outcome.status();
                again.last_error = outcome.reason();
                again.last_attempt_at = now;
                self.put_back(&again).await;
                ("failed", Some(outcome.reason()))
            }
        }
    }

    /// A dead letter back in the list after a replay that did not go out (tried twice; then
    /// the whole record is in the error log line).
    async fn put_back(&self, letter: &DeadLetter) {
        let first = dead_letters::put(&self.store, letter).await;
        let second = match first {
            Ok(()) => return,
            Err(_) => dead_letters::put(&self.store, letter).await,
        };
        if let Err(e) = second {
            log::error!(event_id = letter.id.as_str(), error = e.to_string(), letter = serde_json::to_string(letter).unwrap_or_default(); "dead letter not put back after a failed replay (the whole record is in this line)");
        }
    }
}

/// A listed dead letter: its summary, or its key and why it could not be read.
fn shown((key, read): &Entry) -> serde_json::Value {
    match read {
        Ok(letter) => letter.summary(),
        Err(e) => json!({ "key": key, "error": e }),
    }
}
