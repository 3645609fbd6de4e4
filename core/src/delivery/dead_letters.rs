//! Dead letters: deliveries that failed for good (refused, or out of attempts), kept in the store
//! until they are replayed, one key per event and target:
//! `dead:<event id>:<8 hex of SHA-256(target)>`, a JSON record with the event's body, the
//! target, the attempts, the last status and error, and the times. Failures are rare, so the
//! free plan's 1,000 KV writes a day are enough; each is kept 30 days.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delivery;
use crate::ports::{Store, StoreError};
use crate::time;

pub const PREFIX: &str = "dead:";
/// Where the replayable dead letters are: every key of an event's dead letter.
pub const EVENT_PREFIX: &str = "dead:evt_";
/// Unreadable queue messages sort after every event's dead letters (`~` > `e`), so a replay,
/// which pages from the start, meets them last and `remaining` does not count them.
pub const UNREADABLE_PREFIX: &str = "dead:~unreadable:";
/// How long a dead letter is kept.
pub const TTL_SECS: u64 = 30 * 86_400;

/// A delivery that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event id (the `webhook-id`).
    pub id: String,
    pub account: String,
    /// An `http(s)://` URL or `service:<BINDING>/path`.
    pub target: String,
    /// The event, as forwarded.
    pub body: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    /// Unix ms.
    pub first_attempt_at: u64,
    /// Unix ms.
    pub last_attempt_at: u64,
    /// A queue message the consumer could not read as a job: `body` is its whole text, kept for
    /// a person to recover; it is listed, never replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

/// The store key of the dead letter of `event_id` for `target`.
pub fn key(event_id: &str, target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{event_id}:{hex}")
}

/// Whether `key` is a dead-letter key.
pub fn is_key(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(id, hash)| {
            crate::event::is_event_id(id)
                && hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

impl DeadLetter {
    /// The dead letter of a queue message that is not a job: its whole text, under an id of
    /// its own (the same text, the same dead letter).
    pub fn unreadable(text: &str, why: &str, now_ms: u64) -> DeadLetter {
        DeadLetter {
            id: crate::event::event_id("", None, text.as_bytes()),
            account: String::new(),
            target: String::new(),
            body: text.to_owned(),
            attempts: 0,
            last_status: None,
            last_error: format!("unreadable queue message: {why}"),
            first_attempt_at: now_ms,
            last_attempt_at: now_ms,
            unreadable: true,
        }
    }

    pub fn key(&self) -> String {
        if self.unreadable {
            format!("{UNREADABLE_PREFIX}{}", self.id)
        } else {
            key(&self.id, &self.target)
        }
    }

    /// What `GET /admin/dead-letters` shows: no body, the target without query or user info,
    /// times in RFC 3339.
    pub fn summary(&self) -> serde_json::Value {
        let target = match crate::delivery::targets::parse_target(&self.target, &|_| true) {
            Ok(d) => delivery::redact(&d),
            Err(_) if self.unreadable => "<unreadable queue message>".to_owned(),
            Err(_) => "<unparseable target>".to_owned(),
        };
        let mut summary = serde_json::json!({
            "id": self.id,
            "account": self.account,
            "target": target,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "first_attempt_at": time::rfc3339_millis(self.first_attempt_at),
            "last_attempt_at": time::rfc3339_millis(self.last_attempt_at),
        });
        if let (true, Some(map)) = (self.unreadable, summary.as_object_mut()) {
            map.insert("unreadable".into(), true.into());
        }
        summary
    }
}

/// Stores (or replaces) a dead letter.
pub async fn put<S: Store>(store: &S, letter: &DeadLetter) -> Result<(), StoreError> {
    let text = serde_json::to_string(letter).map_err(|e| StoreError(e.to_string()))?;
    store.put(&letter.key(), &text, Some(TTL_SECS)).await
}

/// A stored dead letter, or the reason its record could not be read (shown, never hidden).
pub type Entry = (String, Result<DeadLetter, String>);

/// One page of dead letters (optionally only those of one event) from `cursor`, with the next
/// page's cursor: one list operation and one read per record, whatever the backlog.
pub async fn page<S: Store>(
    store: &S,
    event_id: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<String>), StoreError> {
    let prefix = match event_id {
        Some(id) => format!("{PREFIX}{id}:"),
        None => PREFIX.to_owned(),
    };
    let page = store.list_page(&prefix, cursor, limit).await?;
    let mut out = Vec::with_capacity(page.keys.len());
    for key in page.keys {
        let read = match store.get(&key).await {
            // Expired between the listing and the read.
            Ok(None) => continue,
            Ok(Some(text)) => serde_json::from_str::<DeadLetter>(&text)
                .map_err(|e| format!("unreadable dead letter record: {e}")),
            Err(e) => Err(format!("dead letter record not read: {e}")),
        };
        out.push((key, read));
    }
    Ok((out, page.cursor))
}

/// How many replayable dead letters there are (unreadable messages not counted), counting keys
/// only (1,000 a list operation).
pub async fn count<S: Store>(store: &S) -> Result<usize, StoreError> {
    let mut cursor: Option<String> = None;
    let mut n = 0;
    loop {
        let page = store
            .list_page(EVENT_PREFIX, cursor.as_deref(), 1000)
            .await?;
        n += page.keys.len();
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(n),
        }
    }
}

/// A page size from `?limit=`: default 100, at most 1,000.
pub fn limit_of(limit: Option<&str>) -> Result<usize, crate::error::Error> {
    match limit {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(crate::error::Error::MalformedParameter("limit")),
        },
    }
}

