//! Access tokens and JS-SDK tickets: what to ask WeChat, how to read the answer, what to store
//! in KV, and when a stored one must be refreshed. No I/O: the shell does the fetches.

pub use crate::account::kind::TokenEndpoint;
use crate::account::kind::{TicketApi, TokenApi};
use crate::account::Account;
use crate::error::api_error::{errcode_of, ApiError};
use crate::error::Error;
use crate::ports::HttpRequest;

/// Serve a stored credential only while more than this remains; fetch a new one after.
pub const REFRESH_MARGIN_SECS: u64 = 300;
/// The scheduled refresh renews credentials that have less than this left.
pub const SCHEDULED_REFRESH_MARGIN_SECS: u64 = 900;
/// When a refresh fails, a stored credential with at least this much life left is served
/// instead of the error.
pub const FALLBACK_MIN_LIFE_SECS: u64 = 30;
/// Forced refreshes (`force_refresh=true`) are limited by WeChat to 20 a day: at most one a minute.
pub const FORCED_REFRESH_INTERVAL_SECS: u64 = 60;
/// KV entries expire this long before the credential does (and never under KV's 60 s minimum).
pub const KV_TTL_MARGIN_SECS: u64 = 120;
pub const KV_MIN_TTL_SECS: u64 = 60;

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The request that fetches an access token.
pub fn token_request(
    endpoint: TokenEndpoint,
    api_base: &str,
    app_id: &str,
    app_secret: &str,
    force_refresh: bool,
) -> HttpRequest {
    match endpoint {
        TokenEndpoint::Stable => HttpRequest::post_json(
            format!("{api_base}/cgi-bin/stable_token"),
            &serde_json::json!({
                "grant_type": "client_credential",
                "appid": app_id,
                "secret": app_secret,
                "force_refresh": force_refresh,
            }),
        ),
        TokenEndpoint::Classic => HttpRequest::get(format!(
            "{api_base}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            encode(app_id),
            encode(app_secret)
        )),
    }
}

/// The request that fetches an account's access token: `stable_token` (or `token`) for Official
/// Accounts and Mini Programs, `gettoken` with the corp id and the app's Secret for WeCom, and
/// `api_component_token` with the stored verify ticket for a third-party platform.
pub fn account_token_request(
    account: &Account,
    force_refresh: bool,
    verify_ticket: Option<&str>,
) -> Result<HttpRequest, Error> {
    let base = account.api_base()?;
    let app_id = account.require_app_id()?;
    let secret = account.app_secret()?;
    Ok(match account.kind().token_api() {
        TokenApi::Corp => HttpRequest::get(format!(
            "{base}/cgi-bin/gettoken?corpid={}&corpsecret={}",
            encode(app_id),
            encode(secret)
        )),
        TokenApi::App => token_request(
            account.token_endpoint()?,
            base,
            app_id,
            secret,
            force_refresh,
        ),
        TokenApi::Platform => HttpRequest::post_json(
            format!("{base}/cgi-bin/component/api_component_token"),
            &serde_json::json!({
                "component_appid": app_id,
                "component_appsecret": secret,
                "component_verify_ticket": verify_ticket.ok_or(Error::NoVerifyTicket)?,
            }),
        ),
    })
}

/// Whether a token fetched this way replaced the previous one (for the forced-refresh limit).
pub fn replaces_previous(account: &Account, force_refresh: bool) -> bool {
    force_refresh
        || account
            .kind()
            .fetch_replaces_previous(account.token_endpoint().unwrap_or(TokenEndpoint::Stable))
}

/// The request for an account's JS-SDK ticket: `ticket/getticket?type=jsapi` for Official
/// Accounts, `get_jsapi_ticket` for WeCom; Mini Programs have none.
pub fn account_ticket_request(account: &Account, access_token: &str) -> Result<HttpRequest, Error> {
    let base = account.api_base()?;
    match account.kind().ticket_api().map_err(Error::NotAvailable)? {
        TicketApi::Jsapi => Ok(jsapi_ticket_request(base, access_token)),
        TicketApi::Corp => Ok(HttpRequest::get(format!(
            "{base}/cgi-bin/get_jsapi_ticket?access_token={}",
            encode(access_token)
        ))),
    }
}

