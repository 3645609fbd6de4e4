//! One coordinator per account: the place where everything that must be the same in every
//! Cloudflare location is decided (today: callback claims, plaintext nonces, and the access
//! token and JS-SDK ticket of every account that is not a third-party platform).
//!
//! The Worker asks an account's object one [`Request`] at a time and gets one [`Response`]
//! (JSON over the Durable Object stub's `fetch`). The object is [`AccountObject`]: the rules,
//! here, over a small synchronous storage port, [`Rows`] (the shell maps it onto the object's
//! SQLite; `testing` onto memory). The Worker's side of the conversation is the [`Coordinator`]
//! port, and `relay/intake.rs` is its one caller.
//!
//! **Claims.** Before anything else happens to a verified callback, its event id is claimed:
//! - [`Claimed::New`]: go on; the claim is in flight until [`Request::Settle`] reports the answer
//!   (or releases it, after a refused hand-off), or until [`IN_FLIGHT_BOUND_MS`] passes (the
//!   attempt died; WeChat's next retry is processed);
//! - [`Claimed::InFlight`]: another attempt is working on it; ask again until it settles;
//! - [`Claimed::Done`]: answered before; answer the same.
//!
//! In-flight claims are kept in the object's memory, done marks in its storage for
//! [`MARK_TTL_SECS`] (in minute buckets: about one row written per callback, none for a WeChat
//! retry; see `object.rs`). A claim is done only once its attempt reported that the callback
//! was handed over: an attempt that dies first leaves a claim that lapses, never a mark that
//! would answer WeChat's retries `success` for an event nobody has. An object evicted
//! while a claim is in flight forgets that claim, so a retry is processed again (a duplicate,
//! never a loss).
//!
//! **Credentials.** [`Request::Credential`], [`Request::Refresh`] and [`Request::RefreshAhead`]
//! run the token service inside the object, over the object's storage: one
//! upstream call at a time for every location, one writer for each token. `relay/object.rs`
//! answers them.
//!
//! **Platform state.** A third-party platform's records (verify ticket, component token,
//! merchants, exchanged codes) are kept by the platform's object, reached through
//! [`SharedStore`]: one consistent store with compare-and-set for every location.
//!
//! **Nonces.** In plaintext mode WeChat signs only (token, timestamp, nonce), so a URL seen
//! once could be posted again with any body. The claim then carries the pair and a hash of the
//! body, kept until the timestamp leaves the clock-skew window: the same pair with another body
//! is [`Claimed::Replayed`]; with the same body it is WeChat's retry.

#![allow(async_fn_in_trait)]

mod health;
mod object;
mod protocol;
mod shared;

pub use health::{Flush, Health, HealthBook, Hour, Noted, FLUSH_EVERY_MS, HEALTH_KEY, HOURS_KEPT};
pub use object::{AccountObject, Rows, RowsError, StoredBucket};
pub use protocol::*;
pub use shared::SharedStore;
