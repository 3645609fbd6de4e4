//! An account's health, as its object sees it: the last callback, callbacks and failed
//! deliveries per hour for the last [`HOURS_KEPT`] hours, and the last configuration or
//! upstream error. Counted in the object's memory and written to its storage at most once a
//! [`FLUSH_EVERY_MS`] (one row): the first change after a write is written at once, later ones
//! when the minute is over (at the next request, or the alarm the shell sets for it).
//!
//! A callback is counted when its claim is new (WeChat's retries are not callbacks); a failed
//! delivery when its dead letter is stored. Counts of the last minute are lost when the object is
//! evicted before they are written: these are a console's figures, not a ledger.

use std::cell::{Cell, RefCell};

use serde::{Deserialize, Serialize};

/// How many hours of counts are kept.
pub const HOURS_KEPT: usize = 48;
/// How often the counts are written at most.
pub const FLUSH_EVERY_MS: u64 = 60_000;
/// Where they are written, in the object's records.
pub const HEALTH_KEY: &str = "health:counts";
/// The longest error text kept.
const MAX_ERROR_CHARS: usize = 300;

const HOUR_MS: u64 = 3_600_000;

/// One hour's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hour {
    /// The hour's start, Unix ms.
    pub hour: u64,
    pub callbacks: u32,
    pub failures: u32,
}

/// What went wrong last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noted {
    /// Unix ms.
    pub at: u64,
    /// `config` or `upstream`.
    pub kind: String,
    /// Never a secret: the setting's name and the problem, or WeChat's code and message.
    pub message: String,
}

/// The counts, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Unix ms.
    pub last_callback_at: Option<u64>,
    /// Oldest first, only hours with a count, none older than [`HOURS_KEPT`].
    pub hours: Vec<Hour>,
    pub last_error: Option<Noted>,
}

impl Health {
    fn hour_mut(&mut self, now_ms: u64) -> Option<&mut Hour> {
        let hour = now_ms - now_ms % HOUR_MS;
        let oldest = hour.saturating_sub((HOURS_KEPT as u64 - 1) * HOUR_MS);
        self.hours.retain(|h| h.hour >= oldest && h.hour <= hour);
        if self.hours.last().map(|h| h.hour) != Some(hour) {
            self.hours.push(Hour {
                hour,
                callbacks: 0,
                failures: 0,
            });
        }
        self.hours.last_mut()
    }

    /// Every one of the last [`HOURS_KEPT`] hours, oldest first, zeros included.
    pub fn series(&self, now_ms: u64) -> Vec<Hour> {
        let hour = now_ms - now_ms % HOUR_MS;
        (0..HOURS_KEPT as u64)
            .rev()
            .map(|back| {
                let at = hour.saturating_sub(back * HOUR_MS);
                self.hours
                    .iter()
                    .find(|h| h.hour == at)
                    .copied()
                    .unwrap_or(Hour {
                        hour: at,
                        callbacks: 0,
                        failures: 0,
                    })
            })
            .collect()
    }
}

/// What the object keeps in memory between writes.
#[derive(Default)]
pub struct HealthBook {
    /// `None` until read from storage.
    health: RefCell<Option<Health>>,
    /// When the counts were last written (Unix ms; 0: never by this instance).
    written_at: Cell<u64>,
    /// Whether there is something not yet written.
    dirty: Cell<bool>,
}

/// What to do after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
    /// Write this record now.
    Now(String),
    /// Write at this time (Unix ms): the shell's alarm.
    At(u64),
    Nothing,
}

impl HealthBook {
    /// Whether the stored counts were read yet.
    pub fn is_loaded(&self) -> bool {
        self.health.borrow().is_some()
    }

    /// The stored record (or none, or an unreadable one: counted afresh).
    pub fn load(&self, stored: Option<&str>) {
        if self.is_loaded() {
            return;
        }
        let health = stored
            .and_then(|text| serde_json::from_str::<Health>(text).ok())
            .unwrap_or_default();
        *self.health.borrow_mut() = Some(health);
    }

    fn change(&self, f: impl FnOnce(&mut Health)) {
        let mut health = self.health.borrow_mut();
        f(health.get_or_insert_with(Health::default));
        self.dirty.set(true);
    }

    /// A new callback.
    pub fn callback(&self, now_ms: u64) {
        self.change(|h| {
            h.last_callback_at = Some(now_ms);
            if let Some(hour) = h.hour_mut(now_ms) {
                hour.callbacks = hour.callbacks.saturating_add(1);
            }
        });
    }

    /// A delivery that failed for good.
    pub fn failure(&self, now_ms: u64) {
        self.change(|h| {
            if let Some(hour) = h.hour_mut(now_ms) {
                hour.failures = hour.failures.saturating_add(1);
            }
        });
    }

