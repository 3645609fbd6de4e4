//! The merchants (authorizers): their records and tokens, revocation, the paged listing and the
//! sync with WeChat's list.

use super::*;

/// One authorizer's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorizer {
    pub app_id: String,
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_at: u64,
    #[serde(default)]
    pub fetched_at: u64,
    #[serde(default)]
    pub forced_at: Option<u64>,
    #[serde(default)]
    pub func_info: Value,
    /// Unix seconds.
    pub authorized_at: u64,
}

impl Authorizer {
    /// The access token as a stored credential, when there is one.
    pub fn credential(&self) -> Option<Stored> {
        Some(Stored {
            value: self.access_token.clone()?,
            expires_at: self.expires_at,
            fetched_at: self.fetched_at,
            forced_at: self.forced_at,
        })
    }

    fn summary(&self) -> Value {
        json!({
            "app_id": self.app_id,
            "authorized_at": crate::time::rfc3339_millis(self.authorized_at.saturating_mul(1000)),
            "func_info": self.func_info,
            "has_access_token": self.access_token.is_some(),
        })
    }
}

/// One authorizer's token, as the token routes and the pass-through use it.
pub struct AuthorizerTokens<'a, C, S, H> {
    platform: &'a Platform<'a, C, S, H>,
    app_id: String,
}

impl<C: Clock, S: Store, H: Http> AuthorizerTokens<'_, C, S, H> {
    fn flight(&self, forced: bool) -> (String, crate::token::Credential, bool) {
        (
            format!("{}/{}", self.platform.name(), self.app_id),
            crate::token::Credential::AuthorizerToken,
            forced,
        )
    }

    async fn refresh(&self, forced: bool) -> Result<Stored, Error> {
        let creds = &self.platform.creds;
        creds
            .memory
            .authorizer_flights
            .run(creds.clock, self.flight(forced), || async {
                self.platform.refresh_authorizer(&self.app_id, forced).await
            })
            .await
    }
}

