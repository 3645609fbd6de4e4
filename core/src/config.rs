//! Settings, read from environment bindings through a lookup function.
//!
//! Loading never fails: each setting is validated on its own and kept as a `Result`, so a
//! malformed `FORWARD_URLS` does not break URL verification, and the request that needs a broken
//! setting gets an error naming it.

use crate::access_token::TokenEndpoint;
use crate::crypto::{AesKey, KeyError};
use crate::webhook::WebhookSecret;

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 300;
pub const DEFAULT_ACCOUNT: &str = "default";

/// A missing or malformed setting, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }
    fn missing(setting: &'static str) -> Self {
        ConfigError::new(setting, "is not set")
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "setting {} {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

type Setting<T> = Result<T, ConfigError>;

/// A secret string whose `Debug` output is redacted.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Every setting of the relay. Secrets never appear in `Debug` output.
#[derive(Debug, Clone)]
pub struct Config {
    token: Setting<Secret>,
    aes_key: Setting<Option<AesKey>>,
    app_id: Option<String>,
    app_secret: Setting<Secret>,
    api_base: Setting<String>,
    forward_urls: Setting<Vec<String>>,
    forward_secret: Setting<Option<WebhookSecret>>,
    max_clock_skew: Setting<u64>,
    token_api_key: Option<Secret>,
    token_endpoint: Setting<TokenEndpoint>,
}

impl Config {
    /// Reads every setting through `lookup` (binding name -> value). Empty values count as unset.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Config {
            token: get("WECHAT_TOKEN")
                .map(Secret)
                .ok_or(ConfigError::missing("WECHAT_TOKEN")),
            aes_key: get("WECHAT_ENCODING_AES_KEY")
                .map(|k| {
                    AesKey::from_encoding_aes_key(&k).map_err(|e: KeyError| {
                        ConfigError::new("WECHAT_ENCODING_AES_KEY", e.to_string())
                    })
                })
                .transpose(),
            app_id: get("WECHAT_APP_ID"),
            app_secret: get("WECHAT_APP_SECRET")
                .map(Secret)
                .ok_or(ConfigError::missing("WECHAT_APP_SECRET")),
            api_base: match get("WECHAT_API_BASE") {
                None => Ok(DEFAULT_API_BASE.to_owned()),
                Some(base) => parse_http_url(&base)
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .map_err(|p| ConfigError::new("WECHAT_API_BASE", p)),
            },
            forward_urls: match get("FORWARD_URLS") {
                None => Err(ConfigError::new(
                    "FORWARD_URLS",
                    "is not set: there is nowhere to forward events to",
                )),
                Some(list) => parse_url_list(&list),
            },
            forward_secret: get("FORWARD_SECRET")
                .map(|s| {
                    s.parse::<WebhookSecret>()
                        .map_err(|p| ConfigError::new("FORWARD_SECRET", p))
                })
                .transpose(),
            max_clock_skew: match get("MAX_CLOCK_SKEW_SECONDS") {
                None => Ok(DEFAULT_MAX_CLOCK_SKEW_SECONDS),
                Some(v) => v.parse::<u64>().map_err(|_| {
                    ConfigError::new(
                        "MAX_CLOCK_SKEW_SECONDS",
                        format!("must be a whole number of seconds, got {v:?}"),
                    )
                }),
            },
            token_api_key: get("TOKEN_API_KEY").map(Secret),
            token_endpoint: match get("WECHAT_TOKEN_ENDPOINT") {
                None => Ok(TokenEndpoint::Stable),
                Some(v) => v
                    .parse()
                    .map_err(|p| ConfigError::new("WECHAT_TOKEN_ENDPOINT", p)),
            },
        }
    }

    pub fn token(&self) -> Result<&str, ConfigError> {
        self.token
            .as_ref()
            .map(Secret::expose)
            .map_err(Clone::clone)
    }

    /// The AES key, or `None` when the account runs in plaintext mode only.
    pub fn aes_key(&self) -> Result<Option<&AesKey>, ConfigError> {
        self.aes_key
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// The AppID, which encrypted callbacks must carry.
    pub fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    pub fn require_app_id(&self) -> Result<&str, ConfigError> {
        self.app_id().ok_or(ConfigError::new(
            "WECHAT_APP_ID",
            "is not set: it is needed to check the AppID inside encrypted messages",
        ))
    }

    pub fn app_secret(&self) -> Result<&str, ConfigError> {
        self.app_secret
            .as_ref()
            .map(Secret::expose)
            .map_err(Clone::clone)
    }

    pub fn api_base(&self) -> Result<&str, ConfigError> {
        self.api_base.as_deref().map_err(Clone::clone)
    }

    pub fn forward_urls(&self) -> Result<&[String], ConfigError> {
        self.forward_urls.as_deref().map_err(Clone::clone)
    }

    pub fn forward_secret(&self) -> Result<Option<&WebhookSecret>, ConfigError> {
        self.forward_secret
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    pub fn max_clock_skew(&self) -> Result<u64, ConfigError> {
        self.max_clock_skew.clone()
    }

    /// The bearer key of the token API; `None` switches the token endpoints off.
    pub fn token_api_key(&self) -> Option<&str> {
        self.token_api_key.as_ref().map(Secret::expose)
    }

    pub fn token_endpoint(&self) -> Result<TokenEndpoint, ConfigError> {
        self.token_endpoint.clone()
    }

    /// Every setting that is present but malformed (or required and missing), for start-up logs.
    pub fn problems(&self) -> Vec<ConfigError> {
        [
            self.token.as_ref().err(),
            self.aes_key.as_ref().err(),
            self.api_base.as_ref().err(),
            self.forward_urls.as_ref().err(),
            self.forward_secret.as_ref().err(),
            self.max_clock_skew.as_ref().err(),
            self.token_endpoint.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

fn parse_url_list(list: &str) -> Setting<Vec<String>> {
    let urls: Vec<String> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|u| {
            parse_http_url(u).map_err(|p| ConfigError::new("FORWARD_URLS", format!("{u:?}: {p}")))
        })
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError::new("FORWARD_URLS", "lists no URL"));
    }
    Ok(urls)
}

/// Checks that `s` is an absolute http(s) URL with a host; returns it normalized.
fn parse_http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[
            ("WECHAT_TOKEN", "t"),
            ("FORWARD_URLS", "https://a.example/hook"),
        ]);
        assert_eq!(c.token().unwrap(), "t");
        assert!(c.aes_key().unwrap().is_none());
        assert_eq!(c.api_base().unwrap(), DEFAULT_API_BASE);
        assert_eq!(c.max_clock_skew().unwrap(), 300);
        assert!(c.forward_secret().unwrap().is_none());
        assert!(c.token_api_key().is_none());
        assert_eq!(c.token_endpoint().unwrap(), TokenEndpoint::Stable);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn forward_urls_split_on_commas_and_whitespace() {
        let c = load(&[(
            "FORWARD_URLS",
            " https://a.example/x,http://127.0.0.1:9000/y\n https://b.example ",
        )]);
        assert_eq!(
            c.forward_urls().unwrap(),
            [
                "https://a.example/x",
                "http://127.0.0.1:9000/y",
                "https://b.example/"
            ]
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let c = load(&[
            ("WECHAT_ENCODING_AES_KEY", "short"),
            ("FORWARD_URLS", "https://ok.example, ftp://bad"),
            ("MAX_CLOCK_SKEW_SECONDS", "five"),
            ("FORWARD_SECRET", "whsec_***"),
            ("WECHAT_API_BASE", "not a url"),
            ("WECHAT_TOKEN_ENDPOINT", "fast"),
        ]);
        let names: Vec<_> = c.problems().iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            [
                "WECHAT_TOKEN",
                "WECHAT_ENCODING_AES_KEY",
                "WECHAT_API_BASE",
                "FORWARD_URLS",
                "FORWARD_SECRET",
                "MAX_CLOCK_SKEW_SECONDS",
                "WECHAT_TOKEN_ENDPOINT"
            ]
        );
        assert!(c.token().unwrap_err().to_string().contains("WECHAT_TOKEN"));
        assert!(c
            .require_app_id()
            .unwrap_err()
            .to_string()
            .contains("WECHAT_APP_ID"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = load(&[
            ("WECHAT_TOKEN", "tok-secret"),
            ("WECHAT_APP_SECRET", "app-secret-value"),
            ("FORWARD_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            (
                "WECHAT_ENCODING_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
        ]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("app-secret-value"));
        assert!(!debug.contains("MfKQ9r8"));
        assert!(!debug.contains("tok-secret"));
        assert!(!debug.contains("bearer-key-value"));
    }
}
