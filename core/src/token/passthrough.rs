//! `ANY /api/<path>`: which WeChat API paths may be reached, the upstream URL, and the flow
//! that adds the account's token, streams media through, and after 40001/42001/40014 refreshes
//! the token once and retries once.

use crate::error::api_error::{errcode_of, is_token_invalid, ApiError};
use crate::error::Error;
use crate::ports::Method;
use crate::ports::{Http, HttpAnswer, HttpRequest};
use crate::token::upstream;
use crate::token::TokenSource;

/// Largest request body passed on (WeChat's media uploads are at most 10 MB).
pub const MAX_BODY_BYTES: usize = 20 << 20;
/// Answers up to this size are read to look for token errors; larger ones stream through.
pub const MAX_INSPECTED_ANSWER: u64 = 1 << 20;

/// Path prefixes of WeChat's server API that the pass-through serves.
pub const ALLOWED_PREFIXES: [&str; 5] = ["cgi-bin/", "sns/", "wxa/", "datacube/", "customservice/"];

/// The checked WeChat path for a request path under `/api/`, or `None` when it may not pass:
/// outside the allowed prefixes, or with dot segments, empty segments, backslashes or encoded
/// separators that could step outside them.
pub fn wechat_path(request_path: &str) -> Option<&str> {
    let path = request_path.strip_prefix("/api/")?;
    if !ALLOWED_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    let lower = path.to_ascii_lowercase();
    if path.contains('\\')
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%2e")
    {
        return None;
    }
    let mut segments = path.split('/');
    let last = segments.next_back();
    if segments.any(|s| s.is_empty() || s == "." || s == "..") || matches!(last, Some("." | "..")) {
        return None;
    }
    Some(path)
}

/// Query parameters that are the relay's, never WeChat's: the caller's `access_token` is
/// replaced, `account` and `authorizer` choose whose token is used.
pub const RELAY_PARAMETERS: [&str; 3] = ["access_token", "account", "authorizer"];

/// The upstream URL: `{api_base}/{path}?{query without the relay's parameters}&access_token={token}`.
pub fn upstream_url(
    api_base: &str,
    path: &str,
    query: impl IntoIterator<Item = (String, String)>,
    access_token: &str,
) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        if !RELAY_PARAMETERS.contains(&k.as_str()) {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("access_token", access_token);
    format!("{api_base}/{path}?{}", out.finish())
}

/// A request for WeChat's API, from a backend.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The checked path below the API base ([`wechat_path`]).
    pub wechat_path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The body, buffered so it can be sent twice.
    pub body: Option<Vec<u8>>,
}

/// WeChat's answer, to hand back unchanged.
pub enum Passed<A> {
    /// Media or other large answers: the response itself, body unread.
    Streamed(A),
    /// A small JSON or text answer that was read to look for token errors.
    Read {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
}

/// Whether an answer is small JSON-ish text worth reading for an errcode (WeChat sends its
/// errors as application/json or text/plain); media and other large answers stream through.
pub fn inspectable(content_type: Option<&str>, content_length: Option<&str>) -> bool {
    let ct = content_type.unwrap_or_default().to_ascii_lowercase();
    let textual = ct.is_empty() || ct.contains("json") || ct.starts_with("text/");
    let small = content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_none_or(|n| n <= MAX_INSPECTED_ANSWER);
    textual && small
}

/// Forwards `call` to `{api_base}/<path>` with the token of `source`; after a token error,
/// refreshes once (forced, rate-limited) and retries once.
pub async fn pass_through<H: Http, T: TokenSource>(
    http: &H,
    source: &T,
    call: Call,
) -> Result<Passed<H::Answer>, Error> {
    let api_base = source.api_base()?;
    let mut token = source.token().await?;
    let mut retried = false;
    loop {
        let url = upstream_url(
            api_base,
            &call.wechat_path,
            call.query.clone(),
            &token.value,
        );
        let mut request = HttpRequest::get(url);
        request.method = call.method.as_str();
        if let Some(ct) = &call.content_type {
            request.headers.push(("content-type", ct.clone()));
        }
        request.body = call.body.clone();
        let answer = upstream::send(http, &request).await?;
        let content_type = answer.header("content-type");
        if !inspectable(
            content_type.as_deref(),
            answer.header("content-length").as_deref(),
        ) {
            return Ok(Passed::Streamed(answer));
        }
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(format!("reading the answer: {e}")))?;
        if let Some(ApiError::WeChat { errcode, .. }) = errcode_of(&body) {
            if is_token_invalid(errcode) && !retried {
                retried = true;
                let refreshed = source.force_refresh(Some(&token.value)).await?;
                // Rate-limited to the same token that just failed: retrying cannot help.
                if refreshed.credential.value != token.value {
                    token = refreshed.credential;
                    continue;
                }
            }
        }
        return Ok(Passed::Read {
            status,
            content_type,
            body: with_hint(body, source.kind()),
        });
    }
}

