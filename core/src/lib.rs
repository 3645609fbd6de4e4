//! The pure protocol core of wechat-relay.
//!
//! Nothing here knows about Cloudflare Workers: no I/O, no clock, no randomness. Time and random
//! bytes are passed in by the caller, so every function is deterministic and testable natively.
//!
//! - [`signature`]: WeChat's SHA-1 signatures and constant-time comparison.
//! - [`crypto`]: the EncodingAESKey scheme (AES-256-CBC, PKCS#7 over 32-byte blocks).
//! - [`xml`]: a small, hostile-input-safe XML reader producing an element tree.
//! - [`json_body`]: WeChat's JSON message format, read into the same tree as XML.
//! - [`event`]: the normalized JSON event and its stable id.
//! - [`callback`]: the whole inbound pipeline (verify, decrypt, parse, normalize).
//! - [`reply`]: passive reply XML and its encrypted envelope.
//! - [`webhook`]: Standard Webhooks signing and verification.
//! - [`access_token`]: access tokens and JS-SDK tickets: requests, answers, refresh policy.
//! - [`api_error`]: WeChat API errcodes, their hints and statuses.
//! - [`jssdk`]: the JS-SDK `wx.config` signature.
//! - [`passthrough`]: which API paths `/api/<path>` may reach.
//! - [`config`]: the settings, parsed from environment bindings.
//! - [`error`]: one error enum, mapped to HTTP statuses in one place.

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
pub mod api_error;
pub mod callback;
pub mod config;
pub mod crypto;
pub mod error;
pub mod event;
pub mod json_body;
pub mod jssdk;
pub mod passthrough;
pub mod reply;
pub mod signature;
pub mod time;
pub mod webhook;
pub mod xml;

pub use error::Error;
