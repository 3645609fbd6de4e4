//! A third-party platform's pushes (the verify ticket, authorizations, everything else
//! forwarded) and WeChat's release check of its merchants.

use super::claims::Claim;
use super::*;

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// A third-party platform's authorization push: answered `success` at once; the verify
    /// ticket stored (never forwarded); an authorization's code exchanged after the answer; a
    /// revoked authorizer's tokens deleted; every other push forwarded whole.
    pub(super) async fn receive_push(
        &self,
        account: &Account,
        query: &Query,
        body: &[u8],
        random: [u8; 32],
    ) -> Result<Answer, Error> {
        let opened = self.open_sealed(account.name(), query, body).await?;
        let parsed = opened.parse()?;
        let event = parsed.normalize_component()?;
        let info = event.event.clone().unwrap_or_default();
        if info == "component_verify_ticket" {
            let ticket = parsed
                .root
                .child_text("ComponentVerifyTicket")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(Error::MissingElement("ComponentVerifyTicket"))?;
            component::store_ticket(
                &self.clock,
                &self.store,
                account.name(),
                ticket,
                event.created_at,
            )
            .await;
            return Ok(answer("success".to_owned(), false, None));
        }
        let targets = self.config.targets_for(&event)?;
        let mode = self.config.forward_mode()?;
        self.config.forward_secret()?;
        let held = match self.claim(account.name(), &event.id, None, &random).await? {
            Claim::Answered(_) => return Ok(answer("success".to_owned(), false, None)),
            Claim::Go(held) => held,
        };
        if info == "unauthorized" {
            if let (Some(app_id), Ok(platform)) = (&event.app_id, self.platform(account.name())) {
                platform.revoke(app_id).await;
            }
        }
        let event_body = event.to_json();
        let now_targets = match self
            .enqueue(mode, account.name(), &event, &event_body, targets)
            .await
        {
            Ok(targets) => targets,
            Err(e) => {
                self.settle(held, None).await;
                return Err(e);
            }
        };
        let mut background: Vec<Background> = vec![self.settle_after(held, String::new())];
        background.extend(self.deliver_after(account.name(), &event, event_body, now_targets));
        if matches!(info.as_str(), "authorized" | "updateauthorized") {
            if let Some(code) = parsed
                .root
                .child_text("AuthorizationCode")
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                let (relay, name, code) =
                    (self.clone(), account.name().to_owned(), code.to_owned());
                background.push(Box::pin(async move {
                    relay.exchange_in_background(&name, &code).await
                }));
            }
        }
        Ok(answer("success".to_owned(), false, join(background)))
    }

    pub(super) async fn exchange_in_background(&self, account_name: &str, code: &str) {
        let result = match self.platform(account_name) {
            Ok(platform) => platform.exchange(code).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::error!(account = account_name, error = e.to_string(); "authorization code exchange failed; POST /component/authorizations with the code, or /component/authorizers/sync");
        }
    }

    /// WeChat's release check (全网发布): the relay answers its test accounts itself.
    pub(super) fn release_check(
        &self,
        account: &Account,
        inbound: callback::Inbound,
        check: ReleaseCheck,
        random: [u8; 32],
    ) -> Result<Answer, Error> {
        let event = inbound.event;
        match check {
            ReleaseCheck::Text => {
                log::info!(account = account.name(), event_id = event.id.as_str(); "release check: text message answered");
                let reply = Reply::Text {
                    content: format!("{}_callback", component::RELEASE_TEXT),
                };
                let message = self
                    .reply_message(&reply, &event, inbound.json)
                    .unwrap_or_default();
                let body = self.render_reply(account, inbound.mode, &message, random)?;
                Ok(answer(body, inbound.json, None))
            }
            ReleaseCheck::QueryAuthCode(code) => {
                log::info!(account = account.name(), event_id = event.id.as_str(); "release check: QUERY_AUTH_CODE answered empty; the reply follows through the API");
                let (relay, name, authorizer, to) = (
                    self.clone(),
                    account.name().to_owned(),
                    event.app_id.clone().unwrap_or_default(),
                    event.from.clone().unwrap_or_default(),
                );
                let background: Background = Box::pin(async move {
                    relay.release_reply(&name, &authorizer, &to, &code).await;
                });
                Ok(Answer {
                    body: String::new(),
                    content_type: "text/plain; charset=utf-8",
                    background: Some(background),
                })
            }
        }
    }

    /// The release check's second half: exchange the code, then `<code>_from_api` through the
    /// customer-service API with the authorizer's token.
    pub(super) async fn release_reply(
        &self,
        account_name: &str,
        authorizer: &str,
        to: &str,
        code: &str,
    ) {
        let Ok(platform) = self.platform(account_name) else {
            return;
        };
        if let Err(e) = platform.exchange(code).await {
            log::error!(account = account_name, error = e.to_string(); "release check: code exchange failed");
            return;
        }
        let message = json!({ "touser": to, "msgtype": "text", "text": { "content": format!("{code}_from_api") } });
        match self
            .send_message(
                &platform.authorizer(authorizer),
                "cgi-bin/message/custom/send",
                &message,
            )
            .await
        {
            Ok(()) => {
                log::info!(account = account_name; "release check: reply sent through the API")
            }
            Err(e) => {
                log::error!(account = account_name, error = e; "release check: reply not sent")
            }
        }
    }
}
