//! Turning results into responses. What an error answers (status, headers, body) is decided in
//! the core ([`wechat_relay_core::Error::render`]); this only builds the `Response`.

use wechat_relay_core::config::ConfigError;
use wechat_relay_core::error::api_error::ApiError;
use wechat_relay_core::{Error, Format};
use worker::Response;

/// A route's failure: the core's error, with the runtime's errors as [`Error::Internal`].
pub struct Failure(pub Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure(Error::Config(e))
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(Error::Api(e))
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure(Error::Internal(e.to_string()))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure(Error::Internal(e.to_string()))
    }
}

/// The response for a route's result, with the route family's headers; a failure is logged and
/// rendered in the route's format.
pub fn finish(
    path: &str,
    format: Format,
    headers: &[(&str, &str)],
    result: Result<Response, Failure>,
) -> worker::Result<Response> {
    let mut resp = match result {
        Ok(resp) => resp,
        Err(Failure(e)) => rendered(path, format, e)?,
    };
    for (name, value) in headers {
        resp.headers_mut().set(name, value)?;
    }
    Ok(resp)
}

fn rendered(path: &str, format: Format, error: Error) -> worker::Result<Response> {
    error.log(path);
    let rendered = error.render(format);
    let mut resp = Response::ok(rendered.body)?.with_status(rendered.status);
    resp.headers_mut()
        .set("content-type", rendered.content_type)?;
    for (name, value) in &rendered.headers {
        resp.headers_mut().set(name, value)?;
    }
    Ok(resp)
}

/// A `text/plain; charset=utf-8` response with exactly this body.
pub fn text(status: u16, body: impl Into<String>) -> Result<Response, Failure> {
    typed(status, "text/plain; charset=utf-8", body.into())
}

/// A response with this status, content type and body.
pub fn typed(status: u16, content_type: &str, body: String) -> Result<Response, Failure> {
    let mut resp = Response::ok(body)?.with_status(status);
    resp.headers_mut().set("content-type", content_type)?;
    Ok(resp)
}

/// A JSON answer that must not be cached (it carries credentials).
pub fn json(value: &impl serde::Serialize) -> Result<Response, Failure> {
    let mut resp = Response::from_json(value)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// Bytes with a status and an optional content type, as received from upstream.
pub fn bytes(status: u16, content_type: Option<&str>, body: Vec<u8>) -> Result<Response, Failure> {
    let mut resp = Response::from_bytes(body)?.with_status(status);
    if let Some(ct) = content_type {
        resp.headers_mut().set("content-type", ct)?;
    }
    Ok(resp)
}
