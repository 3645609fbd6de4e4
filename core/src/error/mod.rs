//! One error type for the relay, split into the caller's fault (4xx), WeChat's (502/503) and
//! ours (500). Each error knows its HTTP status, its stable machine-readable code and its
//! headers, and renders itself as text (WeChat's routes) or JSON (the programs' routes): here and
//! nowhere else.

pub mod api_error;

use crate::error::api_error::ApiError;
use crate::ports::QueueError;
use crate::settings::ConfigError;
use crate::wire::xml::XmlError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // --- the caller's fault ---
    /// A required query parameter is absent.
    MissingParameter(&'static str),
    /// A query parameter is present but unusable (e.g. a non-numeric timestamp).
    MalformedParameter(&'static str),
    /// The body is larger than the route accepts (`limit` bytes).
    BodyTooLarge { limit: usize },
    /// The body is empty, not XML (or JSON), malformed or hostile.
    Xml(XmlError),
    /// A program's JSON request body is unusable; the message says how.
    BadRequest(&'static str),
    /// The message lacks an element every callback carries.
    MissingElement(&'static str),
    /// An element is present but unusable (e.g. a non-numeric CreateTime).
    MalformedElement(&'static str),
    /// `signature` or `msg_signature` does not match.
    BadSignature,
    /// The timestamp is outside the accepted clock-skew window.
    StaleTimestamp,
    /// The ciphertext could not be opened: base64, length, padding, layout or AppID. One
    /// variant on purpose, so the answer never tells which step failed.
    Decryption,
    /// The message is for another WeCom app (its AgentID is not the account's).
    WrongRecipient,
    /// The request's method is not served on this route; `allow` lists the ones that are.
    MethodNotAllowed { allow: &'static str },
    /// No such route (or a route that is switched off).
    NotFound,
    /// The route exists, but not for this kind of account.
    NotAvailable(&'static str),
    /// No authorizer of that AppID is stored (never authorized, or revoked).
    UnknownAuthorizer,
    /// The bearer key is missing or wrong.
    Unauthorized,
    /// A plaintext callback's (timestamp, nonce) was seen with another body: a captured URL
    /// posted again.
    Replayed,

    // --- WeChat's ---
    /// WeChat's API failed or could not be reached.
    Api(ApiError),

    // --- ours ---
    /// A setting is missing or malformed.
    Config(ConfigError),
    /// The delivery queue refused the event; WeChat retries, and nothing was marked as seen.
    QueueUnavailable(QueueError),
    /// Another attempt at the same callback is still being processed after the wait a retry
    /// may take; WeChat retries, and the next retry gets that attempt's answer.
    StillInFlight,
    /// Today's forced refreshes of the account's token are spent; `current` is the stored
    /// token (value, expiry) while valid.
    RefreshBudgetSpent {
        resets_at: u64,
        retry_after_secs: u64,
        current: Option<(String, u64)>,
    },
    /// A third-party platform has no component_verify_ticket yet (WeChat pushes one every 10
    /// minutes; the relay has asked it to restart the push).
    NoVerifyTicket,
    /// An error an account's object answered, passed on as it rendered it (JSON).
    Relayed {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// The runtime failed (reading a body, building a response). The detail is logged, never
    /// shown.
    Internal(String),
}

/// How a route answers errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A short `text/plain` reason: WeChat's callback routes and the health check.
    Text,
    /// `{"error": code, "message": ...}`: the routes that programs call.
    Json,
}

/// An error response, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Error {
    /// The HTTP status for this error. The single place where errors become statuses.
    pub fn status(&self) -> u16 {
        match self {
            Error::MissingParameter(_)
            | Error::MalformedParameter(_)
            | Error::Xml(_)
            | Error::BadRequest(_)
            | Error::MissingElement(_)
            | Error::MalformedElement(_) => 400,
            Error::BadSignature
            | Error::StaleTimestamp
            | Error::Decryption
            | Error::WrongRecipient
            | Error::Replayed
            | Error::Unauthorized => 401,
            Error::NotFound | Error::NotAvailable(_) | Error::UnknownAuthorizer => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::RefreshBudgetSpent { .. } => 429,
            Error::BodyTooLarge { .. } => 413,
            Error::Config(_) | Error::Internal(_) => 500,
            Error::QueueUnavailable(_) | Error::StillInFlight | Error::NoVerifyTicket => 503,
            Error::Api(e) => e.status(),
            Error::Relayed { status, .. } => *status,
        }
    }

    /// A stable machine-readable name, the `error` field of JSON answers.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingParameter(_) => "missing_parameter",
            Error::MalformedParameter(_) => "malformed_parameter",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::Xml(_) => "malformed_body",
            Error::BadRequest(_) => "bad_request",
            Error::MissingElement(_) => "missing_element",
            Error::MalformedElement(_) => "malformed_element",
            Error::BadSignature => "bad_signature",
            Error::StaleTimestamp => "stale_timestamp",
            Error::Decryption => "decryption_failed",
            Error::WrongRecipient => "wrong_recipient",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::NotFound => "not_found",
            Error::NotAvailable(_) => "not_available",
            Error::UnknownAuthorizer => "unknown_authorizer",
            Error::Unauthorized => "unauthorized",
            Error::Replayed => "replayed",
            Error::StillInFlight => "in_flight",
            Error::RefreshBudgetSpent { .. } => "refresh_budget_spent",
            Error::Api(e) => e.code(),
            Error::Config(_) => "configuration",
            Error::QueueUnavailable(_) => "queue_unavailable",
            Error::NoVerifyTicket => "no_verify_ticket",
            Error::Internal(_) => "internal",
            Error::Relayed { .. } => "relayed",
        }
    }

    /// Whether the request was at fault (4xx), as opposed to the relay's setup or WeChat (5xx).
    pub fn is_callers_fault(&self) -> bool {
        self.status() < 500
    }

    /// The headers this error's answer carries.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::MethodNotAllowed { allow } => vec![("allow", (*allow).to_owned())],
            Error::Unauthorized => vec![("www-authenticate", "Bearer".to_owned())],
            Error::Api(api) => api
                .retry_after()
                .map(|s| vec![("retry-after", s.to_string())])
                .unwrap_or_default(),
            Error::QueueUnavailable(_) | Error::StillInFlight => {
                vec![("retry-after", "5".to_owned())]
            }
            Error::NoVerifyTicket => vec![("retry-after", "600".to_owned())],
            Error::RefreshBudgetSpent {
                retry_after_secs, ..
            } => vec![("retry-after", retry_after_secs.to_string())],
            Error::Relayed {
                retry_after: Some(after),
                ..
            } => vec![("retry-after", after.clone())],
            _ => Vec::new(),
        }
    }

    /// What may be shown to the caller: internals are not.
    fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// The answer for this error in a route's format.
    pub fn render(&self, format: Format) -> Rendered {
        if let Error::Relayed { status, body, .. } = self {
            return Rendered {
                status: *status,
                content_type: "application/json",
                headers: self.headers(),
                body: body.clone(),
            };
        }
        let (content_type, body) = match format {
            Format::Text => (
                "text/plain; charset=utf-8",
                format!("{}\n", self.public_message()),
            ),
            Format::Json => {
                let value = match self {
                    Error::Api(api) => serde_json::to_value(api.body()).unwrap_or_default(),
                    Error::RefreshBudgetSpent {
                        resets_at, current, ..
                    } => serde_json::json!({
                        "error": self.code(),
                        "message": self.public_message(),
                        "resets_at": resets_at,
                        "access_token": current.as_ref().map(|c| c.0.as_str()),
                        "expires_at": current.as_ref().map(|c| c.1),
                    }),
                    other => serde_json::json!({
                        "error": other.code(),
                        "message": other.public_message(),
                    }),
                };
                ("application/json", value.to_string())
            }
        };
        Rendered {
            status: self.status(),
            content_type,
            headers: self.headers(),
            body,
        }
    }

    /// Logs a failed request: the caller's faults as warnings (404 quietly), ours and
    /// WeChat's as errors.
    pub fn log(&self, path: &str) {
        let status = self.status();
        match self {
            Error::NotFound => {}
            Error::Internal(detail) => {
                log::error!(path = path, status = status, error = detail.as_str(); "runtime failure")
            }
            e if e.is_callers_fault() => {
                log::warn!(path = path, status = status, reason = e.to_string(); "request refused")
            }
            e => {
                log::error!(path = path, status = status, reason = e.to_string(); "request failed")
            }
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::MissingParameter(p) => write!(f, "missing query parameter {p}"),
            Error::MalformedParameter(p) => write!(f, "malformed query parameter {p}"),
            Error::BodyTooLarge { limit } => {
                write!(f, "body larger than {} MiB", limit.div_ceil(1 << 20))
            }
            Error::Xml(e) => e.fmt(f),
            Error::BadRequest(why) => f.write_str(why),
            Error::MissingElement(e) => write!(f, "missing element <{e}>"),
            Error::MalformedElement(e) => write!(f, "malformed element <{e}>"),
            Error::BadSignature => f.write_str("signature mismatch"),
            Error::StaleTimestamp => f.write_str("timestamp outside the accepted window"),
            Error::Decryption => f.write_str("cannot decrypt message"),
            Error::WrongRecipient => f.write_str("message is for another app (AgentID)"),
            Error::MethodNotAllowed { .. } => f.write_str("method not allowed"),
            Error::NotFound => f.write_str("not found"),
            Error::NotAvailable(why) => f.write_str(why),
            Error::UnknownAuthorizer => f.write_str(
                "no such authorizer: it never authorized this platform, or revoked it (POST /component/authorizers/sync recovers authorizers WeChat still knows)",
            ),
            Error::Unauthorized => f.write_str("missing or wrong bearer token"),
            Error::Replayed => f.write_str(
                "this timestamp and nonce were already used with another body (a replayed callback URL)",
            ),
            Error::RefreshBudgetSpent { resets_at, .. } => write!(
                f,
                "today's forced refreshes of this token are spent (the budget keeps WeChat's daily limit for you); it resets at {resets_at} (Unix seconds); the stored token is in access_token"
            ),
            Error::StillInFlight => f.write_str(
                "an earlier attempt at this callback is still being processed; retry for its answer",
            ),
            Error::Config(e) => e.fmt(f),
            Error::Api(e) => e.fmt(f),
            Error::Internal(e) => write!(f, "internal error: {e}"),
            // Never the body: it may carry a token (a spent budget's answer does).
            Error::Relayed { status, body, .. } => {
                let code = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| {
                        v.get("error")
                            .or_else(|| v.get("errcode"))
                            .map(|c| c.to_string())
                    })
                    .unwrap_or_default();
                write!(f, "the account object answered HTTP {status} {code}")
            }
            Error::QueueUnavailable(e) => write!(f, "the delivery queue is unavailable: {e}"),
            Error::NoVerifyTicket => f.write_str(
                "no component_verify_ticket has arrived yet: WeChat pushes one to the authorization-event URL (/wechat/<name>) every 10 minutes; the relay has asked WeChat to restart the push",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<XmlError> for Error {
    fn from(e: XmlError) -> Self {
        Error::Xml(e)
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_a_code_and_renders_in_both_formats() {
        let all = [
            Error::MissingParameter("url"),
            Error::MalformedParameter("timestamp"),
            Error::BodyTooLarge { limit: 1 << 20 },
            Error::Xml(XmlError::Empty),
            Error::BadRequest("x"),
            Error::MissingElement("Encrypt"),
            Error::MalformedElement("CreateTime"),
            Error::BadSignature,
            Error::StaleTimestamp,
            Error::Decryption,
            Error::WrongRecipient,
            Error::MethodNotAllowed { allow: "GET" },
            Error::NotFound,
            Error::NotAvailable("no"),
            Error::UnknownAuthorizer,
            Error::Unauthorized,
            Error::Api(ApiError::Unreachable("x".into())),
            Error::Config(ConfigError::missing("WECHAT_TOKEN")),
            Error::QueueUnavailable(QueueError("down".into())),
            Error::NoVerifyTicket,
            Error::Internal("js exception at 0x1".into()),
        ];
        let mut codes = std::collections::HashSet::new();
        for e in &all {
            assert!(codes.insert(e.code()), "duplicate code {}", e.code());
            let text = e.render(Format::Text);
            assert_eq!(text.status, e.status());
            assert!(text.body.ends_with('\n'));
            let json = e.render(Format::Json);
            let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
            assert_eq!(v["error"], e.code());
        }
    }

    #[test]
    fn headers_and_hidden_internals() {
        let e = Error::MethodNotAllowed { allow: "GET, POST" };
        assert_eq!(
            e.render(Format::Text).headers,
            [("allow", "GET, POST".to_owned())]
        );
        assert_eq!(
            Error::Unauthorized.headers(),
            [("www-authenticate", "Bearer".to_owned())]
        );
        let busy = Error::Api(ApiError::Unreachable("t".into()));
        assert_eq!(busy.headers(), [("retry-after", "5".to_owned())]);
        let internal = Error::Internal("secret detail".into()).render(Format::Json);
        assert!(!internal.body.contains("secret detail"));
        assert_eq!(internal.status, 500);
        let missing = Error::Config(ConfigError::missing("WECHAT_APP_SECRET")).render(Format::Json);
        let v: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
        assert_eq!(v["error"], "configuration");
        assert!(v["message"].as_str().unwrap().contains("WECHAT_APP_SECRET"));
    }
}
