//! Where events go: `FORWARD_URLS` (everything to these) and `FORWARD_ROUTES` (a JSON document
//! mapping event keys to targets).
//!
//! A route key is a `type` (`"text"`), `event.<name>` (`"event.subscribe"`) or `"*"`, optionally
//! prefixed with an account (`"staff:event.enter_agent"`, `"shop:*"`); keys are compared without
//! regard to case. A target is an `http://` or `https://` URL, or `service:<BINDING>[/path]`, a
//! Service Binding to another Worker. An event goes to the targets of every key it matches and to
//! every `FORWARD_URLS` target, each target once, in the order first named.

use crate::event::Event;
use crate::ports::Destination;
use crate::settings::ConfigError;

/// Largest `FORWARD_ROUTES` document accepted (Workers vars hold 5 KB; secrets more).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const MAX_RULES: usize = 256;
const MAX_TARGETS_PER_RULE: usize = 32;

/// What a rule's key matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Any,
    /// A `type` (`text`, `image`, `event`, ...), lowercase.
    Type(String),
    /// An event name, lowercase.
    Event(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    account: Option<String>,
    matcher: Matcher,
    targets: Vec<Destination>,
}

/// The parsed `FORWARD_ROUTES`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    rules: Vec<Rule>,
}

impl Routes {
    /// Parses the document. `is_bound(name)` says whether a Service Binding of that name exists.
    pub fn parse(document: &str, is_bound: &dyn Fn(&str) -> bool) -> Result<Routes, ConfigError> {
        let err = |problem: String| ConfigError::new("FORWARD_ROUTES", problem);
        let map = crate::settings::json_object(
            "FORWARD_ROUTES",
            document,
            MAX_DOCUMENT_BYTES,
            MAX_RULES,
            "route keys to lists of targets",
        )?;
        let mut rules = Vec::with_capacity(map.len());
        for (key, targets) in &map {
            let (account, matcher) =
                parse_key(key).map_err(|p| err(format!("key {key:?}: {p}")))?;
            let list: Vec<&str> = match targets {
                serde_json::Value::String(one) => vec![one.as_str()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|t| {
                        t.as_str().ok_or_else(|| {
                            err(format!("key {key:?}: every target must be a string"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(err(format!(
                        "key {key:?}: the value must be a list of targets"
                    )))
                }
            };
            if list.len() > MAX_TARGETS_PER_RULE {
                return Err(err(format!(
                    "key {key:?}: more than {MAX_TARGETS_PER_RULE} targets"
                )));
            }
            let targets = list
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    // The position, never the URL: webhook URLs carry tokens in their queries.
                    parse_target(t, is_bound)
                        .map_err(|p| err(format!("key {key:?}: target {} {p}", i + 1)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                account,
                matcher,
                targets,
            });
        }
        Ok(Routes { rules })
    }

    /// Every account name the keys mention, for checking against the configured accounts.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter_map(|r| r.account.as_deref())
    }

    /// The targets of every rule `event` matches.
    fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Destination> + 'a {
        self.rules
            .iter()
            .filter(move |rule| {
                rule.account.as_deref().is_none_or(|a| a == event.account)
                    && match &rule.matcher {
                        Matcher::Any => true,
                        Matcher::Type(t) => *t == event.kind,
                        Matcher::Event(e) => event.event.as_deref() == Some(e.as_str()),
                    }
            })
            .flat_map(|rule| rule.targets.iter())
    }
}

/// The targets for `event`: every `everything` target, then the routes' matches, each once.
pub fn targets(
    event: &Event,
    everything: &[Destination],
    routes: Option<&Routes>,
) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    let routed = routes.into_iter().flat_map(|r| r.matching(event));
    for target in everything.iter().chain(routed) {
        if !out.contains(target) {
            out.push(target.clone());
        }
    }
    out
}

/// `[account:]*`, `[account:]<type>`, `[account:]event.<name>`.
fn parse_key(key: &str) -> Result<(Option<String>, Matcher), String> {
    let key = key.trim().to_ascii_lowercase();
    let (account, rest) = match key.split_once(':') {
        Some((account, rest)) => {
            if !crate::account::is_valid_name(account) {
                return Err(format!(
                    "the account prefix {account:?} is not an account name ([a-z][a-z0-9_]{{0,31}})"
                ));
            }
            (Some(account.to_owned()), rest)
        }
        None => (None, key.as_str()),
    };
    let matcher = if rest == "*" {
        Matcher::Any
    } else if let Some(name) = rest.strip_prefix("event.") {
        if !is_word(name) {
            return Err("is not `event.<name>` with a name of letters, digits and _".into());
        }
        Matcher::Event(name.to_owned())
    } else if is_word(rest) {
        Matcher::Type(rest.to_owned())
    } else {
        return Err("must be \"*\", a message type such as \"text\", or \"event.<name>\"".into());
    };
    Ok((account, matcher))
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An `http(s)://` URL or `service:<BINDING>[/path]`.
pub fn parse_target(target: &str, is_bound: &dyn Fn(&str) -> bool) -> Result<Destination, String> {
    let target = target.trim();
    if let Some(rest) = target.strip_prefix("service:") {
        let (binding, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let valid_name = binding
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && binding
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            return Err(
                "is not service:<BINDING> with a binding name of letters, digits and _".into(),
            );
        }
        if !is_bound(binding) {
            return Err(format!(
                "names no Service Binding: bind a Worker as {binding} ([[services]] in wrangler.toml)"
            ));
        }
        return Ok(Destination::Service {
            binding: binding.to_owned(),
            path: path.to_owned(),
        });
    }
    crate::settings::parse_http_url(target)
        .map(Destination::Url)
        .map_err(|p| format!("{p} (or service:<BINDING>)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(name: &str) -> bool {
        name == "BACKEND"
    }

    fn event(account: &str, kind: &str, name: Option<&str>) -> Event {
        Event {
            id: "evt_1".into(),
            account: account.into(),
            app_id: None,
            kind: kind.into(),
            event: name.map(str::to_owned),
            from: Some("o".into()),
            to: "gh".into(),
            created_at: 1,
            data: Default::default(),
            received_at: String::new(),
        }
    }

    fn url(u: &str) -> Destination {
        Destination::Url(u.into())
    }

    #[test]
    fn hosts_are_ascii_punycode_is_accepted() {
        // The build's IDNA back end is ASCII only (no Unicode tables in the module).
        let unicode = parse_target("https://例子.example/hook", &bound);
        assert!(unicode.is_err(), "{unicode:?}");
        assert_eq!(
            parse_target("https://xn--fsqu00a.example/hook", &bound),
            Ok(url("https://xn--fsqu00a.example/hook"))
        );
    }

    #[test]
    fn each_key_shape_matches_its_events() {
        let routes = Routes::parse(
            r#"{
                "text": ["https://a.example/text"],
                "event.subscribe": "https://a.example/subs",
                "EVENT.Click": ["https://a.example/click", "service:BACKEND/menu"],
                "*": ["https://a.example/all"],
                "staff:event.enter_agent": ["https://a.example/staff"]
            }"#,
            &bound,
        )
        .unwrap();
        let got = |e: &Event| targets(e, &[], Some(&routes));
        assert_eq!(
            got(&event("default", "text", None)),
            [url("https://a.example/text"), url("https://a.example/all")]
        );
        assert_eq!(
            got(&event("default", "event", Some("subscribe"))),
            [url("https://a.example/subs"), url("https://a.example/all")]
        );
        assert_eq!(
            got(&event("default", "event", Some("click"))),
            [
                url("https://a.example/click"),
                Destination::Service {
                    binding: "BACKEND".into(),
                    path: "/menu".into()
                },
                url("https://a.example/all")
            ]
        );
        assert_eq!(
            got(&event("default", "event", Some("enter_agent"))),
            [url("https://a.example/all")]
        );
        // Document order: "*" comes before the staff rule.
        assert_eq!(
            got(&event("staff", "event", Some("enter_agent"))),
            [url("https://a.example/all"), url("https://a.example/staff")]
        );
        assert_eq!(routes.accounts().collect::<Vec<_>>(), ["staff"]);
    }

    #[test]
    fn union_with_forward_urls_each_target_once() {
        let routes = Routes::parse(r#"{"text": ["https://a.example/x", "https://b.example/"], "*": ["https://a.example/x"]}"#, &bound).unwrap();
        let all = [url("https://b.example/"), url("https://c.example/")];
        assert_eq!(
            targets(&event("default", "text", None), &all, Some(&routes)),
            [
                url("https://b.example/"),
                url("https://c.example/"),
                url("https://a.example/x")
            ]
        );
        assert_eq!(
            targets(
                &event("default", "image", None),
                &[],
                Some(&Routes::parse(r#"{"text": []}"#, &bound).unwrap())
            ),
            []
        );
        assert_eq!(targets(&event("default", "image", None), &all, None), all);
    }

    #[test]
    fn bad_documents_are_named_errors() {
        for (doc, needle) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            ("\"text\"", "JSON object"),
            (r#"{"text": 5}"#, "list of targets"),
            (r#"{"text": [5]}"#, "must be a string"),
            (r#"{"event.": ["https://a.example"]}"#, "event.<name>"),
            (r#"{"event.a b": ["https://a.example"]}"#, "event.<name>"),
            (r#"{"foo.bar": ["https://a.example"]}"#, "message type"),
            (r#"{"": ["https://a.example"]}"#, "message type"),
            (
                r#"{"Bad Account:text": ["https://a.example"]}"#,
                "account name",
            ),
            (r#"{"text": ["ftp://a.example"]}"#, "http"),
            (r#"{"text": ["not a url"]}"#, "URL"),
            (
                r#"{"text": ["service:MISSING"]}"#,
                "names no Service Binding",
            ),
            (r#"{"text": ["service:"]}"#, "binding name"),
            (r#"{"text": ["service:9X"]}"#, "binding name"),
            (r#"{"text": ["service:A-B"]}"#, "binding name"),
        ] {
            let e = Routes::parse(doc, &bound).unwrap_err();
            assert_eq!(e.setting, "FORWARD_ROUTES");
            assert!(e.problem.contains(needle), "{doc}: {}", e.problem);
        }
        let huge = format!("{{\"text\": [\"{}\"]}}", "a".repeat(MAX_DOCUMENT_BYTES));
        assert!(Routes::parse(&huge, &bound)
            .unwrap_err()
            .problem
            .contains("larger"));
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("\"t{i}\": []")).collect();
        assert!(Routes::parse(&format!("{{{}}}", many.join(",")), &bound)
            .unwrap_err()
            .problem
            .contains("keys"));
    }

    #[test]
    fn hostile_documents_never_panic() {
        let seeds = [
            r#"{"text": ["https://a.example"], "event.subscribe": "service:BACKEND"}"#,
            r#"{"*": []}"#,
            "{\"\u{0}\": [\"\u{0}\"]}",
            r#"{"a:b:c": ["https://x"]}"#,
            r#"{"text": [null, true, {}, []]}"#,
        ];
        let mut state = 0x9e3779b97f4a7c15u64;
        for seed in seeds {
            for _ in 0..500 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..3 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if bytes.is_empty() {
                        break;
                    }
                    let i = (state as usize) % bytes.len();
                    bytes[i] = (state >> 32) as u8;
                }
                let doc = String::from_utf8_lossy(&bytes);
                let _ = Routes::parse(&doc, &bound);
            }
        }
    }
}
