//! Turning errors into responses: the one place where a failure becomes a status and a body.

use wechat_relay_core::Error as CoreError;
use worker::Response;

use crate::log;

/// Everything a route can fail with: the core's typed errors, or the runtime's.
pub enum Failure {
    Core(CoreError),
    /// `405`, with the methods the route does serve.
    MethodNotAllowed(&'static str),
    /// The Workers runtime failed (reading the body, building a response): ours, 500.
    Runtime(worker::Error),
}

impl Failure {
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Failure::MethodNotAllowed(allow)
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Failure::Core(e)
    }
}

impl From<wechat_relay_core::config::ConfigError> for Failure {
    fn from(e: wechat_relay_core::config::ConfigError) -> Self {
        Failure::Core(CoreError::Config(e))
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// The response for a route's result; failures are logged with their reason.
pub fn finish(path: &str, result: Result<Response, Failure>) -> worker::Result<Response> {
    let failure = match result {
        Ok(resp) => return Ok(resp),
        Err(f) => f,
    };
    let (status, reason, allow) = match &failure {
        Failure::Core(e) => (e.status(), e.to_string(), None),
        Failure::MethodNotAllowed(allow) => {
            (405, CoreError::MethodNotAllowed.to_string(), Some(*allow))
        }
        // The runtime's message may quote internals: log it, answer generically.
        Failure::Runtime(e) => {
            log::error(
                "runtime failure",
                &[("path", path), ("error", &e.to_string())],
            );
            (500, "internal error".to_owned(), None)
        }
    };
    match &failure {
        Failure::Core(e) if !e.is_callers_fault() => log::error(
            "request failed",
            &[
                ("path", path),
                ("status", &status.to_string()),
                ("reason", &reason),
            ],
        ),
        Failure::Core(CoreError::NotFound) => {}
        Failure::Core(_) => log::warn(
            "request refused",
            &[
                ("path", path),
                ("status", &status.to_string()),
                ("reason", &reason),
            ],
        ),
        _ => {}
    }
    plain(status, &reason, allow)
}

fn plain(status: u16, reason: &str, allow: Option<&str>) -> worker::Result<Response> {
    let mut resp = Response::error(format!("{reason}\n"), status)?;
    resp.headers_mut()
        .set("content-type", "text/plain; charset=utf-8")?;
    if let Some(allow) = allow {
        resp.headers_mut().set("allow", allow)?;
    }
    Ok(resp)
}
