//! The JS-SDK `wx.config` signature: SHA-1 over
//! `jsapi_ticket=..&noncestr=..&timestamp=..&url=..`, with the URL stripped of its fragment.

use serde::Serialize;

use crate::error::Error;

/// What a web page passes to `wx.config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsSdkConfig {
    pub app_id: String,
    pub timestamp: u64,
    pub nonce_str: String,
    pub signature: String,
}

/// The signature for `url` (its `#fragment`, if any, is dropped as WeChat requires).
pub fn signature(jsapi_ticket: &str, nonce_str: &str, timestamp: u64, url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let plain =
        format!("jsapi_ticket={jsapi_ticket}&noncestr={nonce_str}&timestamp={timestamp}&url={url}");
    crate::wire::signature::sha1_hex(plain.as_bytes())
}

/// The page URL to sign: present, and an http(s) URL.
pub fn check_url(url: Option<&str>) -> Result<&str, Error> {
    let url = url
        .filter(|u| !u.is_empty())
        .ok_or(Error::MissingParameter("url"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::MalformedParameter("url"));
    }
    Ok(url)
}

/// A nonce of 16 characters from `[A-Za-z0-9]`, made from caller-supplied random bytes.
pub fn nonce_str(random: [u8; 16]) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random
        .iter()
        .filter_map(|b| ALPHABET.get(usize::from(*b) % ALPHABET.len()))
        .map(|&c| char::from(c))
        .collect()
}

pub fn config(
    app_id: &str,
    jsapi_ticket: &str,
    url: &str,
    timestamp: u64,
    random: [u8; 16],
) -> JsSdkConfig {
    let nonce = nonce_str(random);
    JsSdkConfig {
        app_id: app_id.to_owned(),
        timestamp,
        signature: signature(jsapi_ticket, &nonce, timestamp, url),
        nonce_str: nonce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_is_ignored() {
        assert_eq!(
            signature("t", "n", 1, "http://a/b?c=d#frag"),
            signature("t", "n", 1, "http://a/b?c=d")
        );
        assert_ne!(
            signature("t", "n", 1, "http://a/b?c=e"),
            signature("t", "n", 1, "http://a/b?c=d")
        );
    }

    #[test]
    fn only_http_urls_are_signed() {
        assert_eq!(
            check_url(Some("https://a.example/p?q=1")),
            Ok("https://a.example/p?q=1")
        );
        assert_eq!(check_url(None), Err(Error::MissingParameter("url")));
        assert_eq!(check_url(Some("")), Err(Error::MissingParameter("url")));
        for bad in [
            "javascript:alert(1)",
            "ftp://a",
            "//a.example",
            "data:text/html,x",
        ] {
            assert_eq!(
                check_url(Some(bad)),
                Err(Error::MalformedParameter("url")),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonce_is_alphanumeric() {
        let n = nonce_str([255; 16]);
        assert_eq!(n.len(), 16);
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
