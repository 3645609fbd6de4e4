//! The building blocks of settings: a named configuration error, a setting's result, a secret
//! that never shows in `Debug`, and the parsers that several settings share (bounded JSON
//! documents, http(s) URLs). No domain type lives here.

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
        ConfigError::new(setting, MISSING)
    }
    /// Whether the setting is absent (rather than malformed).
    pub fn is_missing(&self) -> bool {
        self.problem == MISSING
    }
}

const MISSING: &str = "is not set";

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

/// A setting that holds a JSON object (`WECHAT_ACCOUNTS`, `FORWARD_ROUTES`): bounded in size and
/// keys, every failure a [`ConfigError`] naming the setting. `shape` says what the object maps.
pub(crate) fn json_object(
    setting: &str,
    document: &str,
    max_bytes: usize,
    max_keys: usize,
    shape: &str,
) -> Setting<serde_json::Map<String, serde_json::Value>> {
    let err = |p: String| ConfigError::new(setting, p);
    if document.len() > max_bytes {
        return Err(err(format!("is larger than {max_bytes} bytes")));
    }
    let value: serde_json::Value = serde_json::from_str(document).map_err(|e| {
        let why: String = e.to_string().chars().take(100).collect();
        err(format!("is not valid JSON ({why})"))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(err(format!("must be a JSON object mapping {shape}")));
    };
    if map.len() > max_keys {
        return Err(err(format!("has more than {max_keys} keys")));
    }
    Ok(map)
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
