//! Passive replies: asked of the reply receiver within the deadline, rendered (and sealed in
//! safe mode), or sent late through the customer-service API.

use super::*;

/// A reply receiver's answer, or why there is none.
pub(super) enum ReplyResult {
    Reply(Reply),
    Nothing(String),
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// Sends a message through WeChat's API (`path`, a JSON body) with `source`'s token; a
    /// refusal comes back as WeChat's words, for the log.
    pub(super) async fn send_message<T: TokenSource>(
        &self,
        source: &T,
        path: &str,
        message: &serde_json::Value,
    ) -> Result<(), String> {
        let call = Call {
            method: Method::Post,
            wechat_path: path.to_owned(),
            query: Vec::new(),
            content_type: Some("application/json".to_owned()),
            body: Some(message.to_string().into_bytes()),
        };
        match passthrough::pass_through(&self.http, source, call).await {
            Ok(Passed::Read { body, .. }) => match crate::error::api_error::errcode_of(&body) {
                None => Ok(()),
                Some(e) => Err(e.to_string()),
            },
            Ok(Passed::Streamed(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The passive reply to `event`, addressed to its sender (`None` when it has none).
    pub(super) fn reply_message(&self, reply: &Reply, event: &Event, json: bool) -> Option<String> {
        let now = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let from = event.from.as_deref()?;
        Some(if json {
            reply.to_json(from, &event.to, now)
        } else {
            reply.to_xml(from, &event.to, now)
        })
    }

    /// The answer body for a reply in plaintext (`""` = no reply: `success`), sealed when the
    /// callback was encrypted.
    pub(super) fn render_reply(
        &self,
        account: &Account,
        mode: Mode,
        plain: &str,
        random: [u8; 32],
    ) -> Result<String, Error> {
        if plain.is_empty() {
            return Ok("success".to_owned());
        }
        if mode == Mode::Plaintext {
            return Ok(plain.to_owned());
        }
        let mut aes_random = [0u8; 16];
        aes_random.copy_from_slice(random.get(..16).unwrap_or(&[0; 16]));
        let nonce = random
            .get(16..24)
            .map(|b| b.iter().fold(0u64, |n, &x| (n << 8) | u64::from(x)) % 10_000_000_000)
            .unwrap_or(0)
            .to_string();
        let envelope = reply::seal(
            account.require_aes_key()?,
            account.token()?,
            account.require_app_id()?,
            aes_random,
            &self.clock.now_secs().to_string(),
            &nonce,
            plain.as_bytes(),
        );
        Ok(if plain.starts_with('{') {
            envelope.to_json()
        } else {
            envelope.to_xml()
        })
    }

    /// Posts the event to the reply receiver and waits until the deadline. `Err` carries the
    /// request still in flight when the deadline passed.
    pub(super) async fn ask_for_reply(
        &self,
        event: &Event,
        event_body: &[u8],
        reply_url: &Destination,
        timeout_ms: u64,
    ) -> Result<ReplyResult, Pending<ReplyResult>> {
        let secret = self.config.forward_secret().ok().flatten().cloned();
        let request = delivery::request(
            reply_url,
            &event.id,
            event_body,
            secret.as_ref(),
            self.clock.now_secs(),
        );
        let http = self.http.clone();
        let fetch: Pending<ReplyResult> = Box::pin(async move {
            let answer = match http.send(&request, LATE_REPLY_LIMIT_MS).await {
                Ok(answer) => answer,
                Err(e) => return ReplyResult::Nothing(format!("reply receiver: {e}")),
            };
            let status = answer.status();
            if !(200..=299).contains(&status) {
                return ReplyResult::Nothing(format!("reply receiver answered HTTP {status}"));
            }
            match answer.bytes().await {
                Err(e) => ReplyResult::Nothing(format!("reply receiver: {e}")),
                Ok(body) => match Reply::from_answer(&body) {
                    Ok(Some(reply)) => ReplyResult::Reply(reply),
                    Ok(None) => ReplyResult::Nothing("reply receiver answered no reply".into()),
                    Err(e) => {
                        ReplyResult::Nothing(format!("reply receiver's answer is not a reply: {e}"))
                    }
                },
            }
        });
        let deadline = self.clock.sleep(timeout_ms);
        futures_util::pin_mut!(deadline);
        match select(fetch, deadline).await {
            Either::Left((result, _)) => Ok(result),
            Either::Right((_, pending)) => Err(pending),
        }
    }

    /// A reply that missed the deadline: sent through the customer-service API when the
    /// account has an AppSecret.
    pub(super) fn late_reply(
        self,
        account_name: String,
        authorizer: Option<String>,
        event: Event,
        pending: Pending<ReplyResult>,
    ) -> Background {
        Box::pin(async move {
            let reply = match pending.await {
                ReplyResult::Reply(reply) => reply,
                ReplyResult::Nothing(why) => {
                    log::info!(event_id = event.id.as_str(), reason = why; "no passive reply (late)");
                    return;
                }
            };
            let Ok(account) = self.config.account(&account_name) else {
                return;
            };
            if account.app_secret().is_err() {
                log::warn!(event_id = event.id.as_str(); "reply came after the deadline; without an AppSecret it cannot go through the customer-service API");
                return;
            }
            let Some(from) = event.from.as_deref() else {
                log::warn!(event_id = event.id.as_str(); "late reply dropped: the message has no FromUserName to answer");
                return;
            };
            let Some(mut message) = reply.custom_message(from) else {
                log::warn!(event_id = event.id.as_str(); "late transfer_customer_service reply dropped: the customer-service API has no equivalent");
                return;
            };
            // WeCom apps send with message/send, naming the app.
            let (path, names_agent) = account.kind().late_reply_api();
            if names_agent {
                let agent = event
                    .data
                    .get("agent_id")
                    .or_else(|| account.agent_id().map(serde_json::Value::from));
                if let (serde_json::Value::Object(m), Some(agent)) = (&mut message, agent) {
                    m.insert("agentid".into(), agent);
                }
            }
            let sent = match &authorizer {
                Some(app_id) => match self.platform(&account_name) {
                    Ok(platform) => {
                        self.send_message(&platform.authorizer(app_id), path, &message)
                            .await
                    }
                    Err(e) => Err(e.to_string()),
                },
                None => {
                    self.send_message(&self.own_source(account), path, &message)
                        .await
                }
            };
            match sent {
                Ok(()) => {
                    log::info!(event_id = event.id.as_str(); "late reply sent through the customer-service API")
                }
                Err(e) => {
                    log::error!(event_id = event.id.as_str(), error = e; "late reply not sent")
                }
            }
        })
    }
}
