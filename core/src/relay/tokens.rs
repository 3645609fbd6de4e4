//! The token service's routes: whose token a request speaks for (the account's own, kept by its
//! object or, without one, in KV; or one of a third-party platform's merchants), and the
//! answers' shapes. The shell calls one function a route.
//!
//! **An account's own token, from its object.** The object runs the token service over its own
//! storage (`relay/object.rs`): one upstream call at a time for every location. This isolate
//! keeps what the object answered while it is fresh (more than 5 minutes left), so a token read
//! costs no request then. When the object cannot be asked, the token service runs here over KV,
//! as it did before objects (the last known token, or a fetch), and the log says so.
//! Third-party platforms keep their state in KV for now: their pushes write it there.

use super::*;
use crate::account::kind::Kind;
use crate::coordinator::{Request, Response, Wanted};
use crate::token::access_token::{Stored, SCHEDULED_REFRESH_MARGIN_SECS};
use crate::token::Refreshed;

/// How long a credential request to the object may take (it may fetch from WeChat, with its
/// retries) before this isolate fetches itself.
pub const CREDENTIAL_TIMEOUT_MS: u64 = 15_000;

/// Whose token a token route speaks for.
pub enum Source<'a, C, S, K, H> {
    /// The account's own, kept by the account's object (`own` is the fallback over KV).
    Object {
        coordinator: &'a K,
        own: Credentials<'a, C, S, H>,
    },
    /// The account's own, kept in KV (a platform's component token).
    Own(Credentials<'a, C, S, H>),
    /// A merchant of the platform `?account=` names (`&authorizer=<appid>`).
    Merchant {
        platform: Platform<'a, C, S, H>,
        app_id: String,
    },
}

impl<C: Clock, S: Store, K: Coordinator, H: Http> TokenSource for Source<'_, C, S, K, H> {
    fn kind(&self) -> Kind {
        match self {
            Source::Object { own, .. } | Source::Own(own) => own.kind(),
            Source::Merchant { platform, app_id } => platform.authorizer(app_id).kind(),
        }
    }

    fn api_base(&self) -> Result<&str, Error> {
        match self {
            Source::Object { own, .. } | Source::Own(own) => own.api_base(),
            Source::Merchant { platform, .. } => Ok(platform.creds.account.api_base()?),
        }
    }

    async fn token(&self) -> Result<Stored, Error> {
        match self {
            Source::Object { coordinator, own } => {
                object_credential(*coordinator, own, Wanted::AccessToken).await
            }
            Source::Own(own) => own.access_token().await,
            Source::Merchant { platform, app_id } => platform.authorizer(app_id).token().await,
        }
    }

    async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error> {
        match self {
            Source::Object { coordinator, own } => object_refresh(*coordinator, own, refused).await,
            Source::Own(own) => own.force_refresh(refused).await,
            Source::Merchant { platform, app_id } => {
                TokenSource::force_refresh(&platform.authorizer(app_id), refused).await
            }
        }
    }
}

/// One question about a credential to the account's object, within
/// [`CREDENTIAL_TIMEOUT_MS`]: its answer, or `None` (logged) when it gave none.
async fn ask_object<C: Clock, K: Coordinator>(
    coordinator: &K,
    clock: &C,
    account: &str,
    request: &Request,
) -> Option<Response> {
    match crate::coordinator::ask_within(
        coordinator,
        clock,
        account,
        request,
        CREDENTIAL_TIMEOUT_MS,
    )
    .await
    {
        Ok(response) => Some(response),
        Err(error) => {
            log::warn!(account = account, error = error.as_str(); "the account object did not answer a credential request; this isolate uses KV and WeChat itself");
            None
        }
    }
}

/// What the object answered about a credential, as this flow's result; `None` for an answer
/// that is not about a credential.
fn credential_of(response: Response, now: u64) -> Option<Result<Refreshed, Error>> {
    match response {
        Response::Credential {
            value,
            expires_at,
            refreshed,
        } => Some(Ok(Refreshed {
            credential: Stored {
                value,
                expires_at,
                fetched_at: now,
                forced_at: refreshed.then_some(now),
            },
            refreshed,
        })),
        Response::Refused {
            status,
            retry_after,
            body,
        } => Some(Err(Error::Relayed {
            status,
            retry_after,
            body,
        })),
        _ => None,
    }
}

/// The account's token or ticket: this isolate's copy while fresh, else the object's answer,
/// else (no answer) the token service here over KV.
async fn object_credential<C: Clock, S: Store, K: Coordinator, H: Http>(
    coordinator: &K,
    own: &Credentials<'_, C, S, H>,
    wanted: Wanted,
) -> Result<Stored, Error> {
    let name = own.account.name();
    let now = own.clock.now_secs();
    if let Some(kept) = own.memory.kept(name, wanted).filter(|s| s.is_fresh(now)) {
        return Ok(kept);
    }
    let request = Request::Credential {
        account: name.to_owned(),
        wanted,
    };
    let answer = ask_object(coordinator, own.clock, name, &request)
        .await
        .and_then(|r| credential_of(r, now));
    match answer {
        Some(Ok(got)) => {
            own.memory.keep(name, wanted, &got.credential);
            Ok(got.credential)
        }
        Some(Err(e)) => Err(e),
        None => match wanted {
            Wanted::AccessToken => own.access_token().await,
            Wanted::JsapiTicket => own.jsapi_ticket().await,
        },
    }
}

