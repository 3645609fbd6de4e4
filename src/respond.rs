//! Turning errors into responses: the one place where a failure becomes a status and a body.

use wechat_relay_core::api_error::ApiError;
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

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Core(CoreError::Api(e))
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure::Runtime(e)
    }
}

/// Routes whose clients are programs that read JSON (the token service) get JSON errors;
/// WeChat's callback routes get a short plain-text reason.
fn wants_json(path: &str) -> bool {
    path == "/token"
        || path.starts_with("/token/")
        || path.starts_with("/jsapi/")
        || path.starts_with("/api/")
}

/// The response for a route's result; failures are logged with their reason.
pub fn finish(path: &str, result: Result<Response, Failure>) -> worker::Result<Response> {
    let failure = match result {
        Ok(resp) => return Ok(resp),
        Err(f) => f,
    };
    let error = match failure {
        Failure::Core(e) => e,
        Failure::MethodNotAllowed(allow) => {
            let mut resp = body(path, 405, &CoreError::MethodNotAllowed, None)?;
            resp.headers_mut().set("allow", allow)?;
            return Ok(resp);
        }
        // The runtime's message may quote internals: log it, answer generically.
        Failure::Runtime(e) => {
            log::error(
                "runtime failure",
                &[("path", path), ("error", &e.to_string())],
            );
            return plain(500, "internal error");
        }
    };
    let status = error.status();
    let reason = error.to_string();
    match &error {
        CoreError::NotFound => {}
        e if e.is_callers_fault() => log::warn(
            "request refused",
            &[
                ("path", path),
                ("status", &status.to_string()),
                ("reason", &reason),
            ],
        ),
        _ => log::error(
            "request failed",
            &[
                ("path", path),
                ("status", &status.to_string()),
                ("reason", &reason),
            ],
        ),
    }
    let api = match &error {
        CoreError::Api(api) => Some(api),
        _ => None,
    };
    let mut resp = body(path, status, &error, api)?;
    if let Some(seconds) = api.and_then(|a| a.retry_after()) {
        resp.headers_mut()
            .set("retry-after", &seconds.to_string())?;
    }
    if matches!(error, CoreError::Unauthorized) {
        resp.headers_mut().set("www-authenticate", "Bearer")?;
    }
    Ok(resp)
}

fn body(
    path: &str,
    status: u16,
    error: &CoreError,
    api: Option<&ApiError>,
) -> worker::Result<Response> {
    if !wants_json(path) {
        return plain(status, &error.to_string());
    }
    let value = match api {
        Some(api) => {
            serde_json::to_value(api.body()).map_err(|e| worker::Error::RustError(e.to_string()))?
        }
        None => serde_json::json!({ "error": error_code(error), "message": error.to_string() }),
    };
    Ok(Response::from_json(&value)?.with_status(status))
}

/// A stable machine-readable name for each error.
fn error_code(error: &CoreError) -> &'static str {
    match error {
        CoreError::MissingParameter(_) | CoreError::MalformedParameter(_) => "bad_request",
        CoreError::BodyTooLarge => "body_too_large",
        CoreError::Unauthorized => "unauthorized",
        CoreError::NotFound => "not_found",
        CoreError::MethodNotAllowed => "method_not_allowed",
        CoreError::Config(_) => "configuration",
        CoreError::Api(_) => "wechat_error",
        _ => "bad_request",
    }
}

fn plain(status: u16, reason: &str) -> worker::Result<Response> {
    text(status, format!("{reason}\n"))
}

/// A `text/plain; charset=utf-8` response with exactly this body.
pub fn text(status: u16, body: String) -> worker::Result<Response> {
    let mut resp = Response::ok(body)?.with_status(status);
    resp.headers_mut()
        .set("content-type", "text/plain; charset=utf-8")?;
    Ok(resp)
}
