//! Outbound fetches with a time limit, and calls to WeChat's API (WECHAT_API_BASE) with failures mapped to [`ApiError`].

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::pin_mut;
use wechat_relay_core::access_token::ApiRequest;
use wechat_relay_core::api_error::{ApiError, BUSY};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

/// How long to wait for WeChat's response headers.
const TIMEOUT_MS: u64 = 10_000;
/// The pause before the one retry after errcode -1 ("system busy").
const BUSY_PAUSE_MS: u64 = 1_000;

/// Why a fetch produced no response.
pub enum FetchFailure {
    Network(String),
    Timeout,
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFailure::Network(e) => write!(f, "network error: {e}"),
            FetchFailure::Timeout => f.write_str("timeout"),
        }
    }
}

/// Sends a request and waits at most `timeout_ms` for the response headers; a late fetch is
/// aborted.
pub async fn fetch_with_timeout(
    request: Request,
    timeout_ms: u64,
) -> Result<Response, FetchFailure> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = fetch.send_with_signal(&signal);
    let timeout = Delay::from(Duration::from_millis(timeout_ms));
    pin_mut!(send);
    pin_mut!(timeout);
    match select(send, timeout).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(FetchFailure::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(FetchFailure::Timeout)
        }
    }
}

/// Sends a request to WeChat, waiting at most [`TIMEOUT_MS`] for the response.
pub async fn send(request: Request) -> Result<Response, ApiError> {
    fetch_with_timeout(request, TIMEOUT_MS)
        .await
        .map_err(|failure| match failure {
            FetchFailure::Timeout => {
                ApiError::Unreachable(format!("no answer within {} s", TIMEOUT_MS / 1000))
            }
            FetchFailure::Network(e) => ApiError::Unreachable(format!("network error: {e}")),
        })
}

fn build(req: &ApiRequest) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    if let Some(body) = &req.body {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.as_str().into()));
    } else {
        init.with_method(Method::Get);
    }
    Request::new_with_init(&req.url, &init)
}

/// Makes one API call and returns the body of a 2xx answer. errcode -1 is retried once after a
/// short pause; every other errcode is for the caller to read from the body.
pub async fn call(req: &ApiRequest) -> Result<Vec<u8>, ApiError> {
    let mut retried = false;
    loop {
        let request =
            build(req).map_err(|e| ApiError::BadResponse(format!("cannot build request: {e}")))?;
        let mut resp = send(request).await?;
        let status = resp.status_code();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(format!("reading the answer: {e}")))?;
        match status {
            200..=299 => {}
            // WeChat (or the fixed-IP proxy in front of it) is temporarily unavailable.
            500..=599 => return Err(ApiError::Unreachable(format!("HTTP {status}"))),
            _ => return Err(ApiError::BadResponse(format!("HTTP {status}"))),
        }
        let busy = matches!(
            wechat_relay_core::api_error::errcode_of(&body),
            Some(ApiError::WeChat { errcode: BUSY, .. })
        );
        if busy && !retried {
            retried = true;
            Delay::from(Duration::from_millis(BUSY_PAUSE_MS)).await;
            continue;
        }
        return Ok(body);
    }
}
