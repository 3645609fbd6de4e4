//! The pure protocol core of wechat-relay: every rule of the product, and nothing of Workers.
//!
//! **In scope**: WeChat's signatures and AES scheme, parsing and normalizing callbacks, passive
//! replies, Standard Webhooks signing, settings and accounts, the route table, errors and their
//! statuses, the token service's flow (store, refresh, single flight, forced-refresh limit,
//! fallback, pass-through), and the delivery rules.
//!
//! **Out of scope**: storage, the network, clocks and randomness. Flows that need them are
//! generic over the small traits in [`ports`] ([`Clock`], [`Store`], [`Http`]); the Worker shell
//! implements those over Workers KV, `fetch` and the runtime's clock, and [`testing`] (tests and
//! the `testing` feature) implements them in memory, so every flow runs under `cargo test`.
//! Random bytes and the current time are passed in as values where a function needs them.
//!
//! Where each rule lives, layer by layer, lowest first (a module imports only from lower layers;
//! `core/tests/layers.rs` holds the list and fails on an upward import or a cycle):
//!
//! 1. Leaves: `time`; [`settings`] (a named configuration error, secrets, shared parsers);
//!    [`signature`]; [`xml`]; [`kind`] (what differs by account kind and token endpoint).
//! 2. [`crypto`] (EncodingAESKey, AES-CBC), `json_body` (WeChat's JSON format), [`webhook`]
//!    (Standard Webhooks), [`api_error`] (WeChat's errcodes, hints, statuses).
//! 3. [`ports`] (the traits the shell implements, HTTP methods); [`error`] (the one HTTP-facing
//!    error: statuses, codes, rendering).
//! 4. [`event`] (normalization, event ids), [`delivery`] (attempts, outcomes, inline retries),
//!    [`reply`] (passive replies), [`jssdk`], [`auth`], `upstream`, `single_flight`.
//! 5. [`accounts`] (each account's settings and message mode).
//! 6. [`targets`] (FORWARD_ROUTES targets), [`access_token`] (WeChat's token requests and
//!    answers), [`component_state`] (a platform's verify ticket).
//! 7. [`dead_letters`]; 8. [`jobs`] (queue jobs, the retry schedule and the queue's retention).
//! 9. [`config`] (the aggregate of every setting).
//! 10. [`callback`] (verify, decrypt, parse, normalize), [`token_service`] (the token service).
//! 11. [`passthrough`] (`/api/*`). 12. [`routes`] (the route table), [`component`] (platforms).
//! 13. [`relay`]: the flows over the ports (intake, replies, the queue consumers in
//!     `relay/queue.rs`, the admin routes in `relay/admin.rs`).
//!
//! A new event field: `event.rs` (the number tables) and a sample pair under `tests/samples`.
//! A new account kind: `kind.rs`, then `accounts.rs`. A delivery rule: `delivery.rs` or `jobs.rs`.
//! A route: `routes.rs` and its flow in `relay/`. A setting: `config.rs` (or `accounts.rs` for a
//! per-account one), built from `settings.rs`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod access_token;
pub mod accounts;
pub mod api_error;
pub mod auth;
pub mod callback;
pub mod component;
pub mod component_state;
pub mod config;
pub mod crypto;
pub mod dead_letters;
pub mod delivery;
pub mod error;
pub mod event;
pub mod jobs;
pub mod jssdk;
pub mod kind;
pub mod passthrough;
pub mod ports;
pub mod relay;
pub mod reply;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod targets;
pub mod token_service;
pub mod webhook;
pub mod xml;

mod json_body;
mod single_flight;
mod time;
mod upstream;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use accounts::Account;
pub use config::Config;
pub use error::{Error, Format};
pub use ports::{
    Cipher, Clock, Destination, FetchError, Http, HttpAnswer, HttpRequest, Method, Page, Queue,
    SoftwareCipher, Store, StoreError,
};
pub use relay::{Answer, Relay, Verdict};
pub use routes::{dispatch, Incoming, Route};
pub use token_service::{Credentials, Memory};
