//! Settings, read from environment bindings through a lookup function, once per request.
//!
//! Loading never fails: each setting is validated on its own and kept as a `Result`, so a
//! malformed `FORWARD_URLS` does not break URL verification, and the request that needs a broken
//! setting gets an error naming it. The accounts' own settings are in [`crate::account`].

use crate::account::{Account, Accounts, DEFAULT_ACCOUNT};
use crate::delivery::jobs::Schedule;
pub use crate::delivery::jobs::MAX_DELAY_SECS;
use crate::delivery::targets::{self, Routes};
use crate::delivery::webhook::WebhookSecret;
use crate::error::Error;
use crate::event::Event;
use crate::ports::Destination;
use crate::settings::Setting;
pub use crate::settings::{ConfigError, Secret};

pub use crate::account::DEFAULT_API_BASE;
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 300;
/// The widest timestamp window accepted (15 minutes).
pub const MAX_MAX_CLOCK_SKEW_SECONDS: u64 = 900;
/// The retry schedule: 5 s, 15 s, 45 s, 2 min, 5 min, then every 15 min.
pub const DEFAULT_RETRY_DELAYS: &str = "5s 15s 45s 2m 5m 15m";
/// With the default schedule the last attempt comes about 22.5 hours after the first, inside
/// the free plan's 24 hours of queue retention.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 96;
/// Cloudflare Queues retry a message at most 100 times: 101 deliveries.
pub const MAX_MAX_ATTEMPTS: u32 = 101;
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 3_000;
/// The most a passive reply may take, so that WeChat's 5 s always hold.
pub const MAX_REPLY_TIMEOUT_MS: u64 = 4_500;
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "wechat-relay-dead-letters";
/// How long the queue keeps a message: fixed at 24 hours on the free plan.
pub const DEFAULT_QUEUE_RETENTION: &str = "24h";
/// The longest retention Cloudflare Queues offer (Workers Paid).
pub const MAX_QUEUE_RETENTION_SECS: u64 = 14 * 86_400;

/// The names of the bindings that are not settings: the shell looks them up by these.
pub mod bindings {
    /// Workers KV: credentials, dead letters, platform state.
    pub const KV: &str = "WECHAT_KV";
    /// The Cloudflare Queue producer for deliveries.
    pub const FORWARD_QUEUE: &str = "FORWARD_QUEUE";
    /// The Durable Object namespace of the account objects (class `AccountObject`).
    pub const COORDINATOR: &str = "COORDINATOR";
}

/// When the queue is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// Enqueue every delivery before answering WeChat: nothing accepted is ever lost.
    Queue,
    /// One attempt per target right after the answer; only failures are enqueued.
    Direct,
}

/// Every setting of the relay. Secrets never appear in `Debug` output.
#[derive(Debug, Clone)]
pub struct Config {
    default_account: Account,
    /// `WECHAT_ACCOUNTS`, `None` when unset.
    accounts: Setting<Option<Accounts>>,
    /// `None` when unset.
    forward_urls: Setting<Option<Vec<Destination>>>,
    forward_routes: Setting<Option<Routes>>,
    forward_secret: Setting<Option<WebhookSecret>>,
    forward_mode: Setting<ForwardMode>,
    retry_delays: Setting<Vec<u32>>,
    max_attempts: Setting<u32>,
    /// The retry schedule, checked against `QUEUE_RETENTION`.
    schedule: Setting<Schedule>,
    queue_retention: Setting<u64>,
    dead_letter_queue: String,
    reply_url: Setting<Option<Destination>>,
    reply_timeout_ms: Setting<u64>,
    max_clock_skew: Setting<u64>,
    token_api_key: Option<Secret>,
    admin_api_key: Option<Secret>,
}

impl Config {
    /// Reads every setting through `lookup` (binding name -> value), with no Service Bindings.
    /// Empty values count as unset.
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Config {
        Config::load_with(&lookup, &|_| false)
    }

