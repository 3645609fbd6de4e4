//! Settings, read from environment bindings through a lookup function, once per request.
//!
//! Loading never fails: each setting is validated on its own and kept as a `Result`, so a
//! malformed `FORWARD_URLS` does not break URL verification, and the request that needs a broken
//! setting gets an error naming it. The accounts' own settings are in [`crate::accounts`].

use crate::accounts::{Account, DEFAULT_ACCOUNT};
use crate::error::Error;
use crate::webhook::WebhookSecret;

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// The names of the bindings that are not settings: the shell looks them up by these.
pub mod bindings {
    /// Workers KV: credentials, dead letters, platform state.
    pub const KV: &str = "WECHAT_KV";
}

/// A missing or malformed setting, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.to_owned(),
            problem: problem.into(),
        }
    }
    pub fn missing(setting: &str) -> Self {
        ConfigError::new(setting, "is not set")
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "setting {} {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) type Setting<T> = Result<T, ConfigError>;

/// A secret string whose `Debug` output is redacted.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
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
    default_account: Account,
    forward_urls: Setting<Vec<String>>,
    forward_secret: Setting<Option<WebhookSecret>>,
    max_clock_skew: Setting<u64>,
    token_api_key: Option<Secret>,
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
            default_account: Account::default_from(&get),
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
        }
    }

    /// The account called `name`; an unknown name is 404.
    pub fn account(&self, name: &str) -> Result<&Account, Error> {
        match name {
            DEFAULT_ACCOUNT => Ok(&self.default_account),
            _ => Err(Error::NotFound),
        }
    }

    /// The account `default`.
    pub fn default_account(&self) -> &Account {
        &self.default_account
    }

    /// Every account that is configured.
    pub fn accounts(&self) -> Vec<&Account> {
        vec![&self.default_account]
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

    /// Every setting that is present but malformed (or required and missing), for start-up logs.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = self.default_account.problems();
        problems.extend(
            [
                self.forward_urls.as_ref().err(),
                self.forward_secret.as_ref().err(),
                self.max_clock_skew.as_ref().err(),
            ]
            .into_iter()
            .flatten()
            .cloned(),
        );
        problems
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
pub(crate) fn parse_http_url(s: &str) -> Result<String, String> {
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
    use crate::access_token::TokenEndpoint;
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
        let a = c.default_account();
        assert_eq!(a.token().unwrap(), "t");
        assert!(a.aes_key().unwrap().is_none());
        assert_eq!(a.api_base().unwrap(), DEFAULT_API_BASE);
        assert_eq!(a.token_endpoint().unwrap(), TokenEndpoint::Stable);
        assert_eq!(c.max_clock_skew().unwrap(), 300);
        assert!(c.forward_secret().unwrap().is_none());
        assert!(c.token_api_key().is_none());
        assert!(c.problems().is_empty());
        assert_eq!(c.account("default").unwrap().name(), "default");
        assert_eq!(c.account("nope").unwrap_err(), Error::NotFound);
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
        let names: Vec<_> = c.problems().into_iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            [
                "WECHAT_TOKEN",
                "WECHAT_ENCODING_AES_KEY",
                "WECHAT_API_BASE",
                "WECHAT_TOKEN_ENDPOINT",
                "FORWARD_URLS",
                "FORWARD_SECRET",
                "MAX_CLOCK_SKEW_SECONDS",
            ]
        );
        let a = c.default_account();
        assert!(a.token().unwrap_err().to_string().contains("WECHAT_TOKEN"));
        assert!(a
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