/// The request that fetches the JS-SDK ticket with a given access token.
pub fn jsapi_ticket_request(api_base: &str, access_token: &str) -> HttpRequest {
    HttpRequest::get(format!(
        "{api_base}/cgi-bin/ticket/getticket?access_token={}&type=jsapi",
        encode(access_token)
    ))
}

/// A credential (access token or ticket) and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The access token or ticket.
    pub value: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds.
    pub fetched_at: u64,
    /// When this credential came from a forced refresh (Unix seconds), for rate limiting.
    pub forced_at: Option<u64>,
}

impl Stored {
    /// The KV record: `{"<field>": value, "expires_at", "fetched_at"[, "forced_at"]}`, where
    /// field is `access_token` or `ticket`.
    pub fn to_record(&self, field: &str) -> serde_json::Value {
        let mut record = serde_json::Map::new();
        record.insert(field.to_owned(), self.value.clone().into());
        record.insert("expires_at".into(), self.expires_at.into());
        record.insert("fetched_at".into(), self.fetched_at.into());
        if let Some(t) = self.forced_at {
            record.insert("forced_at".into(), t.into());
        }
        serde_json::Value::Object(record)
    }

    /// Reads a KV record written by [`Stored::to_record`]; `None` if it is not one.
    pub fn from_record(record: &serde_json::Value, field: &str) -> Option<Stored> {
        Some(Stored {
            value: record.get(field)?.as_str()?.to_owned(),
            expires_at: record.get("expires_at")?.as_u64()?,
            fetched_at: record.get("fetched_at")?.as_u64()?,
            forced_at: record.get("forced_at").and_then(serde_json::Value::as_u64),
        })
    }

    /// Whether it can still be handed out at `now` (more than the margin left).
    pub fn is_fresh(&self, now: u64) -> bool {
        self.expires_at > now.saturating_add(REFRESH_MARGIN_SECS)
    }

    /// Whether it may still be served when a refresh fails (it is valid for a little longer).
    pub fn is_usable_fallback(&self, now: u64) -> bool {
        self.expires_at > now.saturating_add(FALLBACK_MIN_LIFE_SECS)
    }

    /// Whether the scheduled refresh should renew it.
    pub fn needs_scheduled_refresh(&self, now: u64) -> bool {
        self.expires_at <= now.saturating_add(SCHEDULED_REFRESH_MARGIN_SECS)
    }

    /// Whether a forced refresh is allowed now (none in the last minute).
    pub fn allows_forced_refresh(&self, now: u64) -> bool {
        self.forced_at
            .is_none_or(|t| now.saturating_sub(t) >= FORCED_REFRESH_INTERVAL_SECS)
    }

    /// The KV expiration TTL: just under the credential's remaining life.
    pub fn kv_ttl(&self, now: u64) -> u64 {
        self.expires_at
            .saturating_sub(now)
            .saturating_sub(KV_TTL_MARGIN_SECS)
            .max(KV_MIN_TTL_SECS)
    }

    /// The last four characters, the most of a credential a log line may show.
    pub fn redacted(&self) -> String {
        redact(&self.value)
    }
}

