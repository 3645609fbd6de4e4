//! Accounts: each WeChat account the relay serves, with its own secrets, API base and token
//! endpoint. The single-account settings (`WECHAT_TOKEN`, `WECHAT_APP_ID`, ...) are the account
//! `default`.
//!
//! Each setting is kept as a `Result`, so an account with no AppSecret still verifies callbacks,
//! and the request that needs a missing setting gets an error naming it.

use crate::access_token::TokenEndpoint;
use crate::config::{parse_http_url, ConfigError, Secret, Setting, DEFAULT_API_BASE};
use crate::crypto::AesKey;

pub const DEFAULT_ACCOUNT: &str = "default";

/// Whether `name` is a valid account name: `^[a-z][a-z0-9_]{0,31}$`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The kinds of WeChat account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A service or subscription Official Account.
    Official,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Official => "official",
        }
    }
}

/// One account's settings. Secrets never appear in `Debug` output.
#[derive(Debug, Clone)]
pub struct Account {
    name: String,
    kind: Kind,
    app_id: Option<String>,
    token: Setting<Secret>,
    aes_key: Setting<Option<AesKey>>,
    app_secret: Setting<Secret>,
    api_base: Setting<String>,
    token_endpoint: Setting<TokenEndpoint>,
    /// Setting names, for error messages.
    names: SettingNames,
}

#[derive(Debug, Clone)]
struct SettingNames {
    token: String,
    aes_key: String,
    app_id: String,
}

impl Account {
    /// The account `default`, from the single-account settings. `get` returns a trimmed,
    /// non-empty value or `None`.
    pub(crate) fn default_from(get: &dyn Fn(&str) -> Option<String>) -> Account {
        Account {
            name: DEFAULT_ACCOUNT.to_owned(),
            kind: Kind::Official,
            app_id: get("WECHAT_APP_ID"),
            token: secret(get, "WECHAT_TOKEN"),
            aes_key: aes_key(get, "WECHAT_ENCODING_AES_KEY"),
            app_secret: secret(get, "WECHAT_APP_SECRET"),
            api_base: api_base(get("WECHAT_API_BASE"), "WECHAT_API_BASE"),
            token_endpoint: match get("WECHAT_TOKEN_ENDPOINT") {
                None => Ok(TokenEndpoint::Stable),
                Some(v) => v
                    .parse()
                    .map_err(|p| ConfigError::new("WECHAT_TOKEN_ENDPOINT", p)),
            },
            names: SettingNames {
                token: "WECHAT_TOKEN".into(),
                aes_key: "WECHAT_ENCODING_AES_KEY".into(),
                app_id: "WECHAT_APP_ID".into(),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
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

    /// The AES key, required because WeChat sent an encrypted callback.
    pub fn require_aes_key(&self) -> Result<&AesKey, ConfigError> {
        self.aes_key()?.ok_or_else(|| {
            ConfigError::new(
                &self.names.aes_key,
                "is not set, but WeChat sent an encrypted (safe or compatible mode) callback",
            )
        })
    }

    /// The AppID, which encrypted callbacks must carry.
    pub fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    pub fn require_app_id(&self) -> Result<&str, ConfigError> {
        self.app_id().ok_or_else(|| {
            ConfigError::new(
                &self.names.app_id,
                "is not set: it is needed to check the AppID inside encrypted messages and to fetch tokens",
            )
        })
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

    pub fn token_endpoint(&self) -> Result<TokenEndpoint, ConfigError> {
        self.token_endpoint.clone()
    }

    /// Every setting that is present but malformed (or required and missing).
    pub fn problems(&self) -> Vec<ConfigError> {
        [
            self.token.as_ref().err(),
            self.aes_key.as_ref().err(),
            self.api_base.as_ref().err(),
            self.token_endpoint.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The name the token setting goes by, for messages.
    pub fn token_setting(&self) -> &str {
        &self.names.token
    }
}

fn secret(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Setting<Secret> {
    get(name)
        .map(Secret::new)
        .ok_or_else(|| ConfigError::missing(name))
}

fn aes_key(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Setting<Option<AesKey>> {
    get(name)
        .map(|k| {
            AesKey::from_encoding_aes_key(&k).map_err(|e| ConfigError::new(name, e.to_string()))
        })
        .transpose()
}

fn api_base(value: Option<String>, name: &str) -> Setting<String> {
    match value {
        None => Ok(DEFAULT_API_BASE.to_owned()),
        Some(base) => parse_http_url(&base)
            .map(|u| u.trim_end_matches('/').to_owned())
            .map_err(|p| ConfigError::new(name, p)),
    }
}
