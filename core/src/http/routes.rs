//! The route table: which path and method reach which route, how each route answers errors
//! (text for WeChat, JSON for programs), which routes exist only while their key is set, and
//! who may call them. The shell matches on [`Route`] and runs it; it never looks at a path.

use crate::account::DEFAULT_ACCOUNT;
use crate::config::Config;
use crate::error::{Error, Format};
use crate::http::auth;
use crate::http::console::{self, ADMIN_HEADERS};
use crate::token::passthrough;

pub use crate::ports::Method;

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /wechat`: the URL check WeChat makes when the server URL is saved.
    VerifyUrl { account: String },
    /// `POST /wechat`: a callback.
    Callback { account: String },
    /// `POST /wechat/<platform>/<authorizer appid>`: a message of an account that authorized
    /// a third-party platform.
    AuthorizerCallback { account: String, authorizer: String },
    /// `GET /token[?account=][&authorizer=]`
    Token {
        account: String,
        authorizer: Option<String>,
    },
    /// `POST /token/refresh[?account=][&authorizer=]`
    TokenRefresh {
        account: String,
        authorizer: Option<String>,
    },
    /// `GET /jsapi/signature?url=[&account=]`
    JsapiSignature { account: String },
    /// `ANY /api/<path>[?account=]`: `wechat_path` is the checked path below the account's API
    /// base.
    PassThrough {
        account: String,
        authorizer: Option<String>,
        method: Method,
        wechat_path: String,
    },
    /// `GET /component/authorize-url?account=&redirect_uri=[&auth_type=][&biz_appid=]`
    AuthorizeUrl { account: String },
    /// `POST /component/authorizations?account=` with `{"auth_code"}`
    Authorizations { account: String },
    /// `GET /component/authorizers?account=`
    Authorizers { account: String },
    /// `POST /component/authorizers/sync?account=`
    SyncAuthorizers { account: String },
    /// `GET /admin/dead-letters`
    DeadLetters,
    /// `GET /admin/status`
    Status,
    /// `GET /admin[/console.js|/console.css]`: the operator console's files.
    Console(crate::http::console::Asset),
    /// `POST /admin/replay[?id=]`
    Replay,
}

/// The request line and the one header routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub authorization: Option<&'a str>,
}

impl Incoming<'_> {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// `?account=`, `default` when absent.
    fn account(&self) -> String {
        self.param("account")
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned())
    }

    /// `?authorizer=`, a platform's authorizer.
    fn authorizer(&self) -> Option<String> {
        self.param("authorizer").filter(|a| !a.is_empty())
    }
}

/// The outcome of routing: the route, or the error to answer, in the route's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub format: Format,
    pub route: Result<Route, Error>,
    /// Headers the answer carries whatever it is (the admin routes' security headers).
    pub headers: &'static [(&'static str, &'static str)],
}

/// Which key guards a family of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    Open,
    /// TOKEN_API_KEY: unset means the routes do not exist (404), never that they are open.
    TokenApi,
    /// ADMIN_API_KEY, likewise.
    Admin,
    /// The console's files: absent (404) while ADMIN_API_KEY is unset, open otherwise (the page
    /// asks for the key).
    Console,
}

struct Family {
    format: Format,
    guard: Guard,
    headers: &'static [(&'static str, &'static str)],
}

const WECHAT: Family = Family {
    format: Format::Text,
    guard: Guard::Open,
    headers: &[],
};
const TOKEN_API: Family = Family {
    format: Format::Json,
    guard: Guard::TokenApi,
    headers: &[],
};
const ADMIN: Family = Family {
    format: Format::Json,
    guard: Guard::Admin,
    headers: ADMIN_HEADERS,
};
const CONSOLE: Family = Family {
    format: Format::Text,
    guard: Guard::Console,
    headers: ADMIN_HEADERS,
};

/// The server URLs to paste into an account's console (paths, from the deployment's origin):
/// each with what it is for. A third-party platform has two.
pub fn server_paths(account: &crate::account::Account) -> Vec<(&'static str, String)> {
    let own = if account.name() == DEFAULT_ACCOUNT {
        "/wechat".to_owned()
    } else {
        format!("/wechat/{}", account.name())
    };
    if account.kind().is_platform() {
        vec![
            ("authorization events", own.clone()),
            ("authorizers' messages", format!("{own}/$APPID$")),
        ]
    } else {
        vec![("messages and events", own)]
    }
}

/// Routes a request. Checks come in this order: the path (404), the route's key being set
/// (404), the method (405, with `Allow`), the bearer key (401), then the route's own path rules.
pub fn dispatch(req: &Incoming<'_>, config: &Config) -> Dispatch {
    let method = Method::parse(req.method);
    let (family, route): (Family, Result<Route, Error>) = match req.path {
        "/healthz" => (
            WECHAT,
            only(method, &[Method::Get, Method::Head], "GET, HEAD").map(|_| Route::Health),
        ),
        "/wechat" => (WECHAT, wechat(method, DEFAULT_ACCOUNT)),
        path if path.starts_with("/wechat/") => {
            // Any segment reaches the settings, which know whether it is an account (404 if not,
            // 500 naming the problem if its entry is broken).
            let segment = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            };
            let rest = path.trim_start_matches("/wechat/");
            let route = match rest.split_once('/') {
                None if segment(rest) => wechat(method, rest),
                None => Err(Error::NotFound),
                Some((name, authorizer)) if segment(name) && segment(authorizer) => match method {
                    Some(Method::Post) => Ok(Route::AuthorizerCallback {
                        account: name.to_owned(),
                        authorizer: authorizer.to_owned(),
                    }),
                    _ => Err(Error::MethodNotAllowed { allow: "POST" }),
                },
                Some(_) => Err(Error::NotFound),
            };
            (WECHAT, route)
        }
        "/token" => (
            TOKEN_API,
            only(method, &[Method::Get], "GET").map(|_| Route::Token {
                account: req.account(),
                authorizer: req.authorizer(),
            }),
        ),
        "/token/refresh" => (
            TOKEN_API,
            only(method, &[Method::Post], "POST").map(|_| Route::TokenRefresh {
                account: req.account(),
                authorizer: req.authorizer(),
            }),
        ),
        "/jsapi/signature" => (
            TOKEN_API,
            only(method, &[Method::Get], "GET").map(|_| Route::JsapiSignature {
                account: req.account(),
            }),
        ),
        "/component/authorize-url" => (
            TOKEN_API,
            only(method, &[Method::Get], "GET").map(|_| Route::AuthorizeUrl {
                account: req.account(),
            }),
        ),
        "/component/authorizations" => (
            TOKEN_API,
            only(method, &[Method::Post], "POST").map(|_| Route::Authorizations {
                account: req.account(),
            }),
        ),
        "/component/authorizers" => (
            TOKEN_API,
            only(method, &[Method::Get], "GET").map(|_| Route::Authorizers {
                account: req.account(),
            }),
        ),
        "/component/authorizers/sync" => (
            TOKEN_API,
            only(method, &[Method::Post], "POST").map(|_| Route::SyncAuthorizers {
                account: req.account(),
            }),
        ),
        "/admin/dead-letters" => (
            ADMIN,
            only(method, &[Method::Get], "GET").map(|_| Route::DeadLetters),
        ),
        path if console::at(path).is_some() => (
            CONSOLE,
            only(method, &[Method::Get, Method::Head], "GET, HEAD")
                .and_then(|_| console::at(path).map(Route::Console).ok_or(Error::NotFound)),
        ),
        "/admin/status" => (
            ADMIN,
            only(method, &[Method::Get], "GET").map(|_| Route::Status),
        ),
        "/admin/replay" => (
            ADMIN,
            only(method, &[Method::Post], "POST").map(|_| Route::Replay),
        ),
        path if path.starts_with("/api/") => (
            TOKEN_API,
            method
                .ok_or(Error::NotFound)
                .map(|method| Route::PassThrough {
                    account: req.account(),
                    authorizer: req.authorizer(),
                    method,
                    wechat_path: path.to_owned(),
                }),
        ),
        _ => {
            return Dispatch {
                format: Format::Text,
                route: Err(Error::NotFound),
                headers: &[],
            }
        }
    };
    let key = match family.guard {
        Guard::Open => None,
        Guard::TokenApi => Some(Ok(config.token_api_key())),
        Guard::Admin => Some(config.admin_api_key()),
        Guard::Console => match config.admin_api_key() {
            Ok(Some(_)) => None,
            Ok(None) => Some(Ok(None)),
            Err(e) => Some(Err(e)),
        },
    };
    let route = match key {
        None => route,
        Some(Err(e)) => Err(Error::Config(e)),
        Some(Ok(None)) => Err(Error::NotFound),
        Some(Ok(Some(key))) => route.and_then(|r| auth::check(req.authorization, key).map(|()| r)),
    };
    // The pass-through's own rule: only WeChat API paths, checked after the key.
    let route = route.and_then(|r| match r {
        Route::PassThrough {
            account,
            authorizer,
            method,
            wechat_path,
        } => passthrough::wechat_path(&wechat_path)
            .map(|p| Route::PassThrough {
                account,
                authorizer,
                method,
                wechat_path: p.to_owned(),
            })
            .ok_or(Error::NotFound),
        other => Ok(other),
    });
    Dispatch {
        format: family.format,
        route,
        headers: family.headers,
    }
}

fn only(method: Option<Method>, allowed: &[Method], allow: &'static str) -> Result<(), Error> {
    match method {
        Some(m) if allowed.contains(&m) => Ok(()),
        _ => Err(Error::MethodNotAllowed { allow }),
    }
}

fn wechat(method: Option<Method>, account: &str) -> Result<Route, Error> {
    match method {
        Some(Method::Get) => Ok(Route::VerifyUrl {
            account: account.to_owned(),
        }),
        Some(Method::Post) => Ok(Route::Callback {
            account: account.to_owned(),
        }),
        _ => Err(Error::MethodNotAllowed { allow: "GET, POST" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token_api_key: Option<&str>) -> Config {
        let key = token_api_key.map(str::to_owned);
        Config::load(move |k| (k == "TOKEN_API_KEY").then(|| key.clone()).flatten())
    }

    fn admin_config(admin_api_key: Option<&str>) -> Config {
        let key = admin_api_key.map(str::to_owned);
        Config::load(move |k| match k {
            "ADMIN_API_KEY" => key.clone(),
            "TOKEN_API_KEY" => Some("token-key".into()),
            _ => None,
        })
    }

    #[test]
    fn the_console_exists_only_with_the_admin_key_and_every_admin_answer_is_guarded() {
        let off = admin_config(None);
        for path in [
            "/admin",
            "/admin/",
            "/admin/console.js",
            "/admin/console.css",
        ] {
            assert_eq!(
                go("GET", path, None, &off).route,
                Err(Error::NotFound),
                "{path}"
            );
        }
        let on = admin_config(Some("adm"));
        let page = go("GET", "/admin", None, &on);
        assert!(
            matches!(page.route, Ok(Route::Console(a)) if a.content_type.starts_with("text/html"))
        );
        assert_eq!(page.headers, ADMIN_HEADERS);
        assert!(matches!(
            go("HEAD", "/admin/console.js", None, &on).route,
            Ok(Route::Console(_))
        ));
        assert_eq!(
            go("POST", "/admin", None, &on).route,
            Err(Error::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            go("GET", "/admin/nothing.js", None, &on).route,
            Err(Error::NotFound)
        );
        // The JSON routes carry the same headers, refusals included.
        let refused = go("GET", "/admin/status", Some("Bearer wrong"), &on);
        assert_eq!(refused.route, Err(Error::Unauthorized));
        assert_eq!(refused.headers, ADMIN_HEADERS);
        assert_eq!(
            go("GET", "/admin/status", Some("Bearer adm"), &on).route,
            Ok(Route::Status)
        );
        assert!(ADMIN_HEADERS.contains(&("cache-control", "no-store")));
        assert!(console::CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        // Nothing else does.
        assert!(go("GET", "/healthz", None, &on).headers.is_empty());
    }

    #[test]
    fn admin_routes_need_their_own_key() {
        let off = admin_config(None);
        for (m, p) in [
            ("GET", "/admin/dead-letters"),
            ("POST", "/admin/replay"),
            ("DELETE", "/admin/replay"),
        ] {
            let d = go(m, p, Some("Bearer token-key"), &off);
            assert_eq!(
                (d.format, d.route),
                (Format::Json, Err(Error::NotFound)),
                "{m} {p}"
            );
        }
        let on = admin_config(Some("adm"));
        assert_eq!(
            go("GET", "/admin/dead-letters", Some("Bearer adm"), &on).route,
            Ok(Route::DeadLetters)
        );
        assert_eq!(
            go("POST", "/admin/replay", Some("Bearer adm"), &on).route,
            Ok(Route::Replay)
        );
        assert_eq!(
            go("GET", "/admin/dead-letters", None, &on).route,
            Err(Error::Unauthorized)
        );
        assert_eq!(
            go("GET", "/admin/dead-letters", Some("Bearer token-key"), &on).route,
            Err(Error::Unauthorized),
            "the token API's key is not the admin key"
        );
        assert_eq!(
            go("GET", "/admin/replay", Some("Bearer adm"), &on).route,
            Err(Error::MethodNotAllowed { allow: "POST" })
        );
        // The same key for both is refused, naming the setting.
        let same = Config::load(|k| {
            matches!(k, "ADMIN_API_KEY" | "TOKEN_API_KEY").then(|| "k".to_owned())
        });
        let e = go("GET", "/admin/dead-letters", Some("Bearer k"), &same)
            .route
            .unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(e.to_string().contains("ADMIN_API_KEY"));
        // And the admin key opens no token route.
        assert_eq!(
            go("GET", "/token", Some("Bearer adm"), &on).route,
            Err(Error::Unauthorized)
        );
    }

    fn go(method: &str, path: &str, auth: Option<&str>, config: &Config) -> Dispatch {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        dispatch(
            &Incoming {
                method,
                path,
                query,
                authorization: auth,
            },
            config,
        )
    }

    #[test]
    fn accounts_by_path_and_by_parameter() {
        let c = config(Some("k"));
        let ok = Some("Bearer k");
        assert_eq!(
            go("POST", "/wechat/shop", None, &c).route,
            Ok(Route::Callback {
                account: "shop".into()
            })
        );
        assert_eq!(
            go("GET", "/wechat/default", None, &c).route,
            Ok(Route::VerifyUrl {
                account: "default".into()
            })
        );
        for bad in [
            "/wechat/",
            "/wechat/a/b/c/d",
            "/wechat/%2e%2e",
            "/wechat/a.b",
        ] {
            assert_eq!(
                go("POST", bad, None, &c).route,
                Err(Error::NotFound),
                "{bad}"
            );
        }
        assert_eq!(
            go("GET", "/token?account=staff", ok, &c).route,
            Ok(Route::Token {
                account: "staff".into(),
                authorizer: None
            })
        );
        assert_eq!(
            go("GET", "/token?account=", ok, &c).route,
            Ok(Route::Token {
                account: "default".into(),
                authorizer: None
            })
        );
        assert_eq!(
            go("POST", "/token/refresh?x=1&account=mini", ok, &c).route,
            Ok(Route::TokenRefresh {
                account: "mini".into(),
                authorizer: None
            })
        );
        assert_eq!(
            go("GET", "/api/cgi-bin/user/list?account=staff&next=1", ok, &c).route,
            Ok(Route::PassThrough {
                account: "staff".into(),
                authorizer: None,
                method: Method::Get,
                wechat_path: "cgi-bin/user/list".into()
            })
        );
    }

    #[test]
    fn platform_routes() {
        let c = config(Some("k"));
        let ok = Some("Bearer k");
        for bad in ["/wechat/a/", "/wechat//b", "/wechat/a/b/c", "/wechat/a/b.c"] {
            assert_eq!(
                go("POST", bad, None, &c).route,
                Err(Error::NotFound),
                "{bad}"
            );
        }
        assert_eq!(
            go("POST", "/wechat/platform/wxba5fad812f8e6fb9", None, &c).route,
            Ok(Route::AuthorizerCallback {
                account: "platform".into(),
                authorizer: "wxba5fad812f8e6fb9".into()
            })
        );
        assert_eq!(
            go("GET", "/wechat/platform/wxba5fad812f8e6fb9", None, &c).route,
            Err(Error::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            go(
                "GET",
                "/token?account=platform&authorizer=wxba5fad812f8e6fb9",
                ok,
                &c
            )
            .route,
            Ok(Route::Token {
                account: "platform".into(),
                authorizer: Some("wxba5fad812f8e6fb9".into())
            })
        );
        assert_eq!(
            go("POST", "/component/authorizations?account=platform", ok, &c).route,
            Ok(Route::Authorizations {
                account: "platform".into()
            })
        );
        assert_eq!(
            go("GET", "/component/authorize-url?account=platform", ok, &c).route,
            Ok(Route::AuthorizeUrl {
                account: "platform".into()
            })
        );
        assert_eq!(
            go("GET", "/component/authorizers?account=platform", ok, &c).route,
            Ok(Route::Authorizers {
                account: "platform".into()
            })
        );
        assert_eq!(
            go(
                "POST",
                "/component/authorizers/sync?account=platform",
                ok,
                &c
            )
            .route,
            Ok(Route::SyncAuthorizers {
                account: "platform".into()
            })
        );
        assert_eq!(
            go("GET", "/component/authorizers", None, &c).route,
            Err(Error::Unauthorized)
        );
        assert_eq!(
            go("GET", "/component/authorizers", ok, &config(None)).route,
            Err(Error::NotFound)
        );
    }

    #[test]
    fn wechat_routes_answer_text() {
        let c = config(None);
        let d = go("GET", "/wechat", None, &c);
        assert_eq!(d.format, Format::Text);
        assert_eq!(
            d.route,
            Ok(Route::VerifyUrl {
                account: "default".into()
            })
        );
        assert_eq!(
            go("POST", "/wechat", None, &c).route,
            Ok(Route::Callback {
                account: "default".into()
            })
        );
        for m in ["PUT", "DELETE", "PATCH", "BREW"] {
            assert_eq!(
                go(m, "/wechat", None, &c).route,
                Err(Error::MethodNotAllowed { allow: "GET, POST" })
            );
        }
        assert_eq!(go("HEAD", "/healthz", None, &c).route, Ok(Route::Health));
        assert_eq!(
            go("POST", "/healthz", None, &c).route,
            Err(Error::MethodNotAllowed { allow: "GET, HEAD" })
        );
        let unknown = go("GET", "/nope", None, &c);
        assert_eq!(
            (unknown.format, unknown.route),
            (Format::Text, Err(Error::NotFound))
        );
    }

    #[test]
    fn token_routes_are_absent_without_their_key() {
        let c = config(None);
        for (m, p) in [
            ("GET", "/token"),
            ("POST", "/token"),
            ("POST", "/token/refresh"),
            ("GET", "/token/refresh"),
            ("GET", "/jsapi/signature"),
            ("GET", "/api/cgi-bin/user/info"),
            ("DELETE", "/api/cgi-bin/user/info"),
        ] {
            let d = go(m, p, Some("Bearer anything"), &c);
            assert_eq!(
                (d.format, d.route),
                (Format::Json, Err(Error::NotFound)),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn token_routes_check_method_then_key_then_path() {
        let c = config(Some("k"));
        let ok = Some("Bearer k");
        assert_eq!(
            go("GET", "/token", ok, &c).route,
            Ok(Route::Token {
                account: "default".into(),
                authorizer: None
            })
        );
        assert_eq!(
            go("GET", "/token", None, &c).route,
            Err(Error::Unauthorized)
        );
        assert_eq!(
            go("GET", "/token", Some("Bearer x"), &c).route,
            Err(Error::Unauthorized)
        );
        assert_eq!(
            go("GET", "/token/refresh", None, &c).route,
            Err(Error::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            go("POST", "/token/refresh", ok, &c).route,
            Ok(Route::TokenRefresh {
                account: "default".into(),
                authorizer: None
            })
        );
        assert_eq!(
            go("GET", "/jsapi/signature", ok, &c).route,
            Ok(Route::JsapiSignature {
                account: "default".into()
            })
        );
        assert_eq!(
            go("POST", "/api/cgi-bin/message/custom/send", ok, &c).route,
            Ok(Route::PassThrough {
                account: "default".into(),
                authorizer: None,
                method: Method::Post,
                wechat_path: "cgi-bin/message/custom/send".into()
            })
        );
        assert_eq!(
            go("GET", "/api/admin/x", None, &c).route,
            Err(Error::Unauthorized)
        );
        assert_eq!(
            go("GET", "/api/admin/x", ok, &c).route,
            Err(Error::NotFound)
        );
    }
}
