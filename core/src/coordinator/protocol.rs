//! What the Worker and an account's object say to each other, and the rules both sides keep:
//! the requests and answers (serde's externally tagged JSON), the claim's bounds, and the one
//! way to ask an object within a deadline.

use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};

use super::health::{Hour, Noted};
use crate::ports::Clock;

/// The deployment's own object, for records of no account (queue messages that are not jobs).
/// `~` is in no account name.
pub const RELAY_OBJECT: &str = "~relay";

/// What an object answers (as `Failed`) to a request it cannot read: one of a newer Worker
/// during a deploy, which then asks the way older objects understand.
pub const NOT_UNDERSTOOD: &str = "not a request of the relay's";

/// How long a done mark lives: well past WeChat's three retries (about 5 s apart).
pub const MARK_TTL_SECS: u64 = 300;
/// How long an unsettled claim holds: past the longest first attempt (the reply receiver's
/// 4.5 s at most, plus the hand-off), short enough that WeChat's second retry (about 10 s after
/// the first attempt) is processed when the first attempt died.
pub const IN_FLIGHT_BOUND_MS: u64 = 9_000;
/// How long the Worker waits for one answer of the object before it goes on without it.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// How long a retry waits, from its arrival, for the first attempt to settle (inside WeChat's
/// 5 s).
pub const WAIT_LIMIT_MS: u64 = 4_000;
/// The pause between two questions of a waiting retry.
pub const WAIT_STEP_MS: u64 = 250;
/// How long an outcome reported after the answer waits for the isolate's next claim to the same
/// object to carry it, before it is sent alone (well before WeChat's first retry, 5 s in).
pub const REPORT_AFTER_MS: u64 = 1_000;

/// A plaintext callback's (timestamp, nonce) and its body's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonce {
    pub timestamp: String,
    pub nonce: String,
    /// SHA-1 of the body, hex.
    pub body_sha1: String,
    /// Unix seconds after which WeChat's signature check refuses the timestamp anyway.
    pub expires_at: u64,
}

/// What the Worker asks an account's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Claims `event_id` for the attempt `attempt` (random, the Worker's).
    /// `settled` carries this isolate's outcomes not yet reported to this object (so that on a
    /// busy account most callbacks cost one request).
    Claim {
        event_id: String,
        attempt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Nonce>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        settled: Vec<Settlement>,
    },
    /// Outcomes no claim carried within [`REPORT_AFTER_MS`], reported alone.
    Report { settled: Vec<Settlement> },
    /// The attempt's outcome: the reply WeChat was answered with (`Some`, "" for `success`),
    /// or `None` to release the claim (nothing was handed over; WeChat's retry is processed).
    /// The claim's nonce again, so it is stored even if the object was evicted in between.
    Settle {
        event_id: String,
        attempt: String,
        reply: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<Nonce>,
    },
    /// The account's access token or JS-SDK ticket, with more than 5 minutes left.
    Credential { account: String, wanted: Wanted },
    /// A forced refresh of the account's access token; `refused` is the token WeChat refused.
    Refresh {
        account: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// The cron's renewal of what expires within 15 minutes.
    RefreshAhead { account: String },
    /// One operation on the object's records (a third-party platform's state: its verify
    /// ticket, component token and merchants; an account's dead letters), for `SharedStore`.
    Store { record: StoreOp },
    /// What the object knows of `account`, for the console.
    Health { account: String },
}

/// A [`crate::ports::Store`] operation, carried to the object that owns the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOp {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
        ttl_secs: Option<u64>,
    },
    PutIf {
        key: String,
        value: String,
        expected: Option<String>,
        ttl_secs: Option<u64>,
    },
    Delete {
        key: String,
    },
    Take {
        key: String,
    },
    List {
        prefix: String,
    },
    ListPage {
        prefix: String,
        cursor: Option<String>,
        limit: usize,
    },
    /// A page with its values, in one request (a listing of dead letters).
    ReadPage {
        prefix: String,
        cursor: Option<String>,
        limit: usize,
    },
}

/// An attempt's outcome reported after the answer: the reply WeChat got ("" for `success`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub event_id: String,
    pub attempt: String,
    pub reply: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
}

/// Which credential a [`Request::Credential`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wanted {
    AccessToken,
    JsapiTicket,
}

impl Request {
    /// Whether the object answers this with its claim rules (synchronously, no I/O).
    pub fn is_claim(&self) -> bool {
        matches!(
            self,
            Request::Claim { .. } | Request::Settle { .. } | Request::Report { .. }
        )
    }
}

