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
//! Where each rule lives:
//!
//! - [`routes`]: which path and method reach which route, error format per route, route keys.
//! - [`auth`]: bearer keys.
//! - [`config`], [`accounts`]: the settings, each validated on its own; each account's own.
//! - [`callback`]: the inbound pipeline (verify, decrypt, parse, normalize) and its parts:
//!   [`signature`], [`crypto`], [`xml`] (and WeChat's JSON format), [`event`].
//! - [`reply`]: passive reply XML and the safe-mode envelope.
//! - [`delivery`], [`webhook`]: delivering events to webhooks, signed; outcomes and retries.
//! - [`credentials`]: access tokens and JS-SDK tickets per account; [`access_token`]: WeChat's
//!   token requests and answers; [`jssdk`]: `wx.config`; [`passthrough`]: `/api/*`;
//!   [`api_error`]: WeChat's errcodes, hints and statuses.
//! - [`error`]: one error enum; statuses, codes and rendering in one place.

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
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod dead_letters;
pub mod delivery;
pub mod error;
pub mod event;
pub mod jobs;
pub mod jssdk;
pub mod passthrough;
pub mod ports;
pub mod relay;
pub mod reply;
pub mod routes;
pub mod routing;
pub mod signature;
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
pub use credentials::{Credentials, Memory};
pub use error::{Error, Format};
pub use ports::{
    Cipher, Clock, Destination, FetchError, Http, HttpAnswer, HttpRequest, Page, Queue,
    SoftwareCipher, Store, StoreError,
};
pub use relay::{Answer, Relay, Verdict};
pub use routes::{dispatch, Incoming, Method, Route};
