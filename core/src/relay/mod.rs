//! The relay's flows over the ports: a callback from WeChat to the answer (dedup, durable
//! hand-off, passive reply), the delivery queue's consumers, the admin routes' dead letters and
//! replays, and each account's credentials.
//!
//! **Nothing accepted is lost.** In `queue` mode every (event, target) job is enqueued before
//! WeChat gets its answer; if the queue refuses, WeChat gets a 503 and nothing is marked as
//! seen, so its retry is processed afresh. In `direct` mode (or with no queue binding) delivery
//! starts right after the answer: one attempt, then the queue's retry schedule for what failed
//! (or, with no queue, four attempts inside `wait_until`), and whatever still fails is stored as
//! a dead letter.
//!
//! **Once per retry storm.** A short-lived mark per event id (in the Cache API of the location)
//! remembers the event and the reply it got; WeChat's retries get the same answer and are not
//! delivered again.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures_util::future::{join_all, select, Either};
use serde_json::json;

use crate::accounts::{Account, Kind, MessageFormat};
use crate::callback::{self, Mode, Query};
use crate::component::{self, Platform, ReleaseCheck};
use crate::config::{Config, ForwardMode};
use crate::credentials::{Credentials, Memory, TokenSource};
use crate::dead_letters::{self, DeadLetter};
use crate::delivery::{self, Failed, Outcome};
use crate::error::Error;
use crate::event::Event;
use crate::jobs::{self, Job, Next, Schedule};
use crate::passthrough::{self, Call, Passed};
use crate::ports::{Cipher, Clock, Destination, Http, HttpAnswer, Queue, Store};
use crate::reply::{self, Reply};
use crate::routes::Method;

/// How long a duplicate mark lives: well past WeChat's three retries (5 s apart).
pub const MARK_TTL_SECS: u64 = 300;
/// How long a reply receiver may take in all; after the passive-reply deadline its answer goes
/// through the customer-service API. Inside `wait_until`'s 30 s.
pub const LATE_REPLY_LIMIT_MS: u64 = 25_000;
/// Dead letters replayed per request without a queue (each is one attempt, a subrequest).
pub const MAX_INLINE_REPLAYS: usize = 10;
/// Dead letters replayed per request through the queue.
pub const MAX_QUEUED_REPLAYS: usize = 200;

/// Work that continues after the answer (`wait_until`).
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// A request still in flight.
pub type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// WeChat's answer to a callback, and the work that follows it.
pub struct Answer {
    pub body: String,
    pub content_type: &'static str,
    pub background: Option<Background>,
}

/// What the queue consumer does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ack,
    Retry { delay_secs: u32 },
}

/// The ports and the request's settings. Cloning is cheap (the ports are handles).
pub struct Relay<C, S, M, H, Q, X> {
    pub clock: C,
    /// Workers KV: credentials and dead letters.
    pub store: S,
    /// The duplicate marks (the Cache API).
    pub marks: M,
    pub http: H,
    /// The delivery queue, when bound.
    pub queue: Option<Q>,
    pub cipher: X,
    pub memory: Rc<Memory>,
    pub config: Rc<Config>,
}

impl<C: Clone, S: Clone, M: Clone, H: Clone, Q: Clone, X: Clone> Clone for Relay<C, S, M, H, Q, X> {
    fn clone(&self) -> Self {
        Relay {
            clock: self.clock.clone(),
            store: self.store.clone(),
            marks: self.marks.clone(),
            http: self.http.clone(),
            queue: self.queue.clone(),
            cipher: self.cipher.clone(),
            memory: self.memory.clone(),
            config: self.config.clone(),
        }
    }
}

/// A reply receiver's answer, or why there is none.
enum ReplyResult {
    Reply(Reply),
    Nothing(String),
}

