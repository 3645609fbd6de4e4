//! WeChat server-API failures, with the hints that save a team an afternoon.
//!
//! WeChat answers errors as HTTP 200 with `{"errcode": N, "errmsg": "..."}`. The relay maps them
//! to `502` with a JSON body `{"error", "errcode", "errmsg", "hint"}`; a WeChat that cannot be
//! reached is `503` with `Retry-After`.

use serde::Serialize;

/// Why a call to WeChat's API did not give us what we asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// WeChat answered with a non-zero errcode.
    WeChat { errcode: i64, errmsg: String },
    /// The network failed or timed out on the way to WeChat.
    Unreachable(String),
    /// WeChat answered something that is neither a result nor an error (HTTP status, JSON shape).
    BadResponse(String),
}

/// errcode -1: "system busy".
pub const BUSY: i64 = -1;

/// The errcodes that mean "this access_token is no good": refresh and retry once.
pub const TOKEN_INVALID: [i64; 3] = [40001, 42001, 40014];

pub fn is_token_invalid(errcode: i64) -> bool {
    TOKEN_INVALID.contains(&errcode)
}

/// What to do about an errcode, for the ones teams run into.
pub fn hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        -1 => "WeChat is busy; the relay already retried once after a short pause. Retry later.",
        40001 => "Invalid credential: either the AppSecret is wrong (check WECHAT_APP_SECRET against the console, and that it was not reset) or the access_token was invalidated by another fetch. Tokens from /cgi-bin/token and /cgi-bin/stable_token are separate: do not mix them across servers.",
        40002 => "Invalid grant_type.",
        40013 => "Invalid AppID: check WECHAT_APP_ID (it starts with wx and belongs to this account).",
        40014 => "Invalid access_token: it was replaced or mistyped. POST /token/refresh, then retry.",
        40125 => "Invalid AppSecret: check WECHAT_APP_SECRET (reset it in the console under Development > Basic configuration if unsure).",
        40164 => "The calling IP is not in the account's IP whitelist. Cloudflare Workers do not have fixed egress IPs (dedicated egress is Enterprise-only), so point WECHAT_API_BASE at a proxy with a fixed IP that forwards to https://api.weixin.qq.com, and whitelist that IP (see README, 'Fixed egress IP').",
        40243 => "The AppSecret is frozen: unfreeze it in the Official Account console.",
        41001 => "access_token missing.",
        42001 => "access_token expired: the relay refreshes it; retry.",
        45009 => "Daily API quota reached for this interface. Quotas reset at midnight (UTC+8); an admin can clear them with /cgi-bin/clear_quota, a limited number of times a month.",
        45011 => "Per-minute API frequency limit reached: slow down.",
        48001 => "This account is not authorized for this interface. Many interfaces need a verified (认证) Service Account; unverified and Subscription accounts lack menus, templates, OAuth web authorization, QR codes with parameters and more. Check the interface's permission list in the console.",
        50002 => "The user's account is restricted by WeChat.",
        89503 => "WeChat flagged this call as risky: an admin must confirm it in the console before the IP can call again.",
        _ => return None,
    })
}

/// The JSON body of an API failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ApiError {
    /// The `error` field of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::WeChat { .. } => "wechat_error",
            ApiError::Unreachable(_) => "wechat_unreachable",
            ApiError::BadResponse(_) => "wechat_bad_response",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::WeChat { .. } | ApiError::BadResponse(_) => 502,
            ApiError::Unreachable(_) => 503,
        }
    }

    /// Seconds to suggest in `Retry-After`, for the failures that pass.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Unreachable(_) => Some(5),
            ApiError::WeChat { errcode, .. } if *errcode == BUSY => Some(2),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::WeChat { errcode, errmsg } => ErrorBody {
                error: self.code(),
                errcode: Some(*errcode),
                errmsg: Some(errmsg.clone()),
                hint: hint(*errcode),
                message: None,
            },
            ApiError::Unreachable(why) => ErrorBody {
                error: self.code(),
                errcode: None,
                errmsg: None,
                hint: Some("The relay could not reach WECHAT_API_BASE in time. Retry after the Retry-After delay; if it persists, check WECHAT_API_BASE and any proxy behind it."),
                message: Some(why.clone()),
            },
            ApiError::BadResponse(why) => ErrorBody {
                error: self.code(),
                errcode: None,
                errmsg: None,
                hint: Some("WECHAT_API_BASE answered something that is not WeChat's API: check the setting and any proxy behind it."),
                message: Some(why.clone()),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::WeChat { errcode, errmsg } => write!(f, "WeChat errcode {errcode}: {errmsg}"),
            ApiError::Unreachable(why) => write!(f, "WeChat unreachable: {why}"),
            ApiError::BadResponse(why) => write!(f, "unexpected answer from WeChat: {why}"),
        }
    }
}

/// Reads `{"errcode": N, "errmsg": ...}` out of a JSON body, if it is one with N != 0.
pub fn errcode_of(body: &[u8]) -> Option<ApiError> {
    #[derive(serde::Deserialize)]
    struct Err {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let e: Err = serde_json::from_slice(body).ok()?;
    match e.errcode {
        Some(0) | None => None,
        Some(errcode) => Some(ApiError::WeChat {
            errcode,
            errmsg: e.errmsg.unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_errcodes_have_hints() {
        for code in [-1, 40001, 40013, 40125, 40164, 45009, 48001] {
            assert!(hint(code).is_some(), "{code}");
        }
        assert!(hint(40164).unwrap().contains("WECHAT_API_BASE"));
        assert!(hint(48001).unwrap().contains("Subscription"));
        assert_eq!(hint(12345), None);
    }

    #[test]
    fn statuses_and_bodies() {
        let e = ApiError::WeChat {
            errcode: 40164,
            errmsg: "invalid ip 1.2.3.4".into(),
        };
        assert_eq!(e.status(), 502);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"], "wechat_error");
        assert_eq!(body["errcode"], 40164);
        assert_eq!(body["errmsg"], "invalid ip 1.2.3.4");
        assert!(body["hint"].as_str().unwrap().contains("whitelist"));
        let u = ApiError::Unreachable("timeout".into());
        assert_eq!((u.status(), u.retry_after()), (503, Some(5)));
    }

    #[test]
    fn errcode_detection() {
        assert_eq!(errcode_of(br#"{"errcode":0,"errmsg":"ok"}"#), None);
        assert_eq!(
            errcode_of(br#"{"access_token":"x","expires_in":7200}"#),
            None
        );
        assert_eq!(errcode_of(b"not json"), None);
        assert_eq!(
            errcode_of(br#"{"errcode":40001,"errmsg":"invalid credential"}"#),
            Some(ApiError::WeChat {
                errcode: 40001,
                errmsg: "invalid credential".into()
            })
        );
        assert!(is_token_invalid(42001) && is_token_invalid(40014) && !is_token_invalid(45009));
    }
}