impl<C: Clock, S: Store, H: Http> TokenSource for AuthorizerTokens<'_, C, S, H> {
    /// An exception to "every per-kind fact in `account/kind.rs`": a merchant is an Official
    /// Account or a Mini Program and its record does not say which, so its errors get the
    /// Official Account's hints (which name the errcodes both share).
    fn kind(&self) -> Kind {
        Kind::Official
    }

    fn api_base(&self) -> Result<&str, Error> {
        Ok(self.platform.creds.account.api_base()?)
    }

    /// The stored token while more than 5 minutes remain; refreshed otherwise (the stored one
    /// is still served while valid if the refresh fails).
    async fn token(&self) -> Result<Stored, Error> {
        let record = self
            .platform
            .load_authorizer(&self.app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let now = self.platform.creds.clock.now_secs();
        let stored = record.credential();
        if let Some(fresh) = stored.as_ref().filter(|s| s.is_fresh(now)) {
            return Ok(fresh.clone());
        }
        match (self.refresh(false).await, stored) {
            (Ok(fresh), _) => Ok(fresh),
            // Revoked meanwhile: nothing of it is served any more.
            (Err(Error::UnknownAuthorizer), _) => Err(Error::UnknownAuthorizer),
            (Err(e), Some(old)) if old.is_usable_fallback(now) => {
                log::warn!(authorizer = self.app_id.as_str(), error = e.to_string(); "authorizer refresh failed; serving the stored token until it expires");
                Ok(old)
            }
            (Err(e), _) => Err(e),
        }
    }

    /// A forced refresh, at most once a minute per authorizer; none when `refused` is no
    /// longer the authorizer's token (the current one is the answer).
    async fn force_refresh(&self, refused: Option<&str>) -> Result<Refreshed, Error> {
        let creds = &self.platform.creds;
        let now = creds.clock.now_secs();
        let record = self
            .platform
            .load_authorizer(&self.app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let current = record.credential().filter(|c| c.expires_at > now);
        if let (Some(refused), Some(current)) = (refused, &current) {
            if current.value != refused {
                return Ok(Refreshed {
                    credential: current.clone(),
                    refreshed: false,
                });
            }
        }
        let key = format!("{}/{}", self.platform.name(), self.app_id);
        let recently = record
            .forced_at
            .is_some_and(|t| now.saturating_sub(t) < FORCED_REFRESH_INTERVAL_SECS)
            || creds.memory.forced_recently(&key, now);
        if recently {
            if let Some(credential) = record.credential().filter(|c| c.expires_at > now) {
                return Ok(Refreshed {
                    credential,
                    refreshed: false,
                });
            }
        }
        creds.memory.note_forced(&key, now);
        Ok(Refreshed {
            credential: self.refresh(true).await?,
            refreshed: true,
        })
    }
}

impl<'a, C: Clock, S: Store, H: Http> Platform<'a, C, S, H> {
    /// Forgets an authorizer (`unauthorized`).
    pub async fn revoke(&self, app_id: &str) {
        if let Err(e) = self
            .creds
            .store
            .delete(&authorizer_key(self.name(), app_id))
            .await
        {
            log::error!(account = self.name(), authorizer = app_id, error = e.to_string(); "revoked authorizer not deleted");
        } else {
            log::info!(account = self.name(), authorizer = app_id; "authorizer revoked; its tokens are deleted");
        }
    }

    /// The authorizer's token source, for `/token` and `/api/*`.
    pub fn authorizer(&'a self, app_id: &str) -> AuthorizerTokens<'a, C, S, H> {
        AuthorizerTokens {
            platform: self,
            app_id: app_id.to_owned(),
        }
    }

    /// Refreshes an authorizer's token with its refresh token; the refresh token WeChat returns
    /// replaces the stored one before the token is handed out. The write is a compare-and-set
    /// against the record as read: a revocation or a re-authorization that happened during the
    /// call wins (with the platform's object behind the store, in every location).
    pub(super) async fn refresh_authorizer(
        &self,
        app_id: &str,
        forced: bool,
    ) -> Result<Stored, Error> {
        let (mut seen, mut record) = self
            .load_authorizer_text(app_id)
            .await?
            .ok_or(Error::UnknownAuthorizer)?;
        let used = record.refresh_token.clone();
        let authorized_at = record.authorized_at;
        let component = self.creds.account.require_app_id()?;
        let answer = self
            .call(
                "api_authorizer_token",
                &json!({
                    "component_appid": component,
                    "authorizer_appid": app_id,
                    "authorizer_refresh_token": used,
                }),
            )
            .await?;
        let now = self.creds.clock.now_secs();
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        let stored = crate::token::access_token::parse_field_response(
            &body,
            "authorizer_access_token",
            now,
            forced,
        )?;
        let rotated = answer
            .get("authorizer_refresh_token")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        for _ in 0..3 {
            if let Some(rotated) = &rotated {
                record.refresh_token = rotated.clone();
            }
            record.access_token = Some(stored.value.clone());
            record.expires_at = stored.expires_at;
            record.fetched_at = stored.fetched_at;
            record.forced_at = stored.forced_at.or(record.forced_at);
            let written = match self.save_authorizer_if(&record, &seen).await {
                // One more try on a store error: a lost refresh token means re-authorizing.
                Err(_) => self.save_authorizer_if(&record, &seen).await,
                other => other,
            };
            match written {
                Ok(true) => {
                    log::info!(account = self.name(), authorizer = app_id, token = stored.redacted(), forced = forced; "authorizer token refreshed");
                    return Ok(stored);
                }
                Ok(false) => {}
                Err(e) => {
                    log::error!(account = self.name(), authorizer = app_id, error = e.to_string();
                        "authorizer record not stored: its refresh token may be lost; POST /component/authorizers/sync recovers it");
                    return Ok(stored);
                }
            }
            // Changed while WeChat was asked.
            let reloaded = match self.load_authorizer_text(app_id).await {
                Ok(found) => found,
                Err(e) => {
                    log::error!(account = self.name(), authorizer = app_id, error = e.to_string();
                        "authorizer record not re-read after a concurrent change; its refreshed token is served but not stored");
                    return Ok(stored);
                }
            };
            match reloaded {
                None => {
                    log::info!(account = self.name(), authorizer = app_id; "authorizer revoked during its refresh; the refresh is dropped");
                    return Err(Error::UnknownAuthorizer);
                }
                Some((_, current))
                    if current.refresh_token != used || current.authorized_at != authorized_at =>
                {
                    // Re-authorized (or rotated by another refresh): the newer record wins.
                    log::info!(account = self.name(), authorizer = app_id; "authorizer re-authorized during its refresh; the newer record is kept");
                    return Ok(stored);
                }
                Some((text, current)) => {
                    // Another refresh of the same authorization: apply this one on top.
                    seen = text;
                    record = current;
                }
            }
        }
        log::error!(account = self.name(), authorizer = app_id;
            "authorizer record kept changing during its refresh; the refreshed token is served but not stored");
        Ok(stored)
    }

    /// `GET /component/authorizers?limit=&cursor=`: one page of the stored authorizers (100 by
    /// default, at most 1,000) and the next page's cursor. A record that cannot be read is
    /// listed with its AppID and the reason, never left out.
    pub async fn authorizers(
        &self,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Value, Error> {
        let limit = crate::delivery::dead_letters::limit_of(limit)?;
        let cursor = crate::delivery::dead_letters::cursor_of(cursor)?;
        let store = self.creds.store;
        let prefix = authorizer_prefix(self.name());
        let page = store
            .list_page(&prefix, cursor, limit)
            .await
            .map_err(|e| Error::Internal(format!("listing authorizers: {e}")))?;
        let mut list = Vec::with_capacity(page.keys.len());
        for key in &page.keys {
            let app_id = key.strip_prefix(&prefix).unwrap_or(key);
            let shown = match store.get(key).await {
                Ok(None) => continue,
                Ok(Some(text)) => match serde_json::from_str::<Authorizer>(&text) {
                    Ok(record) => record.summary(),
                    Err(_) => {
                        json!({ "app_id": app_id, "error": "unreadable record: POST /component/authorizers/sync restores it" })
                    }
                },
                Err(e) => json!({ "app_id": app_id, "error": format!("not read: {e}") }),
            };
            list.push(shown);
        }
        Ok(json!({ "authorizers": list, "cursor": page.cursor }))
    }

    /// `POST /component/authorizers/sync[?offset=]`: one window of the authorizers WeChat knows
    /// (`api_get_authorizer_list`, [`SYNC_PAGE`] from `offset`), each refresh token stored or
    /// replaced; small enough for one invocation's subrequests. Answers `next_offset` (null when
    /// done) to call again with, and counts only what it stored.
    pub async fn sync(&self, offset: Option<&str>) -> Result<Value, Error> {
        let component = self.creds.account.require_app_id()?;
        let offset: u64 = match offset {
            None | Some("") => 0,
            Some(text) => text
                .parse()
                .map_err(|_| Error::MalformedParameter("offset"))?,
        };
        let answer = self
            .call(
                "api_get_authorizer_list",
                &json!({ "component_appid": component, "offset": offset, "count": SYNC_PAGE }),
            )
            .await?;
        let total = answer
            .get("total_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let list = answer
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (mut created, mut updated, mut unchanged, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for item in &list {
            let text = |f: &str| {
                item.get(f)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let (Some(app_id), Some(refresh)) = (text("authorizer_appid"), text("refresh_token"))
            else {
                failed += 1;
                continue;
            };
            let record = match self.load_authorizer(app_id).await {
                Ok(record) => record,
                Err(e) => {
                    log::warn!(account = self.name(), authorizer = app_id, error = e.to_string(); "sync: authorizer not read; skipped");
                    failed += 1;
                    continue;
                }
            };
            let (record, new) = match record {
                Some(record) if record.refresh_token == refresh => {
                    unchanged += 1;
                    continue;
                }
                Some(mut record) => {
                    record.refresh_token = refresh.to_owned();
                    (record, false)
                }
                None => (
                    Authorizer {
                        app_id: app_id.to_owned(),
                        refresh_token: refresh.to_owned(),
                        access_token: None,
                        expires_at: 0,
                        fetched_at: 0,
                        forced_at: None,
                        func_info: Value::Array(Vec::new()),
                        authorized_at: item.get("auth_time").and_then(Value::as_u64).unwrap_or(0),
                    },
                    true,
                ),
            };
            match (self.save_authorizer(&record).await, new) {
                (false, _) => failed += 1,
                (true, true) => created += 1,
                (true, false) => updated += 1,
            }
        }
        let next = offset.saturating_add(list.len() as u64);
        let next_offset = (!list.is_empty() && next < total).then_some(next);
        Ok(json!({
            "total": total,
            "offset": offset,
            "next_offset": next_offset,
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "failed": failed,
        }))
    }
}
