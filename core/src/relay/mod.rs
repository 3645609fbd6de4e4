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
//! **Once per retry storm, in every location.** Before anything is handed over, the callback's
//! event id is claimed at its account's object (`claims.rs`, over the [`Coordinator`] port: a
//! Durable Object in the shell). A retry of a callback in flight waits for its outcome; one of
//! a callback answered before gets the same answer and is not delivered again. When the object
//! cannot be asked, the callback is processed anyway (a duplicate is better than a loss).
//!
//! One file per flow: `intake.rs` (a callback to its answer), `claims.rs` (its claim at the
//! account's object), `replies.rs` (passive and late
//! replies), `pushes.rs` (a platform's pushes and the release check), `queue.rs` (delivery after
//! the hand-off and the two queue consumers), `admin.rs` (dead-letter pages and replay),
//! `tokens.rs` (the token routes: whose token, and the answers).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures_util::future::{join_all, select, Either};
use serde_json::json;

use crate::account::{Account, MessageFormat};
use crate::callback::reply::{self, Reply};
use crate::callback::{self, Mode, Query};
use crate::component::{self, Platform, ReleaseCheck};
use crate::config::{Config, ForwardMode};
use crate::coordinator::Coordinator;
use crate::delivery::dead_letters::{self, DeadLetter};
use crate::delivery::jobs::{self, Job, Next, Schedule};
use crate::delivery::{self, Failed, Outcome};
use crate::error::Error;
use crate::event::Event;
use crate::http::routes::Method;
use crate::ports::{Cipher, Clock, Destination, Http, HttpAnswer, Queue, Store};
use crate::token::passthrough::{self, Call, Passed};
use crate::token::{Credentials, Memory, Refreshed, TokenSource};

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

/// What the relay's flows ask of each port: the port itself, cheap to clone (a handle), and
/// living as long as the isolate. One name each, so every flow's `impl` says it in one line.
pub trait ClockPort: Clock + Clone + 'static {}
impl<T: Clock + Clone + 'static> ClockPort for T {}
pub trait StorePort: Store + Clone + 'static {}
impl<T: Store + Clone + 'static> StorePort for T {}
pub trait HttpPort: Http + Clone + 'static {}
impl<T: Http + Clone + 'static> HttpPort for T {}
pub trait QueuePort: Queue + Clone + 'static {}
impl<T: Queue + Clone + 'static> QueuePort for T {}
pub trait CipherPort: Cipher + Clone + 'static {}
impl<T: Cipher + Clone + 'static> CipherPort for T {}
pub trait CoordinatorPort: Coordinator + Clone + 'static {}
impl<T: Coordinator + Clone + 'static> CoordinatorPort for T {}

/// The ports and the request's settings. Cloning is cheap (the ports are handles).
pub struct Relay<C, S, K, H, Q, X> {
    pub clock: C,
    /// Workers KV: credentials and dead letters.
    pub store: S,
    /// The account objects: callback claims and nonces (Durable Objects).
    pub coordinator: K,
    pub http: H,
    /// The delivery queue, when bound.
    pub queue: Option<Q>,
    pub cipher: X,
    pub memory: Rc<Memory>,
    pub config: Rc<Config>,
}

impl<C: Clone, S: Clone, K: Clone, H: Clone, Q: Clone, X: Clone> Clone for Relay<C, S, K, H, Q, X> {
    fn clone(&self) -> Self {
        Relay {
            clock: self.clock.clone(),
            store: self.store.clone(),
            coordinator: self.coordinator.clone(),
            http: self.http.clone(),
            queue: self.queue.clone(),
            cipher: self.cipher.clone(),
            memory: self.memory.clone(),
            config: self.config.clone(),
        }
    }
}

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
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
mod claims;
mod intake;
mod object;
mod pushes;
mod queue;
mod replies;
mod status;
#[cfg(test)]
mod tests;
mod tokens;

pub use admin::{Query as DeadLetterQuery, MAX_OBJECTS_A_PAGE};
pub use object::ObjectPorts;
pub use queue::{QueueMessage, MAX_PARALLEL_ATTEMPTS};
pub use status::MAX_STATUS_OBJECTS;
pub use tokens::Source;

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
