//! The admin routes over the dead letters: a page of them, and replays that take each out of
//! the list before sending it, so that concurrent replays send it once and a failed replay
//! leaves one dead letter. Each account's dead letters are in its object; a listing walks the
//! objects in name order, and each call reads only what it returns or replays.

use super::*;
use crate::delivery::dead_letters::Entry;

/// How many accounts' objects one listing asks at most (each is a subrequest).
pub const MAX_OBJECTS_A_PAGE: usize = 25;
/// How many dead letters one listing moves from WECHAT_KV at most.
const LEGACY_IMPORT_A_CALL: usize = 50;

/// What an admin call over the dead letters selects: every query parameter as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// One event's dead letters.
    pub id: Option<&'a str>,
    /// One account's.
    pub account: Option<&'a str>,
    /// Only those whose target, as shown, contains this.
    pub target: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub cursor: Option<&'a str>,
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// `GET /admin/dead-letters?account=&target=&limit=&cursor=`: one page (100 by default, at
    /// most 1,000) of every account's dead letters, or one account's, optionally only those
    /// whose target (as shown) contains `target`, and the next page's cursor (null after the
    /// last). A record that cannot be read is listed with its key and the reason.
    pub async fn dead_letters(&self, query: &Query<'_>) -> Result<serde_json::Value, Error> {
        let limit = dead_letters::limit_of(query.limit)?;
        let (entries, next) = self.walk(query, limit).await?;
        let list: Vec<serde_json::Value> = entries.iter().map(shown).collect();
        Ok(json!({ "dead_letters": list, "cursor": next }))
    }

    /// `POST /admin/replay?[id=&account=&target=&limit=&cursor=]`: one event's dead letters,
    /// or a page of those the filter selects (at most 200 through the queue, 10 without one),
    /// sent again: through the queue when there is one, else with one attempt each now.
    /// Answers what became of each, how many dead letters remain in the account filter's scope,
    /// and the cursor to go on from (null when the filter's dead letters were all seen).
    pub async fn replay(&self, query: &Query<'_>) -> Result<serde_json::Value, Error> {
        let most = if self.queue.is_some() {
            MAX_QUEUED_REPLAYS
        } else {
            MAX_INLINE_REPLAYS
        };
        let limit = match query.limit {
            None | Some("") => most,
            some => dead_letters::limit_of(some)?.min(most),
        };
        // Settings first: nothing is taken out of the list for a replay that cannot run.
        let secret = self.config.forward_secret()?.cloned();
        let (mut entries, mut next) = self.walk(query, limit).await?;
        // One event's letters may be in any account's object: on past the first objects.
        let mut from: String;
        while query.id.is_some() && entries.is_empty() {
            let Some(cursor) = next.take() else {
                return Err(Error::NotFound);
            };
            from = cursor;
            let further = Query {
                cursor: Some(from.as_str()),
                ..*query
            };
            (entries, next) = self.walk(&further, limit).await?;
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
                entry.insert("account".into(), l.account.clone().into());
                entry.insert("target".into(), l.shown_target().into());
            }
            entry.insert("result".into(), result.into());
            if let Some(e) = error {
                entry.insert("error".into(), e.into());
            }
            results.push(serde_json::Value::Object(entry));
        }
        // What was replayed is answered even when the count fails (then `remaining` is null).
        let mut remaining = Some(0);
        for owner in self.owners(query.account)? {
            if owner == dead_letters::RELAY_OBJECT {
                continue;
            }
            match self.store.count(&dead_letters::prefix(&owner, None)).await {
                Ok(n) => remaining = remaining.map(|r| r + n),
                Err(e) => {
                    log::warn!(account = owner.as_str(), error = e.to_string(); "dead letters not counted after a replay");
                    remaining = None;
                    break;
                }
            }
        }
        Ok(json!({
            "replayed": results,
            "queued": queued,
            "delivered": delivered,
            "failed": failed_count,
            "remaining": remaining,
            "cursor": next,
        }))
    }

    /// The objects whose dead letters a listing walks, in order: one account's, or every
    /// configured account's by name and then the deployment's (unreadable queue messages).
    fn owners(&self, account: Option<&str>) -> Result<Vec<String>, Error> {
        match account {
            Some(name) if crate::account::is_valid_name(name) => Ok(vec![name.to_owned()]),
            Some(_) => Err(Error::MalformedParameter("account")),
            None => {
                let mut names: Vec<String> = self
                    .config
                    .accounts()
                    .iter()
                    .map(|a| a.name().to_owned())
                    .collect();
                names.sort();
                names.push(dead_letters::RELAY_OBJECT.to_owned());
                Ok(names)
            }
        }
    }

    /// Up to `limit` dead letters that `query` selects, from its cursor (`<object>/<its own
    /// cursor>`), and the cursor to go on from. Asks at most [`MAX_OBJECTS_A_PAGE`] objects; a
    /// target filter may leave a page short, never the walk unfinished.
    async fn walk(
        &self,
        query: &Query<'_>,
        limit: usize,
    ) -> Result<(Vec<Entry>, Option<String>), Error> {
        if let Some(id) = query.id {
            if !jobs::is_event_id(id) {
                return Err(Error::MalformedParameter("id"));
            }
        }
        let cursor = dead_letters::cursor_of(query.cursor)?;
        self.import_legacy_dead_letters().await;
        let owners = self.owners(query.account)?;
        let (mut at, mut inner) = match cursor {
            None => (0, None),
            Some(c) => {
                let (owner, rest) = c
                    .split_once('/')
                    .ok_or(Error::MalformedParameter("cursor"))?;
                let at = owners
                    .iter()
                    .position(|o| o == owner)
                    .ok_or(Error::MalformedParameter("cursor"))?;
                (at, Some(rest).filter(|r| !r.is_empty()))
            }
        };
        let mut out: Vec<Entry> = Vec::new();
        let mut asked = 0;
        while let Some(owner) = owners.get(at) {
            if asked == MAX_OBJECTS_A_PAGE {
                return Ok((out, Some(format!("{owner}/"))));
            }
            asked += 1;
            let prefix = dead_letters::prefix(owner, query.id);
            if out.len() >= limit {
                // The page is full: a cursor only if another object has one to show, so that
                // the last page of a listing without a target filter is never an empty one.
                let probe =
                    self.store.list_page(&prefix, None, 1).await.map_err(|e| {
                        Error::Internal(format!("listing {owner}'s dead letters: {e}"))
                    })?;
                if !probe.keys.is_empty() {
                    return Ok((out, Some(format!("{owner}/"))));
                }
                at += 1;
                continue;
            }
            let (mut entries, next) =
                dead_letters::page(&self.store, &prefix, inner.take(), limit - out.len())
                    .await
                    .map_err(|e| Error::Internal(format!("listing {owner}'s dead letters: {e}")))?;
            if let Some(wanted) = query.target.filter(|t| !t.is_empty()) {
                entries.retain(|(_, read)| {
                    read.as_ref()
                        .is_ok_and(|l| l.shown_target().contains(wanted))
                });
            }
            out.extend(entries);
            if let Some(next) = next {
                return Ok((out, Some(format!("{owner}/{next}"))));
            }
            at += 1;
        }
        Ok((out, None))
    }

    /// Dead letters a relay before the objects left in WECHAT_KV, moved into their accounts'
    /// objects before a listing, until this isolate found none left.
    async fn import_legacy_dead_letters(&self) {
        if self.memory.legacy_dead_letters_moved() {
            return;
        }
        match dead_letters::import_legacy(&self.store, LEGACY_IMPORT_A_CALL).await {
            Ok((moved, more)) => {
                if moved > 0 {
                    log::info!(moved = moved; "dead letters moved from WECHAT_KV into their accounts' objects");
                }
                if !more {
                    self.memory.mark_legacy_dead_letters_moved();
                }
            }
            Err(e) => {
                log::warn!(error = e.to_string(); "dead letters in WECHAT_KV not moved yet; listing the objects' own");
            }
        }
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
            Err(e) => {
                // The take may have happened with its answer lost: the letter is put back (the
                // same record, so harmless if it was never taken), never left taken and unsent.
                self.put_back(letter).await;
                return ("failed", Some(format!("not taken out of the list: {e}")));
            }
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
