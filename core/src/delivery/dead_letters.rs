//! Dead letters: deliveries that failed for good (refused, or out of attempts), kept until they
//! are replayed, one key per account, event and target:
//! `dead:<account>:<event id>:<8 hex of SHA-256(target)>`, a JSON record with the event's body,
//! the target, the attempts, the last status and error, and the times. The key names its
//! account, so the record lives in that account's object (`coordinator::SharedStore`): listed
//! in key order from a cursor, taken out exactly once by a replay. Each is kept 30 days.
//!
//! Queue messages that are not jobs belong to no account: they are kept by the deployment's own
//! object ([`RELAY_OBJECT`]). Relays before the objects kept dead letters in WECHAT_KV as
//! `dead:<event id>:<hash>`; [`import_legacy`] moves them into their accounts' objects.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delivery;
use crate::ports::{Store, StoreError};
use crate::time;

pub use crate::coordinator::RELAY_OBJECT;

pub const PREFIX: &str = "dead:";
/// The keys of dead letters kept by relays before the objects (in WECHAT_KV): events', and
/// unreadable queue messages'.
pub const LEGACY_PREFIXES: [&str; 2] = ["dead:evt_", "dead:~unreadable:"];
/// How much of the event a listing shows (the console's Content column).
pub const PREVIEW_CHARS: usize = 200;
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

/// The store key of the dead letter of `event_id` for `target`, in `account`'s object.
pub fn key(account: &str, event_id: &str, target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{account}:{event_id}:{hex}")
}

/// Where `owner`'s dead letters are (all of them, or one event's).
pub fn prefix(owner: &str, event_id: Option<&str>) -> String {
    match event_id {
        Some(id) => format!("{PREFIX}{owner}:{id}:"),
        None => format!("{PREFIX}{owner}:"),
    }
}