/// A claim's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claimed {
    New,
    InFlight,
    Done { reply: String },
    Replayed,
}

/// When a stored credential was fetched and expires (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialTimes {
    pub expires_at: u64,
    pub fetched_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_at: Option<u64>,
}

/// An account's credentials as the console shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsState {
    pub access_token: Option<CredentialTimes>,
    pub jsapi_ticket: Option<CredentialTimes>,
    pub forced_refreshes_today: u32,
    pub forced_refresh_budget: u32,
}

/// What an account's object knows of its account, for the console: its counts, its dead
/// letters, its credentials' times and, for a third-party platform, its verify ticket's age and
/// merchant count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    /// Unix ms.
    pub last_callback_at: Option<u64>,
    /// The last `HOURS_KEPT` hours, oldest first.
    pub hours: Vec<Hour>,
    pub last_error: Option<Noted>,
    pub dead_letters: usize,
    pub credentials: CredentialsState,
    /// When the verify ticket was received (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_ticket_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchants: Option<usize>,
}

/// What an account's object answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Claimed(Claimed),
    /// Whether the outcome was taken (a settle from an attempt whose claim was taken over
    /// after [`IN_FLIGHT_BOUND_MS`] is not).
    Settled {
        taken: bool,
    },
    /// A credential (token or ticket): its value and expiry (Unix seconds); `refreshed` for a
    /// forced refresh that happened.
    Credential {
        value: String,
        expires_at: u64,
        #[serde(default)]
        refreshed: bool,
    },
    /// The flow failed with an error for the caller (WeChat refused, a setting is missing, the
    /// budget is spent): its rendered JSON answer, passed on as it is.
    Refused {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<String>,
        body: String,
    },
    /// A record's value (`Get`, `Take`).
    Value {
        value: Option<String>,
    },
    /// Whether a `PutIf` wrote.
    Swapped {
        written: bool,
    },
    /// Keys of a listing, and the next page's cursor.
    Keys {
        keys: Vec<String>,
        cursor: Option<String>,
    },
    /// (key, its value or why it was not read) of a listing, and the next page's cursor.
    Entries {
        entries: Vec<(String, Result<String, String>)>,
        cursor: Option<String>,
    },
    /// Done (a write).
    Done,
    /// What the object knows of its account.
    Health(Box<AccountHealth>),
    /// The object could not do what it was asked (its storage failed); the Worker goes on
    /// without coordination.
    Failed {
        error: String,
    },
}

impl Response {
    /// Whether this answers a claim as new: a callback, for the account's counts.
    pub fn is_new_claim(&self) -> bool {
        *self == Response::Claimed(Claimed::New)
    }
}

/// Why the Worker got no answer from the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinationError(pub String);

impl std::fmt::Display for CoordinationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Worker's side: one request to the object of `account`, one response. The shell sends
/// it through the Durable Object namespace; `testing` runs `AccountObject` in process.
pub trait Coordinator {
    async fn ask(&self, account: &str, request: &Request) -> Result<Response, CoordinationError>;
}

/// One question to the object `object` within `timeout_ms`: its answer, or why there is none
/// (unreachable, too slow, or it answered that it failed).
pub async fn ask_within<C: Clock, K: Coordinator>(
    coordinator: &K,
    clock: &C,
    object: &str,
    request: &Request,
    timeout_ms: u64,
) -> Result<Response, String> {
    let ask = coordinator.ask(object, request);
    let deadline = clock.sleep(timeout_ms);
    futures_util::pin_mut!(ask, deadline);
    match select(ask, deadline).await {
        Either::Left((Ok(Response::Failed { error }), _)) => Err(error),
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(e), _)) => Err(e.0),
        Either::Right(_) => Err(format!("no answer within {timeout_ms} ms")),
    }
}

/// The request's JSON (what the stub's `fetch` carries).
pub fn encode(request: &Request) -> String {
    serde_json::to_string(request).unwrap_or_default()
}

/// A request's JSON, from the Worker; `None` for anything else.
pub fn decode_request(body: &[u8]) -> Option<Request> {
    serde_json::from_slice(body).ok()
}

/// The response's JSON.
pub fn encode_response(response: &Response) -> String {
    serde_json::to_string(response).unwrap_or_default()
}

/// A response's JSON, from the object.
pub fn decode_response(body: &[u8]) -> Result<Response, CoordinationError> {
    serde_json::from_slice(body).map_err(|e| {
        CoordinationError(format!(
            "the account object's answer is not understood: {e}"
        ))
    })
}
