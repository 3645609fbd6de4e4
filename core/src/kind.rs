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