fn is_target_hash(hash: &str) -> bool {
    hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `key` is the key of an event's dead letter (what a replay's job may remove on
/// delivery): an account's, or one a relay before the objects kept in WECHAT_KV.
pub fn is_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [account, id, hash] => {
            crate::account::is_valid_name(account)
                && crate::event::is_event_id(id)
                && is_target_hash(hash)
        }
        [id, hash] => crate::event::is_event_id(id) && is_target_hash(hash),
        _ => false,
    }
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
            format!("{}{}", prefix(RELAY_OBJECT, None), self.id)
        } else {
            key(&self.account, &self.id, &self.target)
        }
    }

    /// The event's `type`, read from the body as forwarded ("" when it has none).
    pub fn event_type(&self) -> String {
        self.shown_body().0
    }

    /// What the console shows of the event: a message's text (`data.content`), at most
    /// [`PREVIEW_CHARS`] characters; nothing for events without one (their fields, such as a
    /// platform's authorization code, are not shown), nor for an unreadable message.
    pub fn preview(&self) -> String {
        self.shown_body().1
    }

    /// The event's type and preview, from one parse of the body.
    fn shown_body(&self) -> (String, String) {
        let event = serde_json::from_str::<serde_json::Value>(&self.body).ok();
        let text = |pointer: &str| {
            event
                .as_ref()
                .and_then(|e| e.pointer(pointer))
                .and_then(|v| v.as_str())
        };
        let kind = text("/type").unwrap_or_default().to_owned();
        let preview = if self.unreadable {
            String::new()
        } else {
            text("/data/content")
                .map(|c| c.chars().take(PREVIEW_CHARS).collect())
                .unwrap_or_default()
        };
        (kind, preview)
    }

    /// The target as shown: without query or user info.
    pub fn shown_target(&self) -> String {
        match crate::delivery::targets::parse_target(&self.target, &|_| true) {
            Ok(d) => delivery::redact(&d),
            Err(_) if self.unreadable => "<unreadable queue message>".to_owned(),
            Err(_) => "<unparseable target>".to_owned(),
        }
    }

    /// What `GET /admin/dead-letters` shows: of the body only its type and a message's text, the
    /// target without query or user info, times in RFC 3339.
    pub fn summary(&self) -> serde_json::Value {
        let (kind, preview) = self.shown_body();
        let mut summary = serde_json::json!({
            "id": self.id,
            "account": self.account,
            "type": kind,
            "target": self.shown_target(),
            "preview": preview,
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

/// One page of the dead letters under `prefix` from `cursor`, with the next page's cursor: read
/// with their records in one store operation (one request to an account's object, whatever the
/// page's size).
pub async fn page<S: Store>(
    store: &S,
    prefix: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<String>), StoreError> {
    let page = store.read_page(prefix, cursor, limit).await?;
    let out = page
        .entries
        .into_iter()
        .map(|(key, text)| {
            let read = match text {
                Ok(text) => serde_json::from_str::<DeadLetter>(&text)
                    .map_err(|e| format!("unreadable dead letter record: {e}")),
                Err(e) => Err(format!("dead letter record not read: {e}")),
            };
            (key, read)
        })
        .collect();
    Ok((out, page.cursor))
}

/// Whether `key` is one a relay before the objects wrote.
fn is_legacy_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return false;
    };
    match rest.split(':').collect::<Vec<_>>().as_slice() {
        ["~unreadable", id] => crate::event::is_event_id(id),
        [id, hash] => crate::event::is_event_id(id) && is_target_hash(hash),
        _ => false,
    }
}

/// Moves up to `limit` dead letters a relay before the objects kept in WECHAT_KV into their
/// accounts' objects: each written there first, then deleted from KV (a crash in between leaves
/// it in both; the next import writes the same record again). Answers how many it moved, and
/// whether any are left; a record that cannot be read stays where it is, logged.
pub async fn import_legacy<S: Store>(store: &S, limit: usize) -> Result<(usize, bool), StoreError> {
    let mut moved = 0;
    for legacy in LEGACY_PREFIXES {
        // Past the records that stay (unreadable ones), a page at a time.
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_page(legacy, cursor.as_deref(), limit).await?;
            moved += import_keys(store, &page.keys).await?;
            match page.cursor {
                Some(_) if moved >= limit => return Ok((moved, true)),
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok((moved, false))
}

async fn import_keys<S: Store>(store: &S, keys: &[String]) -> Result<usize, StoreError> {
    let mut moved = 0;
    // Only the keys relays before the objects wrote: `dead:<event id>:<hash>` and
    // `dead:~unreadable:<id>` (an account named `evt_…` has keys under the same prefix).
    for old in keys.iter().filter(|k| is_legacy_key(k)) {
        let Some(text) = store.get(old).await? else {
            continue;
        };
        let letter = match serde_json::from_str::<DeadLetter>(&text) {
            Ok(l) if l.unreadable || crate::account::is_valid_name(&l.account) => l,
            Ok(_) | Err(_) => {
                log::error!(key = old.as_str(); "dead letter in WECHAT_KV not imported: unreadable or of no account; it stays in WECHAT_KV");
                continue;
            }
        };
        // Never over a letter the object holds now (a stale KV listing of one already moved).
        let record = serde_json::to_string(&letter).map_err(|e| StoreError(e.to_string()))?;
        store
            .put_if(&letter.key(), &record, None, Some(TTL_SECS))
            .await?;
        store.delete(old).await?;
        moved += 1;
    }
    Ok(moved)
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
    fn keys_are_per_account_event_and_target() {
        let a = letter("https://a.example/x");
        let b = letter("https://b.example/x");
        assert_ne!(a.key(), b.key());
        assert!(is_key(&a.key()));
        assert!(a.key().starts_with(&format!("dead:default:{ID}:")));
        // The keys relays before the objects wrote are still removable by a replay's job.
        assert!(is_key(&format!("dead:{ID}:aabbccdd")));
        for bad in [
            "dead:",
            "dead:evt_1:aabbccdd",
            &format!("dead:{ID}:xyz"),
            &format!("dead:{ID}"),
            &format!("dead:Bad:{ID}:aabbccdd"),
            &format!("dead:~relay:{ID}:aabbccdd"),
            &format!("dead:default:{ID}:aabbccdd:00"),
            "credential:default:access_token",
        ] {
            assert!(!is_key(bad), "{bad}");
        }
        let raw = DeadLetter::unreadable("{oops", "not json", 1);
        assert!(raw.key().starts_with("dead:~relay:"));
        assert!(!is_key(&raw.key()), "never replayed");
        assert_eq!(a.event_type(), "");
        let mut typed = a.clone();
        typed.body = r#"{"type":"message.text"}"#.into();
        assert_eq!(typed.summary()["type"], "message.text");
        assert_eq!(typed.preview(), "", "only a message's text");
        typed.body = format!(
            r#"{{"type":"text","data":{{"content":"{}"}}}}"#,
            "长".repeat(300)
        );
        assert_eq!(typed.preview(), "长".repeat(PREVIEW_CHARS));
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
        store.insert(&format!("dead:default:{ID}:00000000"), "not json");
        assert_eq!(
            store.expiry_of(&a.key()),
            Some(1_800_000_000_000 + TTL_SECS * 1000)
        );
        let all_of_default = prefix("default", None);
        let (all, cursor) = clock.run(page(&store, &all_of_default, None, 100)).unwrap();
        assert_eq!(cursor, None);
        // The unreadable record is shown as such, not skipped.
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().filter(|(_, r)| r.is_err()).count(), 1);
        let one_event = prefix("default", Some(ID));
        assert_eq!(
            clock
                .run(page(&store, &one_event, None, 100))
                .unwrap()
                .0
                .len(),
            3
        );
        let other = prefix("default", Some("evt_ffffffffffffffffffffffffffffffff"));
        assert!(clock
            .run(page(&store, &other, None, 100))
            .unwrap()
            .0
            .is_empty());
        assert!(clock
            .run(page(&store, &prefix("shop", None), None, 100))
            .unwrap()
            .0
            .is_empty());
        assert_eq!(clock.run(store.count(&all_of_default)).unwrap(), 3);
        let (first, cursor) = clock.run(page(&store, &all_of_default, None, 2)).unwrap();
        let (rest, last) = clock
            .run(page(&store, &all_of_default, cursor.as_deref(), 2))
            .unwrap();
        assert_eq!((first.len(), rest.len(), last), (2, 1, None));
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

    #[test]
    fn legacy_dead_letters_move_into_their_accounts() {
        let clock = FakeClock::at(1_800_000_000_000);
        let store = MemoryStore::new(&clock);
        let mut shop = letter("https://a.example/x");
        shop.account = "shop".into();
        let raw = DeadLetter::unreadable("{oops", "not json", 1);
        let legacy_key = |l: &DeadLetter| {
            if l.unreadable {
                format!("dead:~unreadable:{}", l.id)
            } else {
                let new = l.key();
                let hash = new.rsplit(':').next().unwrap().to_owned();
                format!("dead:{}:{hash}", l.id)
            }
        };
        for l in [&shop, &raw] {
            store.insert(&legacy_key(l), &serde_json::to_string(l).unwrap());
        }
        store.insert(&format!("dead:{ID}:00000000"), "not json");
        let (moved, more) = clock.run(import_legacy(&store, 50)).unwrap();
        assert_eq!((moved, more), (2, false));
        assert!(clock.run(store.get(&legacy_key(&shop))).unwrap().is_none());
        assert!(clock.run(store.get(&legacy_key(&raw))).unwrap().is_none());
        let moved_shop = clock.run(store.get(&shop.key())).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<DeadLetter>(&moved_shop).unwrap(),
            shop
        );
        assert!(clock.run(store.get(&raw.key())).unwrap().is_some());
        // What cannot be read stays for a person, and is not moved again and again.
        assert!(clock
            .run(store.get(&format!("dead:{ID}:00000000")))
            .unwrap()
            .is_some());
        assert_eq!(clock.run(import_legacy(&store, 50)).unwrap(), (0, false));
        // An account named evt_… has keys under the legacy prefix: they are not legacy ones.
        let mut evt = letter("https://a.example/evt");
        evt.account = "evt_shop".into();
        clock.run(put(&store, &evt)).unwrap();
        assert_eq!(clock.run(import_legacy(&store, 50)).unwrap(), (0, false));
        assert!(clock.run(store.get(&evt.key())).unwrap().is_some());
        // A stale copy in KV never overwrites the letter the object holds now.
        let mut newer = shop.clone();
        newer.attempts = 99;
        clock.run(put(&store, &newer)).unwrap();
        store.insert(&legacy_key(&shop), &serde_json::to_string(&shop).unwrap());
        assert_eq!(clock.run(import_legacy(&store, 50)).unwrap(), (1, false));
        let kept: DeadLetter =
            serde_json::from_str(&clock.run(store.get(&shop.key())).unwrap().unwrap()).unwrap();
        assert_eq!(kept.attempts, 99);
        // A page at a time, past what stays.
        for n in 0..5u32 {
            let mut l = letter(&format!("https://a.example/{n}"));
            l.account = "shop".into();
            store.insert(&legacy_key(&l), &serde_json::to_string(&l).unwrap());
        }
        let mut total = 0;
        for call in 0.. {
            assert!(call < 5, "never done");
            let (moved, more) = clock.run(import_legacy(&store, 2)).unwrap();
            assert!(moved <= 3, "a page and the rest of the next at most");
            total += moved;
            if !more {
                break;
            }
        }
        assert_eq!(total, 5);
        assert_eq!(clock.run(store.count(&prefix("shop", None))).unwrap(), 6);
    }
}
