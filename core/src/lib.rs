//! The pure protocol core of wechat-relay: every rule of the product, and nothing of Workers.
//!
//! **In scope**: WeChat's signatures and AES scheme, parsing and normalizing callbacks, passive
//! replies, Standard Webhooks signing, settings and accounts, the route table, errors and their
//! statuses, the token service's flow (store, refresh, single flight, forced-refresh limit,
//! fallback, pass-through), and the delivery rules.
//!
//! **Out of scope**: storage, the network, clocks and randomness. Flows that need them are
//! generic over the small traits in [`ports`] ([`Clock`], [`Store`], [`Http`]) and
//! [`coordinator::Coordinator`]; the Worker shell implements those over Workers KV, `fetch`,
//! Durable Objects and the runtime's clock, and [`testing`] (tests and
//! the `testing` feature) implements them in memory, so every flow runs under `cargo test`.
//! Random bytes and the current time are passed in as values where a function needs them.
//!
//! Where each rule lives, layer by layer, lowest first. A module imports only from lower
//! layers or, inside its own folder, from files that do not import it back;
//! `core/tests/layers.rs` holds this list and fails on an upward import or a cycle.
//!
//! 1. `time` (seconds and their formats); [`settings`] (a named configuration error, secrets,
//!    the shared parsers every setting is built from).
//! 2. [`wire`]: WeChat's codecs, with no domain type: `signature` (SHA-1 signatures), `crypto`
//!    (EncodingAESKey, AES-CBC, the plaintext frame), `xml`, `json_body` (the JSON format).
//! 3. [`ports`] (the traits the shell implements, HTTP methods); [`account`] (an account's
//!    settings and message mode; in `account/kind.rs` every fact that differs by account kind).
//! 4. [`error`]: the one HTTP-facing error (statuses, codes, rendering), with WeChat's errcodes
//!    and their hints in `error/api_error.rs`.
//! 5. [`event`]: normalization and event ids; the field tables in `event/fields.rs`;
//!    [`coordinator`]: an account object's rules (callback claims, plaintext nonces, their
//!    storage in minute buckets) over the synchronous `Rows` port, and the `Coordinator` port
//!    the Worker asks it through.
//! 6. [`delivery`] (targets from FORWARD_URLS and FORWARD_ROUTES, attempts and outcomes, queue
//!    jobs and their schedule, the webhook signature, dead letters) and [`token`] (the token
//!    service: credentials, WeChat's token requests, a platform's verify ticket, single flight,
//!    upstream calls, the JS-SDK signature, the `/api/*` pass-through).
//! 7. [`config`]: the aggregate of every setting.
//! 8. [`callback`] (verify, decrypt, parse; passive replies in `callback/reply.rs`) and
//!    [`component`] (third-party platforms: authorizers, the code exchange, links, the release
//!    check, each its own file).
//! 9. [`http`]: the route table and the bearer keys.
//! 10. [`relay`]: the flows over the ports, one file per flow (intake, claims, pushes, replies,
//!     tokens, the queue consumers, admin).
//!
//! Where a change goes:
//! - a new event field: one line in `event/fields.rs`, a sample pair under `tests/samples` and
//!   its entry in the event schema;
//! - a new account kind: `account/kind.rs` (every per-kind fact is a method of `Kind`), then its
//!   settings in `account/mod.rs`;
//! - a delivery rule: `delivery/` (`mod.rs` for attempts, `jobs.rs` for the schedule);
//! - a route: `http/routes.rs` and its flow in `relay/`;
//! - a setting: `config.rs`, or `account/mod.rs` for a per-account one, built from
//!   `settings.rs`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod account;
pub mod callback;
pub mod component;
pub mod config;
pub mod coordinator;
pub mod delivery;
pub mod error;
pub mod event;
pub mod http;
pub mod ports;
pub mod relay;
pub mod settings;
pub mod token;
pub mod wire;

mod time;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use account::Account;
pub use config::Config;
pub use error::{Error, Format};
pub use http::routes::{dispatch, Incoming, Route};
pub use ports::{
    Cipher, Clock, Destination, Entries, FetchError, Http, HttpAnswer, HttpRequest, Method, Page,
    Queue, QueueError, SoftwareCipher, Store, StoreError,
};
pub use relay::{Answer, DeadLetterQuery, ObjectPorts, Relay, Verdict};
pub use token::{Credentials, Memory};