/// A cursor from `?cursor=`: what a listing answered (opaque: the store's own), printable ASCII.
pub fn cursor_of(cursor: Option<&str>) -> Result<Option<&str>, crate::error::Error> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) if c.len() <= 1024 && c.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(c)),
        Some(_) => Err(crate::error::Error::MalformedParameter("cursor")),
    }
}

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::jobs::Job;
    use crate::delivery::Failed;
    use crate::delivery::Outcome;
    use crate::ports::Destination;
    use crate::testing::{FakeClock, MemoryStore};

    const ID: &str = "evt_0123456789abcdef0123456789abcdef";

    fn letter(target: &str) -> DeadLetter {
        let job = Job::new(
            ID,
            "default",
            &Destination::Url(target.into()),
            b"{\"id\":1}",
        );
        DeadLetter::from_job(
            &job,
            &Failed {
                target: Destination::Url(target.into()),
                attempts: 4,
                last: Outcome::Refused { status: 410 },
                first_attempt_ms: 1_800_000_000_000,
                last_attempt_ms: 1_800_000_060_000,
            },
        )
    }

    #[test]
    fn keys_are_per_event_and_target() {
        let a = letter("https://a.example/x");
        let b = letter("https://b.example/x");
        assert_ne!(a.key(), b.key());
        assert!(is_key(&a.key()));
        assert!(a.key().starts_with(&format!("dead:{ID}:")));
        for bad in [
            "dead:",
            "dead:evt_1:aabbccdd",
            &format!("dead:{ID}:xyz"),
            &format!("dead:{ID}"),
            "credential:default:access_token",
        ] {
            assert!(!is_key(bad), "{bad}");
        }
    }

    #[test]
    fn stored_listed_and_summarized() {
        let clock = FakeClock::at(1_800_000_000_000);
        let store = MemoryStore::new(&clock);
        let a = letter("https://user:pw@a.example/x?token=sekrit");
        clock.run(put(&store, &a)).unwrap();
        clock
            .run(put(&store, &letter("https://b.example/y")))
            .unwrap();
        store.insert(&format!("dead:{ID}:00000000"), "not json");
        assert_eq!(
            store.expiry_of(&a.key()),
            Some(1_800_000_000_000 + TTL_SECS * 1000)
        );
        let (all, cursor) = clock.run(page(&store, None, None, 100)).unwrap();
        assert_eq!(cursor, None);
        // The unreadable record is shown as such, not skipped.
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().filter(|(_, r)| r.is_err()).count(), 1);
        assert_eq!(
            clock
                .run(page(&store, Some(ID), None, 100))
                .unwrap()
                .0
                .len(),
            3
        );
        assert!(clock
            .run(page(
                &store,
                Some("evt_ffffffffffffffffffffffffffffffff"),
                None,
                100
            ))
            .unwrap()
            .0
            .is_empty());
        assert_eq!(clock.run(count(&store)).unwrap(), 3);
        let raw = DeadLetter::unreadable("{oops", "not json", 1);
        assert!(raw.key().starts_with(UNREADABLE_PREFIX) && raw.key() > a.key());
        clock.run(put(&store, &raw)).unwrap();
        assert_eq!(
            clock.run(count(&store)).unwrap(),
            3,
            "not replayable, not counted"
        );
        assert_eq!(clock.run(page(&store, None, None, 100)).unwrap().0.len(), 4);
        let s = a.summary();
        assert_eq!(s["target"], "https://a.example/x");
        assert_eq!(s["last_status"], 410);
        assert_eq!(s["attempts"], 4);
        assert_eq!(s["first_attempt_at"], "2027-01-15T08:00:00.000Z");
        assert!(!s.to_string().contains("sekrit"));
        let job = a.to_job();
        assert_eq!(job.replay_of, Some(a.key()));
        assert_eq!(job.attempts_before, 0);
        assert_eq!(Job::parse(&job.to_text()).unwrap(), job);
    }
}
