//! The token service's routes: whose token a request speaks for (the account's own, or one of
//! a third-party platform's merchants), and the answers' shapes. The shell calls one function a
//! route.

use super::*;
use crate::account::kind::Kind;
use crate::token::access_token::Stored;
use crate::token::Refreshed;

/// Whose token a token route speaks for.
pub enum Source<'a, C, S, H> {
    /// The account's own (`?account=`).
    Own(Credentials<'a, C, S, H>),
    /// A merchant of the platform `?account=` names (`&authorizer=<appid>`).
    Merchant {
        platform: Platform<'a, C, S, H>,
        app_id: String,
    },
}

impl<C: Clock, S: Store, H: Http> TokenSource for Source<'_, C, S, H> {
    fn kind(&self) -> Kind {
        match self {
            Source::Own(own) => own.kind(),
            Source::Merchant { platform, app_id } => platform.authorizer(app_id).kind(),
        }
    }

    fn api_base(&self) -> Result<&str, Error> {
        match self {
            Source::Own(own) => own.api_base(),
            Source::Merchant { platform, .. } => Ok(platform.creds.account.api_base()?),
        }
    }

    async fn token(&self) -> Result<Stored, Error> {
        match self {
            Source::Own(own) => own.access_token().await,
            Source::Merchant { platform, app_id } => platform.authorizer(app_id).token().await,
        }
    }

    async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error> {
        match self {
            Source::Own(own) => own.force_refresh(refused).await,
            Source::Merchant { platform, app_id } => {
                TokenSource::force_refresh(&platform.authorizer(app_id), refused).await
            }
        }
    }
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// The token source of `account`, or of its merchant `authorizer` (then `account` must be a
    /// platform: `not_available` otherwise).
    pub fn token_source(
        &self,
        account: &str,
        authorizer: Option<&str>,
    ) -> Result<Source<'_, C, S, H>, Error> {
        Ok(match authorizer {
            None => Source::Own(self.credentials(self.config.account(account)?)),
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