/// WeChat's answer unchanged, except that an error answer (`{"errcode": N, ...}`, N != 0) gains
/// a `"hint"` in terms of the account's kind when there is one and WeChat gave none.
pub fn with_hint(body: Vec<u8>, kind: crate::account::Kind) -> Vec<u8> {
    let Some(ApiError::WeChat { errcode, .. }) = errcode_of(&body) else {
        return body;
    };
    let Some(hint) = crate::error::api_error::hint(errcode, Some(kind)) else {
        return body;
    };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) if !map.contains_key("hint") => {
            map.insert("hint".into(), hint.into());
            serde_json::to_vec(&map).unwrap_or(body)
        }
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeAnswer, World};

    #[test]
    fn allowed_paths() {
        assert_eq!(
            wechat_path("/api/cgi-bin/user/info"),
            Some("cgi-bin/user/info")
        );
        assert_eq!(wechat_path("/api/wxa/getwxacode"), Some("wxa/getwxacode"));
        assert_eq!(
            wechat_path("/api/sns/jscode2session"),
            Some("sns/jscode2session")
        );
        for bad in [
            "/api/admin",
            "/api/",
            "/api/cgi-bin",
            "/api/cgi-binx/y",
            "/api/cgi-bin/../admin",
            "/api/cgi-bin/%2e%2e/admin",
            "/api/cgi-bin/a%2Fb",
            "/api/cgi-bin//a",
            "/api/cgi-bin/a\\b",
            "/api/cgi-bin/..",
            "/token",
        ] {
            assert_eq!(wechat_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn upstream_url_replaces_access_token() {
        let u = upstream_url(
            "https://api.weixin.qq.com",
            "cgi-bin/user/info",
            [
                ("openid".to_owned(), "o 1".to_owned()),
                ("access_token".to_owned(), "evil".to_owned()),
                ("account".to_owned(), "shop".to_owned()),
            ],
            "T&K",
        );
        assert_eq!(
            u,
            "https://api.weixin.qq.com/cgi-bin/user/info?openid=o+1&access_token=T%26K"
        );
    }

    fn call(method: Method, path: &str, query: &[(&str, &str)], body: Option<&str>) -> Call {
        Call {
            method,
            wechat_path: path.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            content_type: body.map(|_| "application/json".to_owned()),
            body: body.map(|b| b.as_bytes().to_vec()),
        }
    }

    fn read<A>(passed: Passed<A>) -> (u16, Option<String>, Vec<u8>) {
        match passed {
            Passed::Read {
                status,
                content_type,
                body,
            } => (status, content_type, body),
            Passed::Streamed(_) => panic!("streamed"),
        }
    }

    #[test]
    fn adds_the_token_and_forwards_method_query_body_and_content_type() {
        let w = World::new(1_800_000_000, &[]);
        w.wechat.route("/cgi-bin/message/custom/send", |seen, _| {
            FakeAnswer::json(serde_json::json!({"errcode": 0, "errmsg": "ok", "echo": String::from_utf8_lossy(seen.request.body.as_deref().unwrap_or_default())}))
        });
        let payload = r#"{"touser":"o_1","msgtype":"text","text":{"content":"你好"}}"#;
        let c = call(
            Method::Post,
            "cgi-bin/message/custom/send",
            &[("foo", "bar"), ("access_token", "caller-supplied")],
            Some(payload),
        );
        let (status, ct, body) = read(
            w.clock
                .run(pass_through(&w.wechat.http, &w.creds(), c))
                .unwrap(),
        );
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some("application/json"));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["echo"], payload);
        let sent = w
            .wechat
            .http
            .requests()
            .into_iter()
            .find(|s| s.path() == "/cgi-bin/message/custom/send")
            .unwrap();
        assert_eq!(sent.request.method, "POST");
        assert_eq!(sent.query("access_token"), w.wechat.state.current());
        assert_eq!(sent.query("foo").as_deref(), Some("bar"));
        assert_eq!(sent.header("content-type"), Some("application/json"));
        assert!(sent.header("authorization").is_none());
    }

    #[test]
    fn media_answers_stream_through_unread() {
        let w = World::new(1_800_000_000, &[]);
        w.wechat.route("/cgi-bin/media/get", |_, _| {
            FakeAnswer::status(200)
                .with_header("content-type", "image/jpeg")
                .with_body(vec![0xff; 4096])
        });
        let passed = w
            .clock
            .run(pass_through(
                &w.wechat.http,
                &w.creds(),
                call(
                    Method::Get,
                    "cgi-bin/media/get",
                    &[("media_id", "m1")],
                    None,
                ),
            ))
            .unwrap();
        match passed {
            Passed::Streamed(answer) => {
                assert_eq!(answer.header("content-type").as_deref(), Some("image/jpeg"))
            }
            Passed::Read { .. } => panic!("media was read"),
        }
        assert!(inspectable(None, None));
        assert!(inspectable(Some("text/plain"), Some("100")));
        assert!(!inspectable(Some("application/json"), Some("2000000")));
        assert!(!inspectable(Some("video/mp4"), None));
    }

    #[test]
    fn after_40001_it_refreshes_once_and_retries_once() {
        let w = World::new(1_800_000_000, &[]);
        let seen = std::rc::Rc::new(std::cell::Cell::new(0));
        let n = seen.clone();
        w.wechat.route("/cgi-bin/user/info", move |s, current| {
            n.set(n.get() + 1);
            FakeAnswer::json(if n.get() == 1 {
                serde_json::json!({"errcode": 40001, "errmsg": "invalid credential"})
            } else {
                serde_json::json!({"openid": s.query("openid"), "token_ok": s.query("access_token") == current})
            })
        });
        let (_, _, body) = read(
            w.clock
                .run(pass_through(
                    &w.wechat.http,
                    &w.creds(),
                    call(Method::Get, "cgi-bin/user/info", &[("openid", "o_1")], None),
                ))
                .unwrap(),
        );
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"openid": "o_1", "token_ok": true})
        );
        assert_eq!(seen.get(), 2);
        let calls: Vec<_> = w
            .wechat
            .http
            .requests()
            .into_iter()
            .filter(|s| s.path() == "/cgi-bin/user/info")
            .collect();
        assert_ne!(
            calls[0].query("access_token"),
            calls[1].query("access_token")
        );
        assert_eq!(w.wechat.token_calls()[1].json()["force_refresh"], true);
    }

    #[test]
    fn a_second_40001_is_answered_as_wechat_sent_it() {
        let w = World::new(1_800_000_000, &[]);
        w.wechat.route("/cgi-bin/user/info", |_, _| {
            FakeAnswer::json(serde_json::json!({"errcode": 40001, "errmsg": "invalid credential"}))
        });
        let (status, _, body) = read(
            w.clock
                .run(pass_through(
                    &w.wechat.http,
                    &w.creds(),
                    call(Method::Get, "cgi-bin/user/info", &[], None),
                ))
                .unwrap(),
        );
        assert_eq!(status, 200);
        assert!(matches!(
            errcode_of(&body),
            Some(ApiError::WeChat { errcode: 40001, .. })
        ));
        assert_eq!(w.wechat.http.count("/cgi-bin/user/info"), 2);
    }

    #[test]
    fn error_answers_gain_a_hint_for_the_accounts_kind() {
        use crate::account::Kind;
        let body = br#"{"errcode":48001,"errmsg":"api unauthorized"}"#.to_vec();
        let official: serde_json::Value =
            serde_json::from_slice(&with_hint(body.clone(), Kind::Official)).unwrap();
        assert_eq!(official["errcode"], 48001);
        assert_eq!(official["errmsg"], "api unauthorized");
        assert!(official["hint"].as_str().unwrap().contains("Subscription"));
        let mini: serde_json::Value =
            serde_json::from_slice(&with_hint(body, Kind::MiniProgram)).unwrap();
        assert!(mini["hint"].as_str().unwrap().contains("Mini Program"));
        for unchanged in [
            &br#"{"errcode":0,"errmsg":"ok"}"#[..],
            br#"{"errcode":12345,"errmsg":"?"}"#,
            br#"{"openid":"o"}"#,
            b"not json",
            br#"{"errcode":48001,"hint":"theirs"}"#,
        ] {
            assert_eq!(with_hint(unchanged.to_vec(), Kind::Official), unchanged);
        }
        let w = World::new(1_800_000_000, &[]);
        w.wechat.route("/cgi-bin/menu/create", |_, _| {
            FakeAnswer::json(serde_json::json!({"errcode": 48001, "errmsg": "api unauthorized"}))
        });
        let (_, _, body) = read(
            w.clock
                .run(pass_through(
                    &w.wechat.http,
                    &w.creds(),
                    call(Method::Post, "cgi-bin/menu/create", &[], Some("{}")),
                ))
                .unwrap(),
        );
        assert!(String::from_utf8(body).unwrap().contains("hint"));
    }

    #[test]
    fn a_refresh_limited_to_the_failing_token_does_not_retry() {
        let w = World::new(1_800_000_000, &[]);
        // A forced refresh just happened: the rate limit hands back the same token.
        assert!(
            w.clock
                .run(w.creds().force_refresh(None))
                .unwrap()
                .refreshed
        );
        w.wechat.route("/cgi-bin/user/info", |_, _| {
            FakeAnswer::json(serde_json::json!({"errcode": 42001, "errmsg": "expired"}))
        });
        let _ = read(
            w.clock
                .run(pass_through(
                    &w.wechat.http,
                    &w.creds(),
                    call(Method::Get, "cgi-bin/user/info", &[], None),
                ))
                .unwrap(),
        );
        assert_eq!(w.wechat.http.count("/cgi-bin/user/info"), 1);
    }
}
