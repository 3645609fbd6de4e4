//! Calls to WeChat's server API: the time limit, the one retry after errcode -1 ("system busy"),
//! and what an HTTP status means. Every other errcode is for the caller to read from the body.

use crate::error::api_error::{errcode_of, ApiError, BUSY};
use crate::ports::{Clock, FetchError, Http, HttpAnswer, HttpRequest};

/// How long to wait for WeChat's response headers.
pub const TIMEOUT_MS: u64 = 10_000;
/// The pause before the one retry after errcode -1.
pub const BUSY_PAUSE_MS: u64 = 1_000;

/// What a fetch that got no answer means for a WeChat API call.
pub fn unreachable(failure: FetchError) -> ApiError {
    match failure {
        FetchError::Timeout => {
            ApiError::Unreachable(format!("no answer within {} s", TIMEOUT_MS / 1000))
        }
        FetchError::Network(e) => ApiError::Unreachable(format!("network error: {e}")),
    }
}

/// Sends one request to WeChat and returns the unread answer; only a missing answer fails.
pub async fn send<H: Http>(http: &H, request: &HttpRequest) -> Result<H::Answer, ApiError> {
    http.send(request, TIMEOUT_MS).await.map_err(unreachable)
}

/// Makes one API call and returns the body of a 2xx answer. A 5xx means WeChat (or the fixed-IP
/// proxy in front of it) is unavailable; any other non-2xx is not WeChat's API at all.
pub async fn call<C: Clock, H: Http>(
    clock: &C,
    http: &H,
    request: &HttpRequest,
) -> Result<Vec<u8>, ApiError> {
    let mut retried = false;
    loop {
        let answer = send(http, request).await?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(format!("reading the answer: {e}")))?;
        match status {
            200..=299 => {}
            500..=599 => return Err(ApiError::Unreachable(format!("HTTP {status}"))),
            _ => return Err(ApiError::BadResponse(format!("HTTP {status}"))),
        }
        let busy = matches!(
            errcode_of(&body),
            Some(ApiError::WeChat { errcode: BUSY, .. })
        );
        if busy && !retried {
            retried = true;
            clock.sleep(BUSY_PAUSE_MS).await;
            continue;
        }
        return Ok(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeAnswer, FakeClock, FakeHttp};
    use std::cell::Cell;
    use std::rc::Rc;

    fn req() -> HttpRequest {
        HttpRequest::get("https://api.test/cgi-bin/x".into())
    }

    #[test]
    fn busy_is_retried_once_after_a_pause() {
        let clock = FakeClock::at(0);
        let n = Rc::new(Cell::new(0));
        let m = n.clone();
        let http = FakeHttp::new(&clock, move |_| {
            m.set(m.get() + 1);
            Ok(FakeAnswer::json(if m.get() == 1 {
                serde_json::json!({"errcode": -1, "errmsg": "busy"})
            } else {
                serde_json::json!({"ok": true})
            }))
        });
        let body = clock.run(call(&clock, &http, &req())).unwrap();
        assert_eq!(body, br#"{"ok":true}"#);
        let seen = http.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].at_ms - seen[0].at_ms, BUSY_PAUSE_MS);
        // A second -1 is the caller's to read.
        n.set(0);
        http.set_handler(|_| {
            Ok(FakeAnswer::json(
                serde_json::json!({"errcode": -1, "errmsg": "busy"}),
            ))
        });
        let body = clock.run(call(&clock, &http, &req())).unwrap();
        assert!(matches!(
            errcode_of(&body),
            Some(ApiError::WeChat { errcode: -1, .. })
        ));
    }

    #[test]
    fn statuses_and_failures() {
        let clock = FakeClock::at(0);
        let http = FakeHttp::new(&clock, |_| Ok(FakeAnswer::status(502)));
        assert!(matches!(
            clock.run(call(&clock, &http, &req())),
            Err(ApiError::Unreachable(m)) if m == "HTTP 502"
        ));
        http.set_handler(|_| Ok(FakeAnswer::status(404)));
        assert!(matches!(
            clock.run(call(&clock, &http, &req())),
            Err(ApiError::BadResponse(_))
        ));
        http.set_handler(|_| Err(FetchError::Network("refused".into())));
        assert!(matches!(
            clock.run(call(&clock, &http, &req())),
            Err(ApiError::Unreachable(_))
        ));
        http.set_handler(|_| Ok(FakeAnswer::status(200)));
        http.delay_ms.set(TIMEOUT_MS + 1);
        let err = clock.run(call(&clock, &http, &req())).unwrap_err();
        assert_eq!(err, ApiError::Unreachable("no answer within 10 s".into()));
    }
}