pub fn redact(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Reads WeChat's answer to a token request.
pub fn parse_token_response(body: &[u8], now: u64, forced: bool) -> Result<Stored, ApiError> {
    parse_credential(body, "access_token", now, forced)
}

/// Reads an answer whose credential is in `field` (`component_access_token`,
/// `authorizer_access_token`, ...).
pub fn parse_field_response(
    body: &[u8],
    field: &str,
    now: u64,
    forced: bool,
) -> Result<Stored, ApiError> {
    parse_credential(body, field, now, forced)
}

/// Reads WeChat's answer to a ticket request.
pub fn parse_ticket_response(body: &[u8], now: u64) -> Result<Stored, ApiError> {
    parse_credential(body, "ticket", now, false)
}

fn parse_credential(body: &[u8], field: &str, now: u64, forced: bool) -> Result<Stored, ApiError> {
    if let Some(err) = errcode_of(body) {
        return Err(err);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadResponse("answer is not JSON".into()))?;
    let value = v
        .get(field)
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadResponse(format!("answer has no {field}")))?;
    let expires_in = v
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ApiError::BadResponse("answer has no expires_in".into()))?;
    Ok(Stored {
        value: value.to_owned(),
        expires_at: now.saturating_add(expires_in),
        fetched_at: now,
        forced_at: forced.then_some(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_request_body() {
        let r = token_request(
            TokenEndpoint::Stable,
            "https://api.weixin.qq.com",
            "wx1",
            "s&1",
            true,
        );
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url(),
            Some("https://api.weixin.qq.com/cgi-bin/stable_token")
        );
        let body: serde_json::Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"grant_type":"client_credential","appid":"wx1","secret":"s&1","force_refresh":true})
        );
    }

    #[test]
    fn classic_request_url_is_encoded() {
        let r = token_request(
            TokenEndpoint::Classic,
            "http://127.0.0.1:9",
            "wx1",
            "a b&c",
            false,
        );
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.url().unwrap(),
            "http://127.0.0.1:9/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=a+b%26c"
        );
        assert_eq!("Classic".parse(), Ok(TokenEndpoint::Classic));
        assert!("other".parse::<TokenEndpoint>().is_err());
    }

    #[test]
    fn parses_token_and_errors() {
        let s = parse_token_response(
            br#"{"access_token":"ACCESS_TOKEN","expires_in":7200}"#,
            1000,
            false,
        )
        .unwrap();
        assert_eq!(
            (s.value.as_str(), s.expires_at, s.fetched_at, s.forced_at),
            ("ACCESS_TOKEN", 8200, 1000, None)
        );
        assert_eq!(
            parse_token_response(br#"{"errcode":40013,"errmsg":"invalid appid"}"#, 0, false),
            Err(ApiError::wechat(40013, "invalid appid"))
        );
        assert!(matches!(
            parse_token_response(b"<html>", 0, false),
            Err(ApiError::BadResponse(_))
        ));
        assert!(matches!(
            parse_token_response(br#"{"expires_in":7200}"#, 0, false),
            Err(ApiError::BadResponse(_))
        ));
        let t = parse_ticket_response(
            br#"{"errcode":0,"errmsg":"ok","ticket":"T","expires_in":7200}"#,
            5,
        )
        .unwrap();
        assert_eq!(t.value, "T");
    }

    #[test]
    fn refresh_policy() {
        let s = Stored {
            value: "abcdef".into(),
            expires_at: 10_000,
            fetched_at: 2_800,
            forced_at: Some(9_000),
        };
        assert!(s.is_fresh(10_000 - 301));
        assert!(!s.is_fresh(10_000 - 300));
        assert!(s.is_usable_fallback(10_000 - 31));
        assert!(!s.is_usable_fallback(10_000 - 30));
        assert!(!s.needs_scheduled_refresh(10_000 - 901));
        assert!(s.needs_scheduled_refresh(10_000 - 900));
        assert!(!s.allows_forced_refresh(9_059));
        assert!(s.allows_forced_refresh(9_060));
        assert_eq!(s.kv_ttl(2_800), 7_200 - 120);
        assert_eq!(s.kv_ttl(9_990), 60);
        assert_eq!(s.redacted(), "…cdef");
        assert_eq!(redact("ab"), "…ab");
    }

    #[test]
    fn kv_record_round_trip() {
        let s = Stored {
            value: "T".into(),
            expires_at: 9,
            fetched_at: 1,
            forced_at: None,
        };
        let r = s.to_record("access_token");
        assert_eq!(
            r,
            serde_json::json!({"access_token": "T", "expires_at": 9, "fetched_at": 1})
        );
        assert_eq!(Stored::from_record(&r, "access_token"), Some(s));
        assert_eq!(Stored::from_record(&r, "ticket"), None);
    }
}
