//! A callback from WeChat to its answer: verified, decrypted, normalized, deduplicated, handed
//! over for delivery (enqueued, or delivered right after the answer), answered.

use super::claims::Claim;
use super::replies::ReplyResult;
use super::*;
use crate::coordinator::Nonce;
use crate::ports::{QueueError, SoftwareCipher};
use crate::wire::crypto;

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// A callback: verified, decrypted and normalized; handed over durably (or scheduled right
    /// after the answer); answered with a passive reply when the reply receiver gives one, else
    /// `success`. `random` supplies the reply envelope's randomness. For a third-party platform
    /// this is its authorization-event URL.
    pub async fn receive(
        &self,
        account_name: &str,
        query: &Query,
        body: &[u8],
        random: [u8; 32],
    ) -> Result<Answer, Error> {
        let account = self.config.account(account_name)?;
        if account.kind().is_platform() {
            return self.receive_push(account, query, body, random).await;
        }
        let inbound = match callback::begin_callback(
            &self.config,
            account_name,
            query,
            body,
            self.clock.now_ms(),
        )? {
            callback::Begun::Opened(inbound) => inbound,
            callback::Begun::Sealed(sealed) => {
                self.decrypt(sealed).await?.parse()?.normalize(None)?
            }
        };
        let nonce = match inbound.mode {
            Mode::Plaintext => Some(self.nonce_of(query, body)?),
            Mode::Encrypted => None,
        };
        self.handle_message(account, inbound, random, None, nonce)
            .await
    }

    /// A plaintext callback's (timestamp, nonce) with its body's hash, kept until the
    /// timestamp leaves the clock-skew window. WeChat's signature covers only the pair, so
    /// this is what tells a retry (same body) from a replayed URL (another body).
    fn nonce_of(&self, query: &Query, body: &[u8]) -> Result<Nonce, Error> {
        let timestamp = query
            .timestamp
            .clone()
            .ok_or(Error::MissingParameter("timestamp"))?;
        let seconds: u64 = timestamp
            .parse()
            .map_err(|_| Error::MalformedParameter("timestamp"))?;
        Ok(Nonce {
            timestamp,
            nonce: query.nonce.clone().unwrap_or_default(),
            body_sha1: crate::wire::signature::sha1_hex(body),
            expires_at: seconds.saturating_add(self.config.max_clock_skew()?),
        })
    }

    /// A message or event of an account that authorized the platform `account_name`
    /// (`/wechat/<name>/<authorizer appid>`): safe mode only, the platform's token and key,
    /// receive id = the component AppID; `app_id` is the authorizer's.
    pub async fn receive_for_authorizer(
        &self,
        account_name: &str,
        authorizer: &str,
        query: &Query,
        body: &[u8],
        random: [u8; 32],
    ) -> Result<Answer, Error> {
        let account = self.config.account(account_name)?;
        if !account.kind().is_platform() || !component::is_app_id(authorizer) {
            return Err(Error::NotFound);
        }
        let opened = self.open_sealed(account_name, query, body).await?;
        let inbound = opened.parse()?.normalize(Some(authorizer))?;
        if let Some(check) = ReleaseCheck::of(authorizer, &inbound.event) {
            return self.release_check(account, inbound, check, random);
        }
        self.handle_message(account, inbound, random, Some(authorizer.to_owned()), None)
            .await
    }

    pub(super) async fn decrypt(
        &self,
        mut sealed: callback::Sealed,
    ) -> Result<callback::Opened, Error> {
        let ciphertext = std::mem::take(&mut sealed.ciphertext);
        // Small: the core's AES finishes before a call out to the platform's would return.
        let plain = if ciphertext.len() < crypto::PORT_CIPHER_FROM_BYTES {
            SoftwareCipher.cbc_decrypt(&sealed.key, ciphertext).await
        } else {
            self.cipher.cbc_decrypt(&sealed.key, ciphertext).await
        };
        sealed.open(&plain.map_err(|_| Error::Decryption)?)
    }

    /// A callback of an always-encrypted kind, decrypted.
    pub(super) async fn open_sealed(
        &self,
        account_name: &str,
        query: &Query,
        body: &[u8],
    ) -> Result<callback::Opened, Error> {
        match callback::begin_callback(
            &self.config,
            account_name,
            query,
            body,
            self.clock.now_ms(),
        )? {
            callback::Begun::Sealed(sealed) => self.decrypt(sealed).await,
            // Platforms are always encrypted: begin_callback never opens their plaintext.
            callback::Begun::Opened(_) => Err(Error::MissingElement("Encrypt")),
        }
    }

    /// The durable hand-off: in queue mode every (event, target) job is enqueued now, in one
    /// batch (an error if the queue or, for a large event, the store refuses); returns the
    /// targets to deliver right after the answer.
    pub(super) async fn enqueue(
        &self,
        mode: ForwardMode,
        account_name: &str,
        event: &Event,
        event_body: &[u8],
        targets: Vec<Destination>,
    ) -> Result<Vec<Destination>, Error> {
        if targets.is_empty() {
            log::info!(event_id = event.id.as_str(), r#type = event.kind.as_str(), event = event.event.as_deref().unwrap_or(""); "event matches no route; forwarded nowhere");
        }
        let (ForwardMode::Queue, Some(queue)) = (mode, &self.queue) else {
            return Ok(targets);
        };
        if targets.is_empty() {
            return Ok(targets);
        }
        let jobs: Vec<Job> = targets
            .iter()
            .map(|t| Job::new(&event.id, account_name, t, event_body))
            .collect();
        let jobs = self.fit(jobs, event_body).await.map_err(|e| {
            log::error!(event_id = event.id.as_str(), error = e.to_string(); "large event not kept; WeChat will retry");
            Error::QueueUnavailable(QueueError(format!("keeping the event: {e}")))
        })?;
        for batch in batches(&jobs, 0) {
            queue.send_batch(&batch).await.map_err(|e| {
                log::error!(event_id = event.id.as_str(), error = e.0.as_str(); "enqueue failed; WeChat will retry");
                Error::QueueUnavailable(e)
            })?;
        }
        Ok(Vec::new())
    }

    pub(super) fn deliver_after(
        &self,
        account_name: &str,
        event: &Event,
        event_body: Vec<u8>,
        targets: Vec<Destination>,
    ) -> Option<Background> {
        if targets.is_empty() {
            return None;
        }
        let retry_through_queue = self.queue.is_some();
        Some(Box::pin(self.clone().deliver_now(
            event.id.clone(),
            account_name.to_owned(),
            event_body,
            targets,
            retry_through_queue,
        )))
    }

    /// A message or event: claim, hand-off, passive reply, settle, answer.
    pub(super) async fn handle_message(
        &self,
        account: &Account,
        inbound: callback::Inbound,
        random: [u8; 32],
        authorizer: Option<String>,
        nonce: Option<Nonce>,
    ) -> Result<Answer, Error> {
        let config = &self.config;
        let event = inbound.event;
        // Every setting the rest needs, before anything is handed over.
        let targets = config.targets_for(&event)?;
        let mode = config.forward_mode()?;
        config.forward_secret()?;
        let reply_url = config.reply_url()?.cloned();
        let reply_timeout_ms = config.reply_timeout_ms()?;

        let held = match self
            .claim(account.name(), &event.id, nonce, &random)
            .await?
        {
            Claim::Answered(stored) => {
                let body = self.render_reply(account, inbound.mode, &stored, random)?;
                return Ok(answer(body, inbound.json, None));
            }
            Claim::Go(held) => held,
        };
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

        // The passive reply.
        let mut late = None;
        let mut reply_text = String::new();
        let asked_for_reply = reply_url.is_some();
        if let Some(reply_url) = reply_url {
            match self
                .ask_for_reply(&event, &event_body, &reply_url, reply_timeout_ms)
                .await
            {
                Ok(ReplyResult::Reply(r)) => {
                    // The reply must be in the format the console is set to (Mini Programs
                    // choose; the others reply in the format WeChat pushed).
                    let json = inbound.json || account.format() == MessageFormat::Json;
                    match self.reply_message(&r, &event, json) {
                        Some(text) => reply_text = text,
                        None => {
                            log::info!(event_id = event.id.as_str(); "passive reply dropped: the message has no FromUserName to answer")
                        }
                    }
                }
                Ok(ReplyResult::Nothing(why)) => {
                    log::info!(event_id = event.id.as_str(), reason = why; "no passive reply; answering success")
                }
                Err(pending) => {
                    late = Some(self.clone().late_reply(
                        account.name().to_owned(),
                        authorizer,
                        event.clone(),
                        pending,
                    ))
                }
            }
        }
        let mut background: Vec<Background> = Vec::new();
        if asked_for_reply {
            // Before the answer: a retry waiting on this attempt gets the same reply.
            self.settle(held, Some(reply_text.clone())).await;
        } else {
            // `success` whatever follows: reported right after the answer.
            background.push(self.settle_after(held, String::new()));
        }

        background.extend(self.deliver_after(account.name(), &event, event_body, now_targets));
        background.extend(late);
        let body = self.render_reply(account, inbound.mode, &reply_text, random)?;
        Ok(answer(body, inbound.json, join(background)))
    }
}