    /// Reads every setting; `is_bound(name)` says whether a Service Binding exists.
    pub fn load_with(
        lookup: &dyn Fn(&str) -> Option<String>,
        is_bound: &dyn Fn(&str) -> bool,
    ) -> Config {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let retry_delays = parse_delays(
            get("FORWARD_RETRY_DELAYS")
                .as_deref()
                .unwrap_or(DEFAULT_RETRY_DELAYS),
        );
        let max_attempts = match get("FORWARD_MAX_ATTEMPTS") {
            None => Ok(DEFAULT_MAX_ATTEMPTS),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_MAX_ATTEMPTS).contains(&n) => Ok(n),
                _ => Err(ConfigError::new(
                    "FORWARD_MAX_ATTEMPTS",
                    format!("must be a whole number from 1 to {MAX_MAX_ATTEMPTS}"),
                )),
            },
        };
        let retention = parse_retention(
            get("QUEUE_RETENTION")
                .as_deref()
                .unwrap_or(DEFAULT_QUEUE_RETENTION),
        );
        Config {
            default_account: Account::default_from(&get),
            accounts: get("WECHAT_ACCOUNTS")
                .map(|doc| Accounts::parse(&doc, &get))
                .transpose(),
            forward_urls: get("FORWARD_URLS")
                .map(|list| parse_target_list(&list, is_bound))
                .transpose(),
            forward_routes: get("FORWARD_ROUTES")
                .map(|doc| Routes::parse(&doc, is_bound))
                .transpose(),
            forward_mode: match get("FORWARD_MODE")
                .map(|v| v.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("queue") => Ok(ForwardMode::Queue),
                Some("direct") => Ok(ForwardMode::Direct),
                Some(_) => Err(ConfigError::new(
                    "FORWARD_MODE",
                    "must be \"queue\" or \"direct\"",
                )),
            },
            schedule: schedule(&retry_delays, &max_attempts, &retention),
            queue_retention: retention,
            retry_delays,
            max_attempts,
            dead_letter_queue: get("DEAD_LETTER_QUEUE")
                .unwrap_or_else(|| DEFAULT_DEAD_LETTER_QUEUE.to_owned()),
            reply_url: get("REPLY_URL")
                .map(|u| {
                    targets::parse_target(&u, is_bound)
                        .map_err(|p| ConfigError::new("REPLY_URL", p))
                })
                .transpose(),
            reply_timeout_ms: match get("REPLY_TIMEOUT_MS") {
                None => Ok(DEFAULT_REPLY_TIMEOUT_MS),
                Some(v) => v
                    .parse::<u64>()
                    .map(|ms| ms.min(MAX_REPLY_TIMEOUT_MS))
                    .map_err(|_| {
                        ConfigError::new(
                            "REPLY_TIMEOUT_MS",
                            "must be a whole number of milliseconds",
                        )
                    }),
            },
            admin_api_key: get("ADMIN_API_KEY").map(Secret::new),
            forward_secret: get("FORWARD_SECRET")
                .map(|s| {
                    s.parse::<WebhookSecret>()
                        .map_err(|p| ConfigError::new("FORWARD_SECRET", p))
                })
                .transpose(),
            max_clock_skew: match get("MAX_CLOCK_SKEW_SECONDS") {
                None => Ok(DEFAULT_MAX_CLOCK_SKEW_SECONDS),
                Some(v) => match v.parse::<u64>() {
                    Ok(secs) if secs <= MAX_MAX_CLOCK_SKEW_SECONDS => Ok(secs),
                    _ => Err(ConfigError::new(
                        "MAX_CLOCK_SKEW_SECONDS",
                        format!(
                            "must be a whole number of seconds from 0 to {MAX_MAX_CLOCK_SKEW_SECONDS} (a longer window lets a captured callback be replayed longer)"
                        ),
                    )),
                },
            },
            token_api_key: get("TOKEN_API_KEY").map(Secret::new),
        }
    }

    /// The account called `name`: an unknown name is 404; a named account whose entry (or the
    /// whole `WECHAT_ACCOUNTS` document) is broken is the configuration error that says why.
    pub fn account(&self, name: &str) -> Result<&Account, Error> {
        if name == DEFAULT_ACCOUNT {
            return Ok(&self.default_account);
        }
        match &self.accounts {
            Ok(None) => Err(Error::NotFound),
            Err(e) => Err(Error::Config(e.clone())),
            Ok(Some(accounts)) => match accounts.get(name) {
                None => Err(Error::NotFound),
                Some(Ok(account)) => Ok(account),
                Some(Err(e)) => Err(Error::Config(e.clone())),
            },
        }
    }

    /// The account `default`.
    pub fn default_account(&self) -> &Account {
        &self.default_account
    }

    /// Every account that is configured and valid: `default` and the named ones.
    /// The names of the third-party platform accounts (whose state their objects keep).
    pub fn platform_names(&self) -> Vec<String> {
        self.accounts()
            .into_iter()
            .filter(|a| a.kind().is_platform())
            .map(|a| a.name().to_owned())
            .collect()
    }

    pub fn accounts(&self) -> Vec<&Account> {
        let mut all = vec![&self.default_account];
        if let Ok(Some(accounts)) = &self.accounts {
            all.extend(accounts.valid());
        }
        all
    }

    /// The `FORWARD_URLS` targets (none when unset).
    pub fn forward_urls(&self) -> Result<&[Destination], ConfigError> {
        match &self.forward_urls {
            Ok(urls) => Ok(urls.as_deref().unwrap_or_default()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Where `event` goes: every `FORWARD_URLS` target and the `FORWARD_ROUTES` matches. An
    /// error when neither is set, or either is malformed.
    pub fn targets_for(&self, event: &Event) -> Result<Vec<Destination>, ConfigError> {
        let urls = self.forward_urls.as_ref().map_err(Clone::clone)?;
        let routes = self.forward_routes.as_ref().map_err(Clone::clone)?;
        if urls.is_none() && routes.is_none() {
            return Err(ConfigError::new(
                "FORWARD_URLS",
                "is not set (nor FORWARD_ROUTES): there is nowhere to forward events to",
            ));
        }
        if let Some(routes) = routes {
            if let Some(unknown) = routes.accounts().find(|a| self.account(a).is_err()) {
                return Err(ConfigError::new(
                    "FORWARD_ROUTES",
                    format!("names the account {unknown:?}, which is not configured"),
                ));
            }
        }
        Ok(targets::targets(
            event,
            urls.as_deref().unwrap_or_default(),
            routes.as_ref(),
        ))
    }

    pub fn forward_mode(&self) -> Result<ForwardMode, ConfigError> {
        self.forward_mode.clone()
    }

    /// The delay before retry n (1-based) is `retry_delays[n - 1]`, the last one repeating.
    pub fn retry_delays(&self) -> Result<&[u32], ConfigError> {
        self.retry_delays.as_deref().map_err(Clone::clone)
    }

    pub fn max_attempts(&self) -> Result<u32, ConfigError> {
        self.max_attempts.clone()
    }

    /// `QUEUE_RETENTION` in seconds; when it is malformed, the shortest it may be (1 hour),
    /// so that nothing waits past the real one.
    pub fn queue_retention_secs(&self) -> u64 {
        self.queue_retention.clone().unwrap_or(3_600)
    }

    /// The retry schedule, which must fit in the queue's retention.
    pub fn schedule(&self) -> Result<&Schedule, ConfigError> {
        self.schedule.as_ref().map_err(Clone::clone)
    }

    /// The name of the dead-letter queue, which the consumer tells apart by it.
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letter_queue
    }

    pub fn reply_url(&self) -> Result<Option<&Destination>, ConfigError> {
        self.reply_url
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    pub fn reply_timeout_ms(&self) -> Result<u64, ConfigError> {
        self.reply_timeout_ms.clone()
    }

    /// The bearer key of the admin routes; `None` switches them off. It must differ from
    /// `TOKEN_API_KEY`: a backend that may fetch tokens may not replay dead letters.
    pub fn admin_api_key(&self) -> Result<Option<&str>, ConfigError> {
        let admin = self.admin_api_key.as_ref().map(Secret::expose);
        if admin.is_some() && admin == self.token_api_key() {
            return Err(ConfigError::new(
                "ADMIN_API_KEY",
                "must differ from TOKEN_API_KEY (set a key of its own: the admin routes replay and list dead letters)",
            ));
        }
        Ok(admin)
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
        match &self.accounts {
            Err(e) => problems.push(e.clone()),
            Ok(Some(accounts)) => {
                problems.extend(accounts.problems().cloned());
                for account in accounts.valid() {
                    problems.extend(account.problems());
                }
            }
            Ok(None) => {}
        }
        problems.extend(
            [
                self.forward_urls.as_ref().err(),
                self.forward_routes.as_ref().err(),
                self.forward_secret.as_ref().err(),
                self.forward_mode.as_ref().err(),
                self.retry_delays.as_ref().err(),
                self.max_attempts.as_ref().err(),
                self.reply_url.as_ref().err(),
                self.reply_timeout_ms.as_ref().err(),
                self.max_clock_skew.as_ref().err(),
            ]
            .into_iter()
            .flatten()
            .cloned(),
        );
        // The schedule carries its parts' errors, and its own (retention, fit) once.
        if let Err(e) = &self.schedule {
            if !problems.contains(e) {
                problems.push(e.clone());
            }
        }
        problems
    }
}

fn parse_target_list(list: &str, is_bound: &dyn Fn(&str) -> bool) -> Setting<Vec<Destination>> {
    let urls: Vec<Destination> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, u)| {
            // The position, never the URL: webhook URLs carry tokens in their queries.
            targets::parse_target(u, is_bound)
                .map_err(|p| ConfigError::new("FORWARD_URLS", format!("entry {}: {p}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(ConfigError::new("FORWARD_URLS", "lists no URL"));
    }
    Ok(urls)
}

impl Default for Schedule {
    /// The default settings' schedule (and the retention assumed when the settings are broken:
    /// the free plan's, the shortest).
    fn default() -> Self {
        Schedule {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            delays: parse_delays(DEFAULT_RETRY_DELAYS).unwrap_or_else(|_| vec![900]),
            retention_secs: 86_400,
        }
    }
}

/// A duration such as `90`, `5s`, `2m`, `1h` or `4d`, in seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
}

fn parse_retention(text: &str) -> Setting<u64> {
    match parse_duration(text) {
        Some(secs) if (3_600..=MAX_QUEUE_RETENTION_SECS).contains(&secs) => Ok(secs),
        _ => Err(ConfigError::new(
            "QUEUE_RETENTION",
            "must be a duration from 1h to 14d, such as 24h (the free plan's) or 4d",
        )),
    }
}

/// The schedule, when its delays and attempts fit in the retention.
fn schedule(
    delays: &Setting<Vec<u32>>,
    max_attempts: &Setting<u32>,
    retention: &Setting<u64>,
) -> Setting<Schedule> {
    let schedule = Schedule {
        delays: delays.clone()?,
        max_attempts: max_attempts.clone()?,
        retention_secs: retention.clone()?,
    };
    let usable = schedule
        .retention_secs
        .saturating_sub(Schedule::MARGIN_SECS);
    if schedule.span_secs() > usable {
        return Err(ConfigError::new(
            "FORWARD_RETRY_DELAYS",
            format!(
                "with FORWARD_MAX_ATTEMPTS spans {}s, longer than QUEUE_RETENTION ({}s) less {}s: fewer attempts, shorter delays or a longer retention",
                schedule.span_secs(),
                schedule.retention_secs,
                Schedule::MARGIN_SECS
            ),
        ));
    }
    Ok(schedule)
}

/// `"5s 15s 45s 2m 5m 15m"`: durations in s, m or h (bare numbers are seconds), separated by
/// commas or white space.
fn parse_delays(list: &str) -> Setting<Vec<u32>> {
    let err = |p: String| ConfigError::new("FORWARD_RETRY_DELAYS", p);
    let delays: Vec<u32> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, d)| {
            let n = i + 1;
            let secs = parse_duration(d)
                .filter(|_| !d.ends_with('d'))
                .ok_or_else(|| err(format!("entry {n} is not a duration such as 5s, 2m or 1h")))?;
            let secs = u32::try_from(secs).unwrap_or(u32::MAX);
            if secs > MAX_DELAY_SECS {
                return Err(err(format!(
                    "entry {n} is longer than the 12 hours a queue may delay"
                )));
            }
            Ok(secs)
        })
        .collect::<Result<_, _>>()?;
    if delays.is_empty() {
        return Err(err("lists no delay".into()));
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::access_token::TokenEndpoint;
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
        let urls: Vec<String> = c
            .forward_urls()
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            urls,
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
            ("FORWARD_MODE", "sometimes"),
            ("FORWARD_RETRY_DELAYS", "5s 1d"),
            ("FORWARD_MAX_ATTEMPTS", "500"),
            ("REPLY_TIMEOUT_MS", "3s"),
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
                "FORWARD_MODE",
                "FORWARD_RETRY_DELAYS",
                "FORWARD_MAX_ATTEMPTS",
                "REPLY_TIMEOUT_MS",
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
    fn delivery_settings_and_their_defaults() {
        let c = load(&[]);
        assert_eq!(c.forward_mode().unwrap(), ForwardMode::Queue);
        assert_eq!(c.retry_delays().unwrap(), [5, 15, 45, 120, 300, 900]);
        assert_eq!(c.max_attempts().unwrap(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(c.reply_url().unwrap(), None);
        assert_eq!(c.reply_timeout_ms().unwrap(), 3_000);
        assert_eq!(c.dead_letter_queue(), "wechat-relay-dead-letters");
        assert_eq!(c.admin_api_key(), Ok(None));
        let c = load(&[
            ("FORWARD_MODE", "Direct"),
            ("FORWARD_RETRY_DELAYS", "1, 2s,3m 1h"),
            ("FORWARD_MAX_ATTEMPTS", "4"),
            ("REPLY_URL", "https://r.example/reply"),
            ("REPLY_TIMEOUT_MS", "9000"),
            ("ADMIN_API_KEY", "adm"),
        ]);
        assert_eq!(c.forward_mode().unwrap(), ForwardMode::Direct);
        assert_eq!(c.retry_delays().unwrap(), [1, 2, 180, 3600]);
        assert_eq!(c.max_attempts().unwrap(), 4);
        assert_eq!(
            c.reply_url().unwrap(),
            Some(&Destination::Url("https://r.example/reply".into()))
        );
        assert_eq!(
            c.reply_timeout_ms().unwrap(),
            MAX_REPLY_TIMEOUT_MS,
            "capped"
        );
        assert_eq!(c.admin_api_key(), Ok(Some("adm")));
        let same = load(&[("ADMIN_API_KEY", "k"), ("TOKEN_API_KEY", "k")]);
        assert_eq!(same.admin_api_key().unwrap_err().setting, "ADMIN_API_KEY");
        for bad in ["", "0x", "5d", "13h", "m"] {
            let c = load(&[("FORWARD_RETRY_DELAYS", bad)]);
            if bad.is_empty() {
                assert!(c.retry_delays().is_ok(), "empty means the default");
            } else {
                assert!(c.retry_delays().is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn targets_come_from_urls_and_routes() {
        let e = crate::event::Event {
            id: "evt".into(),
            account: "default".into(),
            app_id: None,
            kind: "text".into(),
            event: None,
            from: Some("o".into()),
            to: "g".into(),
            created_at: 0,
            data: Default::default(),
            received_at: String::new(),
        };
        let none = load(&[]);
        assert!(none
            .targets_for(&e)
            .unwrap_err()
            .to_string()
            .contains("FORWARD_URLS"));
        let only_routes = load(&[("FORWARD_ROUTES", r#"{"image": ["https://i.example/"]}"#)]);
        assert!(only_routes.targets_for(&e).unwrap().is_empty());
        let both = load(&[
            ("FORWARD_URLS", "https://all.example/"),
            ("FORWARD_ROUTES", r#"{"text": ["https://t.example/"]}"#),
        ]);
        assert_eq!(both.targets_for(&e).unwrap().len(), 2);
        let bad = load(&[
            ("FORWARD_URLS", "https://all.example/"),
            ("FORWARD_ROUTES", "{"),
        ]);
        assert!(bad
            .targets_for(&e)
            .unwrap_err()
            .to_string()
            .contains("FORWARD_ROUTES"));
        let unknown = load(&[(
            "FORWARD_ROUTES",
            r#"{"nobody:text": ["https://t.example/"]}"#,
        )]);
        assert!(unknown
            .targets_for(&e)
            .unwrap_err()
            .to_string()
            .contains("nobody"));
        let services = Config::load_with(
            &|k| (k == "FORWARD_URLS").then(|| "service:BACKEND, service:OTHER".to_owned()),
            &|name| name == "BACKEND",
        );
        assert!(services
            .forward_urls()
            .unwrap_err()
            .to_string()
            .contains("OTHER"));
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

    /// A configuration error names the setting and what is wrong, never the value: webhook
    /// URLs carry tokens in their queries, API bases passwords in their user info.
    #[test]
    fn errors_never_echo_a_value() {
        let c = load(&[
            ("WECHAT_TOKEN", "t"),
            (
                "FORWARD_URLS",
                "https://ok.example/a ftp://user:SEKRIT1@h.example/x?token=SEKRIT2",
            ),
            (
                "FORWARD_ROUTES",
                r#"{"text": ["gopher://h.example/?token=SEKRIT3"]}"#,
            ),
            ("WECHAT_API_BASE", "ftp://admin:SEKRIT4@api.example/"),
            ("FORWARD_RETRY_DELAYS", "5s SEKRIT5"),
            ("FORWARD_MODE", "SEKRIT6"),
            ("REPLY_TIMEOUT_MS", "SEKRIT7"),
            ("MAX_CLOCK_SKEW_SECONDS", "SEKRIT8"),
            ("WECHAT_TOKEN_ENDPOINT", "SEKRIT9"),
            ("QUEUE_RETENTION", "SEKRIT10"),
            ("WECHAT_MESSAGE_MODE", "SEKRIT11"),
            (
                "WECHAT_ACCOUNTS",
                r#"{"a": {"kind": "SEKRIT12", "app_id": "x"}, "b": {"kind": "wecom", "corp_id": "w", "agent_id": "SEKRIT13"}}"#,
            ),
        ]);
        let problems = c.problems();
        assert!(problems.len() >= 10, "{problems:?}");
        for p in &problems {
            let text = p.to_string();
            assert!(!text.contains("SEKRIT"), "{text}");
        }
        let forward = problems
            .iter()
            .find(|p| p.setting == "FORWARD_URLS")
            .unwrap();
        assert!(forward.problem.contains("entry 2"), "{forward}");
    }
}
