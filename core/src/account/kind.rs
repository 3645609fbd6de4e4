//! What differs by kind of account and by token endpoint: the bottom of the account model, with
//! no imports, so every layer above can ask it.

/// The kinds of WeChat account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A service or subscription Official Account, verified or not.
    Official,
    /// An enterprise account's self-built app (WeCom): always encrypted, echostr encrypted too.
    WeCom,
    /// A Mini Program's message push.
    MiniProgram,
    /// A third-party platform (开放平台 component): its authorization pushes, and the messages
    /// of the accounts that authorized it.
    Component,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Official => "official",
            Kind::WeCom => "wecom",
            Kind::MiniProgram => "miniprogram",
            Kind::Component => "component",
        }
    }

    pub(crate) fn parse(kind: &str) -> Option<Kind> {
        Some(match kind {
            "official" => Kind::Official,
            "wecom" => Kind::WeCom,
            "miniprogram" => Kind::MiniProgram,
            "component" => Kind::Component,
            _ => return None,
        })
    }

    /// The fields an account of this kind may have in `WECHAT_ACCOUNTS`.
    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Official => &["kind", "app_id", "mode", "api_base", "token_endpoint"],
            Kind::MiniProgram => &[
                "kind",
                "app_id",
                "mode",
                "format",
                "api_base",
                "token_endpoint",
            ],
            Kind::WeCom => &["kind", "corp_id", "agent_id", "mode", "api_base"],
            Kind::Component => &["kind", "app_id", "mode", "api_base"],
        }
    }

    /// Whether WeChat always encrypts this kind's callbacks (a plaintext one is refused).
    pub fn always_encrypted(self) -> bool {
        matches!(self, Kind::WeCom | Kind::Component)
    }

    /// Whether the URL check sends an encrypted `echostr` signed with `msg_signature` (WeCom),
    /// rather than a plaintext one signed with `signature`.
    pub fn encrypted_echostr(self) -> bool {
        self == Kind::WeCom
    }

    /// Whether this is a third-party platform: its callbacks are authorization pushes, and its
    /// merchants' messages come under its name.
    pub fn is_platform(self) -> bool {
        self == Kind::Component
    }

    /// The field of the access token in WeChat's token answer.
    pub fn token_field(self) -> &'static str {
        match self {
            Kind::Component => "component_access_token",
            Kind::Official | Kind::WeCom | Kind::MiniProgram => "access_token",
        }
    }

    /// Whether every token fetch replaces the previous token (so it counts against the
    /// forced-refresh limit): platforms always, Official Accounts and Mini Programs on the
    /// classic endpoint; WeCom hands out the same token until it expires.
    pub fn fetch_replaces_previous(self, endpoint: TokenEndpoint) -> bool {
        match self {
            Kind::Component => true,
            Kind::WeCom => false,
            Kind::Official | Kind::MiniProgram => endpoint == TokenEndpoint::Classic,
        }
    }

    /// How this kind's access token is fetched.
    pub fn token_api(self) -> TokenApi {
        match self {
            Kind::Official | Kind::MiniProgram => TokenApi::App,
            Kind::WeCom => TokenApi::Corp,
            Kind::Component => TokenApi::Platform,
        }
    }

    /// How this kind's JS-SDK ticket is fetched, or why it has none.
    pub fn ticket_api(self) -> Result<TicketApi, &'static str> {
        match self {
            Kind::Official => Ok(TicketApi::Jsapi),
            Kind::WeCom => Ok(TicketApi::Corp),
            Kind::MiniProgram => Err(
                "Mini Programs have no JS-SDK ticket (wx.config is for web pages of Official Accounts and WeCom apps)",
            ),
            Kind::Component => Err("a third-party platform has no JS-SDK ticket of its own"),
        }
    }

    /// The API a late reply (after the passive-reply deadline) goes through, and whether it
    /// names the app (`agentid`).
    pub fn late_reply_api(self) -> (&'static str, bool) {
        match self {
            Kind::WeCom => ("cgi-bin/message/send", true),
            Kind::Official | Kind::MiniProgram | Kind::Component => {
                ("cgi-bin/message/custom/send", false)
            }
        }
    }
}

/// WeChat's token APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenApi {
    /// `stable_token` or `token` (by [`TokenEndpoint`]) with the AppID and AppSecret.
    App,
    /// WeCom's `gettoken` with the corp id and the app's Secret.
    Corp,
    /// `component/api_component_token` with the platform's stored verify ticket.
    Platform,
}

/// WeChat's JS-SDK ticket APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketApi {
    /// `ticket/getticket?type=jsapi` (Official Accounts).
    Jsapi,
    /// WeCom's `get_jsapi_ticket`.
    Corp,
}

/// Which endpoint issues access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token to every caller while it is valid, so
    /// concurrent refreshes from several locations cannot invalidate each other.
    Stable,
    /// `GET /cgi-bin/token`: every call invalidates the previous token (after 5 minutes).
    Classic,
}

impl std::str::FromStr for TokenEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stable" => Ok(TokenEndpoint::Stable),
            "classic" => Ok(TokenEndpoint::Classic),
            _ => Err("must be \"stable\" or \"classic\"".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Kind; 4] = [
        Kind::Official,
        Kind::WeCom,
        Kind::MiniProgram,
        Kind::Component,
    ];

    #[test]
    fn every_kind_answers_every_question() {
        for kind in ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert!(kind.fields().contains(&"kind"));
            assert!(kind.fields().contains(&"mode"));
        }
        let encrypted: Vec<Kind> = ALL.into_iter().filter(|k| k.always_encrypted()).collect();
        assert_eq!(encrypted, [Kind::WeCom, Kind::Component]);
        assert!(Kind::WeCom.encrypted_echostr() && !Kind::Official.encrypted_echostr());
        assert_eq!(Kind::Component.token_field(), "component_access_token");
        assert_eq!(Kind::MiniProgram.token_field(), "access_token");
        for endpoint in [TokenEndpoint::Stable, TokenEndpoint::Classic] {
            assert!(Kind::Component.fetch_replaces_previous(endpoint));
            assert!(!Kind::WeCom.fetch_replaces_previous(endpoint));
        }
        assert!(Kind::Official.fetch_replaces_previous(TokenEndpoint::Classic));
        assert!(!Kind::Official.fetch_replaces_previous(TokenEndpoint::Stable));
        assert_eq!(Kind::WeCom.late_reply_api(), ("cgi-bin/message/send", true));
        assert_eq!(
            Kind::Official.late_reply_api(),
            ("cgi-bin/message/custom/send", false)
        );
        assert!(Kind::Component.is_platform() && !Kind::WeCom.is_platform());
        assert_eq!(Kind::Official.token_api(), TokenApi::App);
        assert_eq!(Kind::MiniProgram.token_api(), TokenApi::App);
        assert_eq!(Kind::WeCom.token_api(), TokenApi::Corp);
        assert_eq!(Kind::Component.token_api(), TokenApi::Platform);
        assert_eq!(Kind::Official.ticket_api(), Ok(TicketApi::Jsapi));
        assert_eq!(Kind::WeCom.ticket_api(), Ok(TicketApi::Corp));
        assert!(Kind::MiniProgram
            .ticket_api()
            .is_err_and(|why| why.contains("Mini Programs")));
        assert!(Kind::Component.ticket_api().is_err());
        assert_eq!(Kind::parse("enterprise"), None);
    }
}
