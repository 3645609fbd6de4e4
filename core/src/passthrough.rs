//! Which WeChat API paths `/api/<path>` may reach, and the upstream URL for a request.

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

/// The upstream URL: `{api_base}/{path}?{query without access_token}&access_token={token}`.
pub fn upstream_url(
    api_base: &str,
    path: &str,
    query: impl IntoIterator<Item = (String, String)>,
    access_token: &str,
) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        if k != "access_token" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("access_token", access_token);
    format!("{api_base}/{path}?{}", out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ],
            "T&K",
        );
        assert_eq!(
            u,
            "https://api.weixin.qq.com/cgi-bin/user/info?openid=o+1&access_token=T%26K"
        );
    }
}
