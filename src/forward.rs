//! Delivering one event to every webhook target, each independently, with retries and backoff
//! inside the `wait_until` budget (30 s after the answer to WeChat).

use std::time::Duration;

use futures_util::future::join_all;
use wechat_relay_core::webhook::{self, WebhookSecret};
use worker::{Date, Delay, Headers, Method, Request, RequestInit};

use crate::{log, upstream};

/// Attempts per target, and the pause before each retry.
const BACKOFF_MS: [u64; 3] = [500, 1_500, 4_500];
/// One attempt's limit. Four attempts and the pauses stay under the 30 s budget.
const ATTEMPT_TIMEOUT_MS: u64 = 5_000;

pub struct Delivery {
    pub id: String,
    pub body: Vec<u8>,
    pub targets: Vec<String>,
    pub secret: Option<WebhookSecret>,
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Worth another attempt: 5xx, 429, a network error or a timeout.
    Retryable(String),
    /// The receiver refused it (4xx other than 429): retrying will not help.
    Refused(u16),
}

pub async fn deliver(delivery: Delivery) {
    join_all(delivery.targets.iter().map(|t| deliver_to(&delivery, t))).await;
}

async fn deliver_to(delivery: &Delivery, target: &str) {
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        let status = match attempt_once(delivery, target).await {
            Outcome::Delivered => return,
            Outcome::Refused(code) => code.to_string(),
            Outcome::Retryable(why) => match BACKOFF_MS.get(attempt - 1) {
                Some(&pause) => {
                    Delay::from(Duration::from_millis(pause)).await;
                    continue;
                }
                None => why,
            },
        };
        log::error(
            "forward failed",
            &[
                ("event_id", &delivery.id),
                ("target", &log::redact_url(target)),
                ("status", &status),
                ("attempts", &attempt.to_string()),
            ],
        );
        return;
    }
}

async fn attempt_once(delivery: &Delivery, target: &str) -> Outcome {
    let request = match build_request(delivery, target) {
        Ok(r) => r,
        Err(e) => return Outcome::Retryable(format!("request: {e}")),
    };
    match upstream::fetch_with_timeout(request, ATTEMPT_TIMEOUT_MS).await {
        Ok(resp) => match resp.status_code() {
            200..=299 => Outcome::Delivered,
            code @ (429 | 500..=599) => Outcome::Retryable(code.to_string()),
            code => Outcome::Refused(code),
        },
        Err(failure) => Outcome::Retryable(failure.to_string()),
    }
}

fn build_request(delivery: &Delivery, target: &str) -> worker::Result<Request> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(
        "user-agent",
        concat!("wechat-relay/", env!("CARGO_PKG_VERSION")),
    )?;
    if let Some(secret) = &delivery.secret {
        let timestamp = Date::now().as_millis() / 1000;
        for (name, value) in webhook::headers(secret, &delivery.id, timestamp, &delivery.body) {
            headers.set(name, &value)?;
        }
    } else {
        headers.set("webhook-id", &delivery.id)?;
    }
    let body = js_sys::Uint8Array::from(delivery.body.as_slice());
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    Request::new_with_init(target, &init)
}