impl<C, S, M, H, Q, X> Relay<C, S, M, H, Q, X>
where
    C: Clock + Clone + 'static,
    S: Store + Clone + 'static,
    M: Store + Clone + 'static,
    H: Http + Clone + 'static,
    Q: Queue + Clone + 'static,
    X: Cipher + Clone + 'static,
{
    /// An account's credentials.
    pub fn credentials<'a>(&'a self, account: &'a Account) -> Credentials<'a, C, S, H> {
        Credentials {
            clock: &self.clock,
            store: &self.store,
            http: &self.http,
            memory: &self.memory,
            account,
        }
    }

    /// A third-party platform account's flows: 404 for an unknown name, `not_available` for
    /// an account of another kind.
    pub fn platform(&self, account_name: &str) -> Result<Platform<'_, C, S, H>, Error> {
        Platform::new(self.credentials(self.config.account(account_name)?))
    }

    /// Sends a message through WeChat's API (`path`, a JSON body) with `source`'s token; a
    /// refusal comes back as WeChat's words, for the log.
    async fn send_message<T: TokenSource>(
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
            Ok(Passed::Read { body, .. }) => match crate::api_error::errcode_of(&body) {
                None => Ok(()),
                Some(e) => Err(e.to_string()),
            },
            Ok(Passed::Streamed(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

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
        if account.kind() == Kind::Component {
            return self.receive_push(account, query, body).await;
        }
        let inbound = match callback::begin_callback(
            &self.config,
            account_name,
            query,
            body,
            self.clock.now_ms(),
        )? {
            callback::Begun::Opened(inbound) => inbound,
            callback::Begun::Sealed(sealed) => self.decrypt(sealed).await?.normalize(None)?,
        };
        self.handle_message(account, inbound, random, None).await
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
        if account.kind() != Kind::Component || !component::is_app_id(authorizer) {
            return Err(Error::NotFound);
        }
        let inbound = self
            .open_sealed(account_name, query, body)
            .await?
            .normalize(Some(authorizer))?;
        if let Some(check) = ReleaseCheck::of(authorizer, &inbound.event) {
            return self.release_check(account, inbound, check, random);
        }
        self.handle_message(account, inbound, random, Some(authorizer.to_owned()))
            .await
    }

    async fn decrypt(&self, mut sealed: callback::Sealed) -> Result<callback::Opened, Error> {
        let ciphertext = std::mem::take(&mut sealed.ciphertext);
        let plain = self
            .cipher
            .cbc_decrypt(&sealed.key, ciphertext)
            .await
            .map_err(|_| Error::Decryption)?;
        sealed.open(&plain)
    }

    /// A callback of an always-encrypted kind, decrypted.
    async fn open_sealed(
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

    /// The stored reply of an event seen in the last minutes (a WeChat retry), if it was.
    async fn seen(&self, event: &Event) -> Option<String> {
        match self.marks.get(&event.id).await {
            Ok(found) => {
                if found.is_some() {
                    log::info!(event_id = event.id.as_str(); "duplicate callback, not forwarded");
                }
                found
            }
            Err(e) => {
                log::warn!(event_id = event.id.as_str(), error = e.to_string(); "duplicate marks unreadable; handling the callback anyway");
                None
            }
        }
    }

    async fn mark(&self, event: &Event, reply_text: &str) {
        if let Err(e) = self
            .marks
            .put(&event.id, reply_text, Some(MARK_TTL_SECS))
            .await
        {
            log::warn!(event_id = event.id.as_str(), error = e.to_string(); "duplicate mark not written; a retry would be forwarded again");
        }
    }

    /// The durable hand-off: in queue mode every (event, target) job is enqueued now, in one
    /// batch (an error if the queue or, for a large event, the store refuses); returns the
    /// targets to deliver right after the answer.
    async fn enqueue(
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
            Error::QueueUnavailable(format!("keeping the event: {e}"))
        })?;
        for batch in batches(&jobs, 0) {
            queue.send_batch(&batch).await.map_err(|e| {
                log::error!(event_id = event.id.as_str(), error = e.as_str(); "enqueue failed; WeChat will retry");
                Error::QueueUnavailable(e)
            })?;
        }
        Ok(Vec::new())
    }

    fn deliver_after(
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

    /// A message or event: dedup, hand-off, passive reply, mark, answer.
    async fn handle_message(
        &self,
        account: &Account,
        inbound: callback::Inbound,
        random: [u8; 32],
        authorizer: Option<String>,
    ) -> Result<Answer, Error> {
        let config = &self.config;
        let event = inbound.event;
        // Every setting the rest needs, before anything is handed over.
        let targets = config.targets_for(&event)?;
        let mode = config.forward_mode()?;
        config.forward_secret()?;
        let reply_url = config.reply_url()?.cloned();
        let reply_timeout_ms = config.reply_timeout_ms()?;

        if let Some(stored) = self.seen(&event).await {
            let body = self.render_reply(account, inbound.mode, &stored, random)?;
            return Ok(answer(body, inbound.json, None));
        }
        let event_body = event.to_json();
        let now_targets = self
            .enqueue(mode, account.name(), &event, &event_body, targets)
            .await?;

        // The passive reply.
        let mut late = None;
        let mut reply_text = String::new();
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
        self.mark(&event, &reply_text).await;

        let mut background: Vec<Background> = Vec::new();
        background.extend(self.deliver_after(account.name(), &event, event_body, now_targets));
        background.extend(late);
        let body = self.render_reply(account, inbound.mode, &reply_text, random)?;
        Ok(answer(body, inbound.json, join(background)))
    }

    /// The passive reply to `event`, addressed to its sender (`None` when it has none).
    fn reply_message(&self, reply: &Reply, event: &Event, json: bool) -> Option<String> {
        let now = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let from = event.from.as_deref()?;
        Some(if json {
            reply.to_json(from, &event.to, now)
        } else {
            reply.to_xml(from, &event.to, now)
        })
    }

    /// A third-party platform's authorization push: answered `success` at once; the verify
    /// ticket stored (never forwarded); an authorization's code exchanged after the answer; a
    /// revoked authorizer's tokens deleted; every other push forwarded whole.
    async fn receive_push(
        &self,
        account: &Account,
        query: &Query,
        body: &[u8],
    ) -> Result<Answer, Error> {
        let opened = self.open_sealed(account.name(), query, body).await?;
        let event = opened.normalize_component()?;
        let info = event.event.clone().unwrap_or_default();
        if info == "component_verify_ticket" {
            let ticket = opened
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
        if self.seen(&event).await.is_some() {
            return Ok(answer("success".to_owned(), false, None));
        }
        if info == "unauthorized" {
            if let (Some(app_id), Ok(platform)) = (&event.app_id, self.platform(account.name())) {
                platform.revoke(app_id).await;
            }
        }
        let event_body = event.to_json();
        let now_targets = self
            .enqueue(mode, account.name(), &event, &event_body, targets)
            .await?;
        self.mark(&event, "").await;
        let mut background: Vec<Background> = Vec::new();
        background.extend(self.deliver_after(account.name(), &event, event_body, now_targets));
        if matches!(info.as_str(), "authorized" | "updateauthorized") {
            if let Some(code) = opened
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

    async fn exchange_in_background(&self, account_name: &str, code: &str) {
        let result = match self.platform(account_name) {
            Ok(platform) => platform.exchange(code).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::error!(account = account_name, error = e.to_string(); "authorization code exchange failed; POST /component/authorizations with the code, or /component/authorizers/sync");
        }
    }

    /// WeChat's release check (全网发布): the relay answers its test accounts itself.
    fn release_check(
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
    async fn release_reply(&self, account_name: &str, authorizer: &str, to: &str, code: &str) {
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

    /// The answer body for a reply in plaintext (`""` = no reply: `success`), sealed when the
    /// callback was encrypted.
    fn render_reply(
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
    async fn ask_for_reply(
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
    fn late_reply(
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
            let path = if account.kind() == Kind::WeCom {
                let agent = event
                    .data
                    .get("agent_id")
                    .cloned()
                    .or_else(|| account.agent_id().map(serde_json::Value::from));
                if let (serde_json::Value::Object(m), Some(agent)) = (&mut message, agent) {
                    m.insert("agentid".into(), agent);
                }
                "cgi-bin/message/send"
            } else {
                "cgi-bin/message/custom/send"
            };
            let sent = match &authorizer {
                Some(app_id) => match self.platform(&account_name) {
                    Ok(platform) => {
                        self.send_message(&platform.authorizer(app_id), path, &message)
                            .await
                    }
                    Err(e) => Err(e.to_string()),
                },
                None => {
                    self.send_message(&self.credentials(account), path, &message)
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

/// All the background work as one.
fn join(background: Vec<Background>) -> Option<Background> {
    match background.len() {
        0 => None,
        _ => Some(Box::pin(async move {
            join_all(background).await;
        })),
    }
}

fn answer(body: String, json: bool, background: Option<Background>) -> Answer {
    let content_type = if body == "success" {
        "text/plain; charset=utf-8"
    } else if json {
        "application/json"
    } else {
        "application/xml"
    };
    Answer {
        body,
        content_type,
        background,
    }
}

mod admin;
mod queue;
#[cfg(test)]
mod tests;

pub use queue::{QueueMessage, MAX_PARALLEL_ATTEMPTS};

/// The queue messages of `jobs`, each after `delay_secs`, in batches Cloudflare takes (at most
/// 100 messages and 256 KB each; one event's jobs fit in one unless it has over 100 targets).
fn batches(jobs: &[Job], delay_secs: u32) -> Vec<Vec<(String, u32)>> {
    let mut out: Vec<Vec<(String, u32)>> = Vec::new();
    let mut size = 0;
    for job in jobs {
        let text = job.to_text();
        let full = out
            .last()
            .is_none_or(|b| b.len() >= 100 || size + text.len() > queue::MAX_BATCH_BYTES);
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += text.len();
        if let Some(batch) = out.last_mut() {
            batch.push((text, delay_secs));
        }
    }
    out
}
