//! Accounts: each WeChat account the relay serves, with its own kind, secrets, API base and
//! token endpoint. The single-account settings (`WECHAT_TOKEN`, `WECHAT_APP_ID`, ...) are the
//! account `default`; `WECHAT_ACCOUNTS`, a JSON document, names more:
//!
//! ```json
//! {"shop":  {"kind": "official", "app_id": "wx..."},
//!  "staff": {"kind": "wecom", "corp_id": "ww...", "agent_id": "1000002"},
//!  "mini":  {"kind": "miniprogram", "app_id": "wx...", "format": "json"}}
//! ```
//!
//! Each named account's secrets are `WECHAT_<NAME>_TOKEN`, `WECHAT_<NAME>_ENCODING_AES_KEY` and
//! `WECHAT_<NAME>_APP_SECRET`. Each setting is kept as a `Result`, so an account with no
//! AppSecret still verifies callbacks, an account with a broken entry does not break the others,
//! and the request that needs a missing or malformed setting gets an error naming it, never
//! another account's secrets.

pub mod kind;

use std::collections::BTreeMap;

pub use crate::account::kind::{Kind, TokenEndpoint};
use crate::settings::{parse_http_url, ConfigError, Secret, Setting};
use crate::wire::crypto::AesKey;

pub const DEFAULT_ACCOUNT: &str = "default";
/// WeChat's API.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
/// WeCom's API.
pub const DEFAULT_WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com";
/// Largest `WECHAT_ACCOUNTS` document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const MAX_ACCOUNTS: usize = 200;

/// Whether `name` is a valid account name: `^[a-z][a-z0-9_]{0,31}$`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// How an account's callbacks arrive: the console's 消息加解密方式 (message encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageMode {
    /// 明文模式: plaintext only, no EncodingAESKey needed.
    Plain,
    /// 兼容模式: plaintext and encrypted both, for switching a live account without a gap.
    Compatible,
    /// 安全模式: only `encrypt_type=aes` with a valid `msg_signature`.
    Safe,
}

impl MessageMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageMode::Plain => "plain",
            MessageMode::Compatible => "compatible",
            MessageMode::Safe => "safe",
        }
    }

    fn parse(mode: &str) -> Option<MessageMode> {
        Some(match mode.to_ascii_lowercase().as_str() {
            "plain" => MessageMode::Plain,
            "compatible" => MessageMode::Compatible,
            "safe" => MessageMode::Safe,
            _ => return None,
        })
    }

    /// Whether a callback without `encrypt_type=aes` is accepted.
    pub fn accepts_plaintext(self) -> bool {
        self != MessageMode::Safe
    }

    /// Whether an encrypted callback is accepted.
    pub fn accepts_encrypted(self) -> bool {
        self != MessageMode::Plain
    }
}

/// An account's message mode: its own `mode`, else `WECHAT_MESSAGE_MODE`, else `safe` when it
/// has an EncodingAESKey and `plain` when not. WeCom apps and platforms are always `safe`. A
/// mode that needs a key the account lacks is an error naming both.
fn message_mode(
    kind: Kind,
    own: Option<(String, String)>,
    default: Option<String>,
    aes_key: &Setting<Option<AesKey>>,
    key_setting: &str,
) -> Setting<MessageMode> {
    let (value, setting) = match (own, kind.always_encrypted()) {
        (Some((value, setting)), true) => {
            return match MessageMode::parse(&value) {
                Some(MessageMode::Safe) => Ok(MessageMode::Safe),
                _ => Err(ConfigError::new(
                    &setting,
                    format!(
                        "must be \"safe\" or unset: a {} account's callbacks are always encrypted",
                        kind.as_str()
                    ),
                )),
            };
        }
        (None, true) => return Ok(MessageMode::Safe),
        (Some(own), false) => own,
        (None, false) => match default {
            Some(value) => (value, MODE_SETTING.to_owned()),
            None => {
                return aes_key.as_ref().map_err(Clone::clone).map(|key| match key {
                    Some(_) => MessageMode::Safe,
                    None => MessageMode::Plain,
                })
            }
        },
    };
    let mode = MessageMode::parse(&value)
        .ok_or_else(|| ConfigError::new(&setting, "must be one of plain, compatible, safe"))?;
    if mode.accepts_encrypted() {
        if let Ok(None) = aes_key {
            return Err(ConfigError::new(
                &setting,
                format!(
                    "is {}, which needs {key_setting}, and {key_setting} is not set",
                    mode.as_str()
                ),
            ));
        }
    }
    Ok(mode)
}

