//! Authorization codes, exchanged once (`api_query_auth`): whether the code comes in the
//! `authorized` push, through `POST /component/authorizations`, or both in any order.

use super::*;

/// The value of a code's key while a request exchanges it (not JSON: never read as a record).
const EXCHANGING: &str = "exchanging";
/// How long a claim of a code holds if its request dies: past WeChat's answer with retries.
const EXCHANGE_CLAIM_TTL_SECS: u64 = 60;

/// The code itself never becomes a key (it is a credential): a hash of it does.
pub fn code_key(platform: &str, code: &str) -> String {
    let digest = Sha256::digest(code.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("component:{platform}:code:{hex}")
}

/// The `auth_code` of `POST /component/authorizations` (`{"auth_code": "..."}`).
pub fn auth_code_of(body: &[u8]) -> Result<String, Error> {
    const SHAPE: &str = "the body must be JSON {\"auth_code\": \"...\"} (the auth_code the authorization page redirected with)";
    let value: Value = serde_json::from_slice(body).map_err(|_| Error::BadRequest(SHAPE))?;
    value
        .get("auth_code")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.len() <= 512)
        .map(str::to_owned)
        .ok_or(Error::BadRequest(SHAPE))
}

impl<'a, C: Clock, S: Store, H: Http> Platform<'a, C, S, H> {
    /// Exchanges an authorization code (`api_query_auth`), once per code.
    pub async fn exchange(&self, code: &str) -> Result<Authorization, Error> {
        let code = code.trim();
        if code.is_empty() || code.len() > 512 {
            return Err(Error::MalformedParameter("auth_code"));
        }
        let key = code_key(self.name(), code);
        if let Some(done) = self.exchanged(&key).await {
            return Ok(done);
        }
        // Claimed in the store first: with the platform's object behind it (exact), whoever
        // asks second, from any location, waits for the first one's record instead of asking
        // WeChat again.
        match self
            .creds
            .store
            .put_if(&key, EXCHANGING, None, Some(EXCHANGE_CLAIM_TTL_SECS))
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.wait_for_exchange(code, &key).await,
            Err(e) => {
                log::warn!(account = self.name(), error = e.to_string(); "authorization code not claimed; exchanging it anyway");
            }
        }
        let flight = format!("{}/code/{}", self.name(), key);
        let result = self
            .creds
            .memory
            .exchanges
            .run(self.creds.clock, flight, || async {
                self.exchange_now(code, &key).await
            })
            .await;
        if result.is_err() {
            self.release_exchange(&key).await;
        }
        match result {
            Err(Error::Api(ApiError::WeChat {
                errcode: 61009 | 61010,
                ..
            })) => {
                // Used already: maybe by the other path a moment ago, elsewhere. Wait for its record.
                let deadline = self.creds.clock.now_ms().saturating_add(EXCHANGE_WAIT_MS);
                while self.creds.clock.now_ms() < deadline {
                    self.creds.clock.sleep(250).await;
                    if let Some(done) = self.exchanged(&key).await {
                        return Ok(done);
                    }
                }
                result
            }
            other => other,
        }
    }

    /// Not exchanged: the claim is released so that the next attempt (the other path, a retry)
    /// may try again.
    async fn release_exchange(&self, key: &str) {
        if let Err(e) = self.creds.store.delete(key).await {
            log::warn!(account = self.name(), error = e.to_string(); "the claim of a failed exchange was not released");
        }
    }

    pub(super) async fn exchanged(&self, key: &str) -> Option<Authorization> {
        let text = self.creds.store.get(key).await.ok()??;
        serde_json::from_str(&text).ok()
    }

    /// The record of an exchange another request claimed: waited for until it is there, or
    /// until the claim is released or lapses (then this request exchanges itself).
    async fn wait_for_exchange(&self, code: &str, key: &str) -> Result<Authorization, Error> {
        let deadline = self.creds.clock.now_ms().saturating_add(EXCHANGE_WAIT_MS);
        loop {
            let found = self.creds.store.get(key).await.ok().flatten();
            match found.as_deref() {
                Some(EXCHANGING) if self.creds.clock.now_ms() < deadline => {
                    self.creds.clock.sleep(250).await;
                }
                Some(EXCHANGING) => {
                    return Err(ApiError::Unreachable(
                        "the exchange of this code by another request has not finished; try again"
                            .into(),
                    )
                    .into())
                }
                Some(text) if !text.is_empty() => {
                    if let Ok(done) = serde_json::from_str(text) {
                        return Ok(done);
                    }
                    return Err(bad("the stored exchange is unreadable"));
                }
                // Released (the first attempt failed) or lapsed: exchange it here.
                _ => {
                    let claimed = self
                        .creds
                        .store
                        .put_if(
                            key,
                            EXCHANGING,
                            found.as_deref(),
                            Some(EXCHANGE_CLAIM_TTL_SECS),
                        )
                        .await;
                    return match claimed {
                        Ok(true) => {
                            let result = self.exchange_now(code, key).await;
                            if result.is_err() {
                                self.release_exchange(key).await;
                            }
                            result
                        }
                        _ => Err(ApiError::Unreachable(
                            "the code's exchange is contested; try again".into(),
                        )
                        .into()),
                    };
                }
            }
        }
    }

    pub(super) async fn exchange_now(&self, code: &str, key: &str) -> Result<Authorization, Error> {
        let app_id = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_query_auth",
                &json!({ "component_appid": app_id, "authorization_code": code }),
            )
            .await?;
        let info = answer
            .get("authorization_info")
            .ok_or_else(|| bad("api_query_auth answered no authorization_info"))?;
        let text = |f: &str| {
            info.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let authorizer = text("authorizer_appid").ok_or_else(|| bad("no authorizer_appid"))?;
        let refresh_token =
            text("authorizer_refresh_token").ok_or_else(|| bad("no authorizer_refresh_token"))?;
        let now = self.creds.clock.now_secs();
        let expires_at = now.saturating_add(
            info.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(7200),
        );
        let func_info = info
            .get("func_info")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let record = Authorizer {
            app_id: authorizer.to_owned(),
            refresh_token: refresh_token.to_owned(),
            access_token: text("authorizer_access_token").map(str::to_owned),
            expires_at,
            fetched_at: now,
            forced_at: None,
            func_info: func_info.clone(),
            authorized_at: now,
        };
        self.save_authorizer(&record).await;
        let done = Authorization {
            authorizer_app_id: authorizer.to_owned(),
            func_info,
            expires_at,
        };
        let text = serde_json::to_string(&done).unwrap_or_default();
        if let Err(e) = self.creds.store.put(key, &text, Some(CODE_TTL_SECS)).await {
            log::warn!(account = self.name(), error = e.to_string(); "exchanged code not remembered");
        }
        log::info!(account = self.name(), authorizer = authorizer; "authorization code exchanged");
        Ok(done)
    }
}