    /// A configuration (`config`) or upstream (`upstream`) error.
    pub fn error(&self, now_ms: u64, kind: &str, message: &str) {
        let message: String = message.chars().take(MAX_ERROR_CHARS).collect();
        let same = self
            .health
            .borrow()
            .as_ref()
            .and_then(|h| h.last_error.as_ref())
            .is_some_and(|e| e.kind == kind && e.message == message);
        if same {
            // The same error again is no news worth a write.
            return;
        }
        self.change(|h| {
            h.last_error = Some(Noted {
                at: now_ms,
                kind: kind.to_owned(),
                message,
            })
        });
    }

    /// What to write, or when: at once when the last write is a minute old, else when it is.
    pub fn flush(&self, now_ms: u64) -> Flush {
        if !self.dirty.get() {
            return Flush::Nothing;
        }
        let due = self.written_at.get().saturating_add(FLUSH_EVERY_MS);
        if self.written_at.get() != 0 && now_ms < due {
            return Flush::At(due);
        }
        match self.health.borrow().as_ref().map(serde_json::to_string) {
            Some(Ok(text)) => {
                self.dirty.set(false);
                self.written_at.set(now_ms);
                Flush::Now(text)
            }
            _ => Flush::Nothing,
        }
    }

    /// A write that failed: the counts are written again at the next chance.
    pub fn not_written(&self) {
        self.dirty.set(true);
        self.written_at.set(0);
    }

    /// The counts as they are now.
    pub fn health(&self) -> Health {
        self.health.borrow().clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn counts_by_hour_for_two_days() {
        let book = HealthBook::default();
        book.load(None);
        book.callback(T);
        book.callback(T + 1);
        book.failure(T + 2);
        book.callback(T + HOUR_MS);
        let h = book.health();
        assert_eq!(h.last_callback_at, Some(T + HOUR_MS));
        let series = h.series(T + HOUR_MS);
        assert_eq!(series.len(), HOURS_KEPT);
        let last_two: Vec<(u32, u32)> = series
            .iter()
            .rev()
            .take(2)
            .map(|h| (h.callbacks, h.failures))
            .collect();
        assert_eq!(last_two, [(1, 0), (2, 1)]);
        assert!(series.windows(2).all(|w| w[1].hour == w[0].hour + HOUR_MS));
        // Two days later the old hours are gone.
        book.callback(T + 49 * HOUR_MS);
        let h = book.health();
        assert_eq!(h.hours.len(), 1);
        assert_eq!(
            h.series(T + 49 * HOUR_MS)
                .iter()
                .map(|h| h.callbacks)
                .sum::<u32>(),
            1
        );
    }

    #[test]
    fn written_at_most_once_a_minute() {
        let book = HealthBook::default();
        book.load(None);
        assert_eq!(book.flush(T), Flush::Nothing);
        book.callback(T);
        let Flush::Now(text) = book.flush(T) else {
            panic!("the first change is written at once");
        };
        assert_eq!(book.flush(T + 1), Flush::Nothing);
        book.callback(T + 1_000);
        book.callback(T + 2_000);
        assert_eq!(book.flush(T + 2_000), Flush::At(T + FLUSH_EVERY_MS));
        assert!(matches!(book.flush(T + FLUSH_EVERY_MS), Flush::Now(_)));
        // What was written is read back by an object started afresh.
        let again = HealthBook::default();
        again.load(Some(&text));
        assert_eq!(again.health().last_callback_at, Some(T));
        again.load(Some("{}"));
        assert_eq!(again.health().last_callback_at, Some(T), "loaded once");
        let broken = HealthBook::default();
        broken.load(Some("not json"));
        assert_eq!(broken.health(), Health::default());
        // A failed write is tried again at the next chance.
        book.callback(T + 70_000);
        assert!(matches!(book.flush(T + 200_000), Flush::Now(_)));
        book.not_written();
        assert!(matches!(book.flush(T + 200_001), Flush::Now(_)));
    }

    #[test]
    fn errors_are_kept_short_and_repeats_cost_nothing() {
        let book = HealthBook::default();
        book.load(None);
        book.error(T, "upstream", &"x".repeat(1_000));
        let noted = book.health().last_error.unwrap();
        assert_eq!(
            (noted.kind.as_str(), noted.message.len()),
            ("upstream", 300)
        );
        let _ = book.flush(T);
        book.error(T + 5, "upstream", &"x".repeat(1_000));
        assert_eq!(book.flush(T + FLUSH_EVERY_MS * 2), Flush::Nothing);
        book.error(T + 6, "config", "WECHAT_APP_SECRET: missing");
        assert_eq!(book.health().last_error.unwrap().kind, "config");
    }
}