/// A forced refresh at the object (which keeps the one-a-minute rule and the daily budget for
/// every location), else here over KV.
async fn object_refresh<C: Clock, S: Store, K: Coordinator, H: Http>(
    coordinator: &K,
    own: &Credentials<'_, C, S, H>,
    refused: Option<&str>,
) -> Result<Refreshed, Error> {
    let name = own.account.name();
    let request = Request::Refresh {
        account: name.to_owned(),
        refused: refused.map(str::to_owned),
    };
    let now = own.clock.now_secs();
    let answer = ask_object(coordinator, own.clock, name, &request)
        .await
        .and_then(|r| credential_of(r, now));
    match answer {
        Some(Ok(got)) => {
            own.memory.keep(name, Wanted::AccessToken, &got.credential);
            Ok(got)
        }
        Some(Err(e)) => {
            own.memory.forget(name, Wanted::AccessToken);
            Err(e)
        }
        None => own.force_refresh(refused).await,
    }
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// The account's own token source: its object, except for a third-party platform (whose
    /// pushes keep its state in KV).
    pub fn own_source<'a>(&'a self, account: &'a Account) -> Source<'a, C, S, K, H> {
        let own = self.credentials(account);
        match account.kind().is_platform() {
            true => Source::Own(own),
            false => Source::Object {
                coordinator: &self.coordinator,
                own,
            },
        }
    }

    /// The token source of `account`, or of its merchant `authorizer` (then `account` must be a
    /// platform: `not_available` otherwise).
    pub fn token_source(
        &self,
        account: &str,
        authorizer: Option<&str>,
    ) -> Result<Source<'_, C, S, K, H>, Error> {
        Ok(match authorizer {
            None => self.own_source(self.config.account(account)?),
            Some(app_id) => Source::Merchant {
                platform: self.platform(account)?,
                app_id: app_id.to_owned(),
            },
        })
    }

    /// `GET /token`: `{"access_token", "expires_at"}`.
    pub async fn token(
        &self,
        account: &str,
        authorizer: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let token = self.token_source(account, authorizer)?.token().await?;
        Ok(json!({ "access_token": token.value, "expires_at": token.expires_at }))
    }

    /// `POST /token/refresh`: `{"access_token", "expires_at", "refreshed"}`. `body` may name
    /// the token WeChat refused (`{"access_token": "…"}`); empty, it forces a refresh as before.
    pub async fn refresh_token(
        &self,
        account: &str,
        authorizer: Option<&str>,
        body: &[u8],
    ) -> Result<serde_json::Value, Error> {
        let refused = crate::token::refused_token(body)?;
        let r = self
            .token_source(account, authorizer)?
            .force_refresh(refused.as_deref())
            .await?;
        Ok(json!({
            "access_token": r.credential.value,
            "expires_at": r.credential.expires_at,
            "refreshed": r.refreshed,
        }))
    }

    /// `GET /jsapi/signature`: `wx.config` for a page, with the ticket of the account's object.
    pub async fn jsapi_config(
        &self,
        account: &str,
        url: Option<&str>,
        random: [u8; 16],
    ) -> Result<crate::token::jssdk::JsSdkConfig, Error> {
        let account = self.config.account(account)?;
        let url = crate::token::jssdk::check_url(url)?;
        let app_id = account.require_app_id()?;
        let ticket = match self.own_source(account) {
            Source::Object { coordinator, own } => {
                object_credential(coordinator, &own, Wanted::JsapiTicket).await?
            }
            Source::Own(own) => own.jsapi_ticket().await?,
            Source::Merchant { platform, .. } => platform.creds.jsapi_ticket().await?,
        };
        Ok(crate::token::jssdk::config(
            app_id,
            &ticket.value,
            url,
            self.clock.now_secs(),
            random,
        ))
    }

    /// The cron's renewal of an account's credentials (what expires within 15 minutes), at its
    /// object unless this isolate knows the token is good for longer.
    pub async fn refresh_ahead(&self, account: &Account) {
        let source = self.own_source(account);
        let Source::Object { coordinator, own } = source else {
            self.credentials(account).refresh_ahead().await;
            return;
        };
        let now = self.clock.now_secs();
        let margin = SCHEDULED_REFRESH_MARGIN_SECS + 300;
        let known_fresh = |wanted| {
            own.memory
                .kept(account.name(), wanted)
                .is_some_and(|s| s.expires_at > now + margin)
        };
        if known_fresh(Wanted::AccessToken)
            && own
                .memory
                .kept(account.name(), Wanted::JsapiTicket)
                .is_none_or(|t| t.expires_at > now + margin)
        {
            return;
        }
        if account.app_secret().is_err() {
            return own.refresh_ahead().await;
        }
        let request = Request::RefreshAhead {
            account: account.name().to_owned(),
        };
        match ask_object(coordinator, &self.clock, account.name(), &request)
            .await
            .and_then(|r| credential_of(r, now))
        {
            Some(Ok(got)) => own
                .memory
                .keep(account.name(), Wanted::AccessToken, &got.credential),
            Some(Err(e)) => {
                log::error!(account = account.name(), error = e.to_string(); "scheduled refresh at the account object failed")
            }
            None => own.refresh_ahead().await,
        }
    }

    /// `ANY /api/<path>`: the call with the token of `account` (or its merchant) added.
    pub async fn pass_through(
        &self,
        account: &str,
        authorizer: Option<&str>,
        call: Call,
    ) -> Result<Passed<H::Answer>, Error> {
        let source = self.token_source(account, authorizer)?;
        passthrough::pass_through(&self.http, &source, call).await
    }
}
