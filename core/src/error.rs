//! One error type for the relay, split into the caller's fault (4xx) and ours (5xx), and mapped
//! to HTTP statuses here and nowhere else.

use crate::api_error::ApiError;
use crate::config::ConfigError;
use crate::xml::XmlError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // --- the caller's fault ---
    /// A required query parameter is absent.
    MissingParameter(&'static str),
    /// A query parameter is present but unusable (e.g. a non-numeric timestamp).
    MalformedParameter(&'static str),
    /// The body is larger than [`crate::callback::MAX_BODY_BYTES`].
    BodyTooLarge,
    /// The body is empty, not XML, malformed or hostile.
    Xml(XmlError),
    /// The XML lacks an element every callback carries.
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
    /// The request's method is not served on this route.
    MethodNotAllowed,
    /// No such route (or a route that is switched off).
    NotFound,
    /// The token API's bearer key is missing or wrong.
    Unauthorized,

    // --- WeChat's ---
    /// WeChat's API failed or could not be reached.
    Api(ApiError),

    // --- ours ---
    /// A setting is missing or malformed.
    Config(ConfigError),
}

impl Error {
    /// The HTTP status for this error. The single place where errors become statuses.
    pub fn status(&self) -> u16 {
        match self {
            Error::MissingParameter(_)
            | Error::MalformedParameter(_)
            | Error::Xml(_)
            | Error::MissingElement(_)
            | Error::MalformedElement(_) => 400,
            Error::BadSignature
            | Error::StaleTimestamp
            | Error::Decryption
            | Error::Unauthorized => 401,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::BodyTooLarge => 413,
            Error::Config(_) => 500,
            Error::Api(e) => e.status(),
        }
    }

    /// Whether the request was at fault (4xx), as opposed to the relay's setup (5xx).
    pub fn is_callers_fault(&self) -> bool {
        self.status() < 500
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::MissingParameter(p) => write!(f, "missing query parameter {p}"),
            Error::MalformedParameter(p) => write!(f, "malformed query parameter {p}"),
            Error::BodyTooLarge => f.write_str("body larger than 1 MiB"),
            Error::Xml(e) => e.fmt(f),
            Error::MissingElement(e) => write!(f, "missing element <{e}>"),
            Error::MalformedElement(e) => write!(f, "malformed element <{e}>"),
            Error::BadSignature => f.write_str("signature mismatch"),
            Error::StaleTimestamp => f.write_str("timestamp outside the accepted window"),
            Error::Decryption => f.write_str("cannot decrypt message"),
            Error::MethodNotAllowed => f.write_str("method not allowed"),
            Error::NotFound => f.write_str("not found"),
            Error::Unauthorized => f.write_str("missing or wrong bearer token"),
            Error::Config(e) => e.fmt(f),
            Error::Api(e) => e.fmt(f),
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
