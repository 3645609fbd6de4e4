//! WeChat server-API failures, with the hints that save a team an afternoon.
//!
//! WeChat answers errors as HTTP 200 with `{"errcode": N, "errmsg": "..."}`. The relay maps them
//! to `502` with a JSON body `{"error", "errcode", "errmsg", "hint"}`; a WeChat that cannot be
//! reached is `503` with `Retry-After`.

use serde::Serialize;

use crate::account::kind::Kind;

/// Why a call to WeChat's API did not give us what we asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// WeChat answered with a non-zero errcode; `kind` is the calling account's, for the hint.
    WeChat {
        errcode: i64,
        errmsg: String,
        kind: Option<Kind>,
    },
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

/// What to do about an errcode, for the ones teams run into, in terms of the account's kind.
///
/// An exception to "every per-kind fact in `account/kind.rs`": the hints are WeChat's texts, so
/// they stay beside the errcodes, and the kind only picks which table is read first.
pub fn hint(errcode: i64, kind: Option<Kind>) -> Option<&'static str> {
    if kind == Some(Kind::WeCom) {
        if let Some(h) = wecom_hint(errcode) {
            return Some(h);
        }
    }
    if kind == Some(Kind::MiniProgram) {
        if let Some(h) = miniprogram_hint(errcode) {
            return Some(h);
        }
    }
    if let Some(h) = component_hint(errcode) {
        return Some(h);
    }
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
        50001 => "The user or this account is not authorized for this interface: unverified and Subscription accounts lack many interfaces (check the permission list in the console), and some need the user's authorization first.",
        50002 => "The user's account is restricted by WeChat.",
        89503 => "WeChat flagged this call as risky: an admin must confirm it in the console before the IP can call again.",
        _ => return None,
    })
}

/// WeCom's meanings, where they differ from the Official Account's.
fn wecom_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        40001 | 40014 => "Invalid access_token or secret: check the account's WECHAT_<NAME>_APP_SECRET (the app's Secret in the WeCom admin console, Apps > the app), and that the token was fetched for this app.",
        40013 => "Invalid corp id: check the account's corp_id in WECHAT_ACCOUNTS (My Company > Company Information > Company ID).",
        42001 => "access_token expired: the relay refreshes it; retry.",
        60020 => "The calling IP is not among the app's trusted IPs (企业可信IP). Cloudflare Workers have no fixed egress IP: point the account's api_base (or WECOM_API_BASE) at a fixed-IP proxy for https://qyapi.weixin.qq.com and add that IP in the admin console.",
        48002 | 48001 => "The app is not authorized for this interface: check the app's permissions and visible range in the WeCom admin console.",
        _ => return None,
    })
}

/// The third-party platform APIs' errcodes (61xxx).
fn component_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        61003 => "This authorizer has not authorized the platform (or not for this interface): it must authorize again through /component/authorize-url.",
        61004 => "The caller's IP is not in the platform's IP whitelist (开放平台 > 第三方平台 > 开发资料). Cloudflare Workers have no fixed egress IP: point the platform account's api_base at a fixed-IP proxy for https://api.weixin.qq.com and whitelist that IP.",
        61005 => "The component_verify_ticket expired: the relay keeps the newest pushed one; check that WeChat reaches the authorization-event URL (/wechat/<name>) and answers success.",
        61006 => "The component_verify_ticket is invalid: check that the platform account's app_id, token and EncodingAESKey match the open platform console (the ticket is decrypted with them).",
        61007 => "The platform has not been granted this interface: check the platform's permission sets (权限集) in the open platform console, and the authorizer's func_info.",
        61009 => "The authorization code is invalid or was used already: each code is exchanged once (the relay remembers the result for an hour).",
        61010 => "The authorization code expired (codes live 10 minutes): the merchant authorizes again.",
        61011 => "Invalid component: check the platform account's app_id (the component AppID).",
        61014 => "This interface needs the component_access_token, not an authorizer's token.",
        61023 => "The authorizer's refresh token is invalid: POST /component/authorizers/sync to recover it from WeChat, or the merchant authorizes again.",
        61024 => "This interface needs a component token: call it through the platform account with ?authorizer=, not with the account's own token.",
        _ => return None,
    })
}

/// Mini Programs' meanings, where they differ from the Official Account's.
fn miniprogram_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        48001 => "This Mini Program is not authorized for this interface: check its category, verification and the interface's permission in the Mini Program console.",
        40013 => "Invalid AppID: check the Mini Program account's app_id in WECHAT_ACCOUNTS.",
        40164 => "The calling IP is not whitelisted; Mini Programs are usually exempt, so check that the account is really a Mini Program and its API IP whitelist setting.",
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
    /// A WeChat errcode with no account kind known yet.
    pub fn wechat(errcode: i64, errmsg: impl Into<String>) -> ApiError {
        ApiError::WeChat {
            errcode,
            errmsg: errmsg.into(),
            kind: None,
        }
    }

    /// The same error, hinted for an account of `kind`.
    pub fn for_kind(self, kind: Kind) -> ApiError {
        match self {
            ApiError::WeChat {
                errcode, errmsg, ..
            } => ApiError::WeChat {
                errcode,
                errmsg,
                kind: Some(kind),
            },
            other => other,
        }
    }

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
            ApiError::WeChat {
                errcode,
                errmsg,
                kind,
            } => ErrorBody {
                error: self.code(),
                errcode: Some(*errcode),
                errmsg: Some(errmsg.clone()),
                hint: hint(*errcode, *kind),
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
            ApiError::WeChat {
                errcode, errmsg, ..
            } => {
                write!(f, "WeChat errcode {errcode}: {errmsg}")
            }
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
        Some(errcode) => Some(ApiError::wechat(errcode, e.errmsg.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_errcodes_have_hints() {
        for code in [-1, 40001, 40013, 40125, 40164, 45009, 48001, 50001] {
            assert!(hint(code, None).is_some(), "{code}");
        }
        assert!(hint(40164, None).unwrap().contains("WECHAT_API_BASE"));
        assert!(hint(48001, Some(Kind::Official))
            .unwrap()
            .contains("Subscription"));
        assert!(hint(48001, Some(Kind::MiniProgram))
            .unwrap()
            .contains("Mini Program"));
        assert!(hint(60020, Some(Kind::WeCom))
            .unwrap()
            .contains("trusted IP"));
        assert!(hint(40013, Some(Kind::WeCom)).unwrap().contains("corp_id"));
        assert!(hint(40013, Some(Kind::Official)).unwrap().contains("AppID"));
        assert!(hint(42001, Some(Kind::WeCom)).is_some());
        assert_eq!(hint(12345, None), None);
    }

    #[test]
    fn statuses_and_bodies() {
        let e = ApiError::wechat(40164, "invalid ip 1.2.3.4");
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
            Some(ApiError::wechat(40001, "invalid credential"))
        );
        assert!(is_token_invalid(42001) && is_token_invalid(40014) && !is_token_invalid(45009));
    }
}