/// The setting that gives every account its default message mode.
pub const MODE_SETTING: &str = "WECHAT_MESSAGE_MODE";

/// The message format an account's console is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    Xml,
    Json,
}

/// One account's settings. Secrets never appear in `Debug` output.
#[derive(Debug, Clone)]
pub struct Account {
    name: String,
    kind: Kind,
    /// The AppID (WeCom: the corp id): the receive id inside every ciphertext.
    app_id: Option<String>,
    agent_id: Option<String>,
    format: MessageFormat,
    mode: Setting<MessageMode>,
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
    app_secret: String,
}

/// Whether a setting an account uses is there: never its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingState {
    Present,
    Missing,
    Malformed,
    /// Not set, and not needed the way the account is set up.
    Optional,
}

/// One setting of a new account's setup check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingCheck {
    pub setting: String,
    /// A secret (`wrangler secret put`) rather than a variable or a `WECHAT_ACCOUNTS` field.
    pub secret: bool,
    pub state: SettingState,
    /// What it is needed for.
    pub needed_for: &'static str,
    /// What is wrong with it, when something is (the setting's name and the problem only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn check<T>(
    setting: &str,
    secret: bool,
    value: &Setting<T>,
    needed_for: &'static str,
    absent: impl Fn(&T) -> bool,
) -> SettingCheck {
    let (state, problem) = match value {
        Ok(v) if absent(v) => (SettingState::Optional, None),
        Ok(_) => (SettingState::Present, None),
        Err(e) if e.is_missing() => (SettingState::Missing, None),
        Err(e) => (SettingState::Malformed, Some(e.to_string())),
    };
    SettingCheck {
        setting: setting.to_owned(),
        secret,
        state,
        needed_for,
        problem,
    }
}

/// What the single-account settings give every account by default.
struct Defaults {
    api_base: Option<String>,
    wecom_api_base: Option<String>,
    token_endpoint: Option<String>,
    mode: Option<String>,
}

impl Defaults {
    fn from(get: &dyn Fn(&str) -> Option<String>) -> Defaults {
        Defaults {
            api_base: get("WECHAT_API_BASE"),
            wecom_api_base: get("WECOM_API_BASE"),
            token_endpoint: get("WECHAT_TOKEN_ENDPOINT"),
            mode: get(MODE_SETTING),
        }
    }
}

fn token_endpoint(value: Option<String>, setting: &str) -> Setting<TokenEndpoint> {
    match value {
        None => Ok(TokenEndpoint::Stable),
        Some(v) => v.parse().map_err(|p| ConfigError::new(setting, p)),
    }
}

impl Account {
    /// The account `default`, from the single-account settings. `get` returns a trimmed,
    /// non-empty value or `None`.
    pub(crate) fn default_from(get: &dyn Fn(&str) -> Option<String>) -> Account {
        let defaults = Defaults::from(get);
        let key = aes_key(get, "WECHAT_ENCODING_AES_KEY");
        Account {
            name: DEFAULT_ACCOUNT.to_owned(),
            kind: Kind::Official,
            app_id: get("WECHAT_APP_ID"),
            agent_id: None,
            format: MessageFormat::Xml,
            mode: message_mode(
                Kind::Official,
                None,
                defaults.mode.clone(),
                &key,
                "WECHAT_ENCODING_AES_KEY",
            ),
            token: secret(get, "WECHAT_TOKEN"),
            aes_key: key,
            app_secret: secret(get, "WECHAT_APP_SECRET"),
            api_base: api_base(defaults.api_base, DEFAULT_API_BASE, "WECHAT_API_BASE"),
            token_endpoint: token_endpoint(defaults.token_endpoint, "WECHAT_TOKEN_ENDPOINT"),
            names: SettingNames {
                token: "WECHAT_TOKEN".into(),
                aes_key: "WECHAT_ENCODING_AES_KEY".into(),
                app_id: "WECHAT_APP_ID".into(),
                app_secret: "WECHAT_APP_SECRET".into(),
            },
        }
    }

    /// A named account from its `WECHAT_ACCOUNTS` entry and its secrets.
    fn named(
        name: &str,
        entry: &serde_json::Value,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Account, ConfigError> {
        let doc = |field: &str| format!("WECHAT_ACCOUNTS ({name}.{field})");
        let err = |field: &str, problem: String| ConfigError::new(&doc(field), problem);
        if !is_valid_name(name) {
            return Err(ConfigError::new(
                "WECHAT_ACCOUNTS",
                format!("account {name:?}: a name must match ^[a-z][a-z0-9_]{{0,31}}$"),
            ));
        }
        if name == DEFAULT_ACCOUNT {
            return Err(ConfigError::new(
                "WECHAT_ACCOUNTS",
                "account \"default\" is the single-account settings (WECHAT_TOKEN, WECHAT_APP_ID, ...); name the others",
            ));
        }
        let serde_json::Value::Object(fields) = entry else {
            return Err(ConfigError::new(
                "WECHAT_ACCOUNTS",
                format!("account {name:?} must be an object such as {{\"kind\": \"official\", \"app_id\": \"wx...\"}}"),
            ));
        };
        let text = |field: &str| -> Result<Option<String>, ConfigError> {
            match fields.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Ok(Some(s.trim().to_owned()))
                }
                Some(serde_json::Value::Number(n)) if field == "agent_id" => {
                    Ok(Some(n.to_string()))
                }
                Some(_) => Err(err(field, "must be a non-empty string".into())),
            }
        };
        let kind_text = text("kind")?.ok_or_else(|| {
            err(
                "kind",
                "is missing: one of official, wecom, miniprogram, component".into(),
            )
        })?;
        let kind = Kind::parse(&kind_text).ok_or_else(|| {
            err(
                "kind",
                "is not one of official, wecom, miniprogram, component".to_owned(),
            )
        })?;
        if let Some(unknown) = fields.keys().find(|k| !kind.fields().contains(&k.as_str())) {
            return Err(err(
                unknown,
                format!(
                    "is not a field of a {} account (fields: {})",
                    kind.as_str(),
                    kind.fields().join(", ")
                ),
            ));
        }
        let id_field = if kind == Kind::WeCom {
            "corp_id"
        } else {
            "app_id"
        };
        let app_id = text(id_field)?.ok_or_else(|| err(id_field, "is missing".into()))?;
        let agent_id = text("agent_id")?;
        if let Some(a) = &agent_id {
            if !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("agent_id", "is not a number".into()));
            }
        }
        let format = match text("format")?.as_deref() {
            None | Some("xml") => MessageFormat::Xml,
            Some("json") => MessageFormat::Json,
            Some(_) => return Err(err("format", "is not xml or json".into())),
        };
        let defaults = Defaults::from(get);
        let (base, fallback, base_setting) = match (text("api_base")?, kind) {
            (Some(own), _) => (Some(own), DEFAULT_API_BASE, doc("api_base")),
            (None, Kind::WeCom) => (
                defaults.wecom_api_base,
                DEFAULT_WECOM_API_BASE,
                "WECOM_API_BASE".to_owned(),
            ),
            (None, _) => (
                defaults.api_base,
                DEFAULT_API_BASE,
                "WECHAT_API_BASE".to_owned(),
            ),
        };
        let endpoint = match text("token_endpoint")? {
            Some(own) => token_endpoint(Some(own), &doc("token_endpoint")),
            None => token_endpoint(defaults.token_endpoint, "WECHAT_TOKEN_ENDPOINT"),
        };
        let upper = name.to_ascii_uppercase();
        let setting = |what: &str| format!("WECHAT_{upper}_{what}");
        let key = aes_key(get, &setting("ENCODING_AES_KEY"));
        let mode = message_mode(
            kind,
            text("mode")?.map(|m| (m, doc("mode"))),
            defaults.mode.clone(),
            &key,
            &setting("ENCODING_AES_KEY"),
        );
        Ok(Account {
            name: name.to_owned(),
            kind,
            app_id: Some(app_id),
            agent_id,
            format,
            mode,
            token: secret(get, &setting("TOKEN")),
            aes_key: key,
            app_secret: secret(get, &setting("APP_SECRET")),
            api_base: api_base(base, fallback, &base_setting),
            token_endpoint: endpoint,
            names: SettingNames {
                token: setting("TOKEN"),
                aes_key: setting("ENCODING_AES_KEY"),
                app_id: doc(id_field),
                app_secret: setting("APP_SECRET"),
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The WeCom app's AgentID, when configured.
    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    /// The message mode set in the console (safe for WeCom apps and platforms).
    pub fn message_mode(&self) -> Result<MessageMode, ConfigError> {
        self.mode.clone()
    }

    /// The message format set in the console (Mini Programs choose; the others push XML).
    pub fn format(&self) -> MessageFormat {
        self.format
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

    /// The AppID (WeCom: the corp id), which encrypted callbacks must carry.
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
            self.mode.as_ref().err(),
            self.api_base.as_ref().err(),
            self.token_endpoint.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .fold(Vec::new(), |mut all, e| {
            // An unset mode follows the key: a malformed key is one problem, not two.
            if !all.contains(&e) {
                all.push(e);
            }
            all
        })
    }

    /// The setup check: each setting the account uses, whether it is there, and what for.
    pub fn setup(&self) -> Vec<SettingCheck> {
        let app_id: Setting<Option<&str>> = Ok(self.app_id());
        let mut app_id = check(
            &self.names.app_id,
            false,
            &app_id,
            "checking encrypted messages' AppID and fetching tokens",
            Option::is_none,
        );
        if app_id.state == SettingState::Optional {
            app_id.state = SettingState::Missing;
        }
        let mut aes_key = check(
            &self.names.aes_key,
            true,
            &self.aes_key,
            "safe and compatible mode (decrypting callbacks)",
            Option::is_none,
        );
        // Unset, though the account's mode needs it.
        if let (SettingState::Optional, Err(e)) = (&aes_key.state, &self.mode) {
            if e.setting == self.names.aes_key {
                aes_key.state = SettingState::Missing;
                aes_key.problem = Some(e.to_string());
            }
        }
        vec![
            check(
                &self.names.token,
                true,
                &self.token,
                "verifying WeChat's signatures",
                |_| false,
            ),
            aes_key,
            app_id,
            check(
                &self.names.app_secret,
                true,
                &self.app_secret,
                "access tokens, the token API and passive replies through the API",
                |_| false,
            ),
        ]
    }

    /// The name the token setting goes by, for messages.
    pub fn token_setting(&self) -> &str {
        &self.names.token
    }
}

/// The named accounts of `WECHAT_ACCOUNTS`: each entry an account or the error that names what
/// is wrong with it.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    entries: BTreeMap<String, Result<Account, ConfigError>>,
}

impl Accounts {
    /// Parses the document; `get` reads the accounts' secrets. A document that is not a JSON
    /// object of objects is one error for every named account.
    pub fn parse(
        document: &str,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Accounts, ConfigError> {
        let map = crate::settings::json_object(
            "WECHAT_ACCOUNTS",
            document,
            MAX_DOCUMENT_BYTES,
            MAX_ACCOUNTS,
            "account names to accounts",
        )?;
        let entries = map
            .iter()
            .map(|(name, entry)| (name.clone(), Account::named(name, entry, get)))
            .collect();
        Ok(Accounts { entries })
    }

    /// The entry called `name`: `None` when there is none.
    pub fn get(&self, name: &str) -> Option<&Result<Account, ConfigError>> {
        self.entries.get(name)
    }

    /// Every account that parsed.
    pub fn valid(&self) -> impl Iterator<Item = &Account> {
        self.entries.values().filter_map(|e| e.as_ref().ok())
    }

    /// Every entry's error.
    pub fn problems(&self) -> impl Iterator<Item = &ConfigError> {
        self.entries.values().filter_map(|e| e.as_ref().err())
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

fn api_base(value: Option<String>, fallback: &str, name: &str) -> Setting<String> {
    match value {
        None => Ok(fallback.to_owned()),
        Some(base) => parse_http_url(&base)
            .map(|u| u.trim_end_matches('/').to_owned())
            .map_err(|p| ConfigError::new(name, p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::Error;
    use crate::testing::config;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const DOC: &str = r#"{
        "shop": {"kind": "official", "app_id": "wxshop"},
        "staff": {"kind": "wecom", "corp_id": "ww_corp", "agent_id": "1000002"},
        "mini": {"kind": "miniprogram", "app_id": "wxmini", "format": "json", "api_base": "https://api2.weixin.qq.com/"}
    }"#;

    fn three(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("WECHAT_ACCOUNTS", DOC),
            ("WECHAT_TOKEN", "default-token"),
            ("WECHAT_SHOP_TOKEN", "shop-token"),
            ("WECHAT_SHOP_ENCODING_AES_KEY", KEY),
            ("WECHAT_SHOP_APP_SECRET", "shop-secret"),
            ("WECHAT_STAFF_TOKEN", "staff-token"),
            ("WECHAT_STAFF_ENCODING_AES_KEY", KEY),
            ("WECHAT_STAFF_APP_SECRET", "staff-secret"),
            ("WECHAT_MINI_TOKEN", "mini-token"),
        ];
        pairs.extend_from_slice(extra);
        config(&pairs)
    }

    #[test]
    fn every_kind_from_one_document() {
        let c = three(&[]);
        let shop = c.account("shop").unwrap();
        assert_eq!(
            (shop.kind(), shop.app_id(), shop.token().unwrap()),
            (Kind::Official, Some("wxshop"), "shop-token")
        );
        assert_eq!(shop.app_secret().unwrap(), "shop-secret");
        assert_eq!(shop.api_base().unwrap(), DEFAULT_API_BASE);
        let staff = c.account("staff").unwrap();
        assert_eq!(
            (staff.kind(), staff.app_id(), staff.agent_id()),
            (Kind::WeCom, Some("ww_corp"), Some("1000002"))
        );
        assert_eq!(staff.api_base().unwrap(), DEFAULT_WECOM_API_BASE);
        assert!(staff.kind().always_encrypted());
        let mini = c.account("mini").unwrap();
        assert_eq!(
            (mini.kind(), mini.format()),
            (Kind::MiniProgram, MessageFormat::Json)
        );
        assert_eq!(mini.api_base().unwrap(), "https://api2.weixin.qq.com");
        assert_eq!(
            c.account("default").unwrap().token().unwrap(),
            "default-token"
        );
        assert_eq!(c.account("nobody").unwrap_err(), Error::NotFound);
        let names: Vec<&str> = c.accounts().iter().map(|a| a.name()).collect();
        assert_eq!(names, ["default", "mini", "shop", "staff"]);
    }

    #[test]
    fn a_missing_secret_is_named_and_never_borrowed() {
        let c = three(&[]);
        let mini = c.account("mini").unwrap();
        let e = mini.app_secret().unwrap_err();
        assert_eq!(e.setting, "WECHAT_MINI_APP_SECRET");
        assert!(
            mini.aes_key().unwrap().is_none(),
            "no key of the default account or another"
        );
        let e = mini.require_aes_key().unwrap_err();
        assert_eq!(e.setting, "WECHAT_MINI_ENCODING_AES_KEY");
        let c = three(&[("WECHAT_SHOP_TOKEN", "")]);
        assert_eq!(
            c.account("shop").unwrap().token().unwrap_err().setting,
            "WECHAT_SHOP_TOKEN"
        );
    }

    #[test]
    fn broken_entries_are_errors_naming_the_account_and_the_setting() {
        for (doc, name, needle) in [
            (r#"{"shop": {"kind": "official"}}"#, "shop", "shop.app_id"),
            (
                r#"{"shop": {"kind": "bank", "app_id": "wx"}}"#,
                "shop",
                "not one of official",
            ),
            (r#"{"shop": {"app_id": "wx"}}"#, "shop", "shop.kind"),
            (
                r#"{"shop": {"kind": "official", "app_id": "wx", "appid": "typo"}}"#,
                "shop",
                "shop.appid",
            ),
            (
                r#"{"shop": {"kind": "official", "app_id": 5}}"#,
                "shop",
                "non-empty string",
            ),
            (
                r#"{"staff": {"kind": "wecom", "app_id": "wx"}}"#,
                "staff",
                "staff.app_id",
            ),
            (
                r#"{"staff": {"kind": "wecom", "corp_id": "ww", "agent_id": "abc"}}"#,
                "staff",
                "agent_id",
            ),
            (
                r#"{"mini": {"kind": "miniprogram", "app_id": "wx", "format": "yaml"}}"#,
                "mini",
                "mini.format",
            ),
            (r#"{"shop": "official"}"#, "shop", "must be an object"),
            (
                r#"{"Shop": {"kind": "official", "app_id": "wx"}}"#,
                "Shop",
                "a name must match",
            ),
            (
                r#"{"default": {"kind": "official", "app_id": "wx"}}"#,
                "default_is_reserved",
                "",
            ),
        ] {
            let c = config(&[("WECHAT_ACCOUNTS", doc)]);
            if name == "default_is_reserved" {
                assert!(
                    c.problems()
                        .iter()
                        .any(|p| p.problem.contains("single-account")),
                    "{doc}"
                );
                continue;
            }
            let e = c.account(name).unwrap_err();
            assert_eq!(e.status(), 500, "{doc}");
            let text = e.to_string();
            assert!(text.contains(needle), "{doc}: {text}");
            assert!(text.contains("WECHAT_ACCOUNTS"), "{doc}: {text}");
        }
        // A malformed API base or token endpoint is that setting's error: callbacks still verify.
        let c = config(&[(
            "WECHAT_ACCOUNTS",
            r#"{"shop": {"kind": "official", "app_id": "wx", "api_base": "ftp://x", "token_endpoint": "fast"}}"#,
        )]);
        let shop = c.account("shop").unwrap();
        assert!(shop
            .api_base()
            .unwrap_err()
            .to_string()
            .contains("shop.api_base"));
        assert!(shop
            .token_endpoint()
            .unwrap_err()
            .to_string()
            .contains("shop.token_endpoint"));
        // One broken entry does not break the others, nor the default account.
        let c = config(&[
            (
                "WECHAT_ACCOUNTS",
                r#"{"bad": {"kind": "x"}, "good": {"kind": "official", "app_id": "wx"}}"#,
            ),
            ("WECHAT_GOOD_TOKEN", "t"),
        ]);
        assert!(c.account("good").is_ok());
        assert!(c.account("default").is_ok());
        assert!(c.account("bad").is_err());
    }

    #[test]
    fn a_broken_document_breaks_named_accounts_only() {
        for doc in ["{", "[]", "\"x\"", "5"] {
            let c = config(&[("WECHAT_ACCOUNTS", doc), ("WECHAT_TOKEN", "t")]);
            let e = c.account("shop").unwrap_err();
            assert!(e.to_string().contains("WECHAT_ACCOUNTS"), "{doc}: {e}");
            assert_eq!(c.account("default").unwrap().token().unwrap(), "t");
            assert_eq!(c.accounts().len(), 1);
        }
        let huge = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(config(&[("WECHAT_ACCOUNTS", &huge)])
            .account("a")
            .unwrap_err()
            .to_string()
            .contains("larger"));
    }

    #[test]
    fn account_api_bases_fall_back_per_kind() {
        let c = three(&[
            ("WECHAT_API_BASE", "https://proxy.example/wx"),
            ("WECOM_API_BASE", "https://proxy.example/work"),
        ]);
        assert_eq!(
            c.account("shop").unwrap().api_base().unwrap(),
            "https://proxy.example/wx"
        );
        assert_eq!(
            c.account("staff").unwrap().api_base().unwrap(),
            "https://proxy.example/work"
        );
        assert_eq!(
            c.account("mini").unwrap().api_base().unwrap(),
            "https://api2.weixin.qq.com",
            "its own wins"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let debug = format!("{:?}", three(&[]));
        for secret in ["shop-secret", "staff-secret", "shop-token", "staff-token"] {
            assert!(!debug.contains(secret), "{secret}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "shop", "shop_2", "a23456789012345678901234567890ab"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "A",
            "2shop",
            "_x",
            "shop-2",
            "a234567890123456789012345678901ab",
            "shöp",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn hostile_documents_never_panic() {
        let mut state = 0xdeadbeefcafef00du64;
        for _ in 0..3_000 {
            let mut bytes = DOC.as_bytes().to_vec();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % bytes.len();
                bytes[i] = (state >> 32) as u8;
            }
            let doc = String::from_utf8_lossy(&bytes).into_owned();
            let c = config(&[("WECHAT_ACCOUNTS", &doc)]);
            let _ = c.problems();
            for name in ["shop", "staff", "mini"] {
                let _ = c.account(name);
            }
        }
    }
}
