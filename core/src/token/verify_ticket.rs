//! What a third-party platform keeps below the token service: the verify ticket WeChat pushes
//! (and the request to restart its push), and the shape of an exchanged authorization. The
//! token service (`token_service`) reads the ticket; the platform's flows (`component`) build on
//! both.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::account::Account;
use crate::error::api_error::errcode_of;
use crate::ports::{Clock, Http, HttpRequest, Store};
use crate::token::upstream;

/// How long a verify ticket is kept (WeChat says it is valid 12 hours).
pub const TICKET_TTL_SECS: u64 = 24 * 3600;
/// The ticket push is asked to restart at most this often.
pub const PUSH_REQUEST_INTERVAL_SECS: u64 = 3600;
pub fn ticket_key(platform: &str) -> String {
    format!("component:{platform}:ticket")
}

fn push_key(platform: &str) -> String {
    format!("component:{platform}:push_requested")
}

/// The newest verify ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket: String,
    /// The push's CreateTime.
    pub create_time: i64,
    /// Unix seconds.
    pub received_at: u64,
}

pub async fn load_ticket<S: Store>(store: &S, platform: &str) -> Option<Ticket> {
    match store.get(&ticket_key(platform)).await {
        Ok(found) => found.and_then(|t| serde_json::from_str(&t).ok()),
        Err(e) => {
            log::warn!(account = platform, error = e.to_string(); "verify ticket unreadable");
            None
        }
    }
}

/// Stores a pushed ticket unless a newer one is stored already. Returns whether it was stored.
pub async fn store_ticket<C: Clock, S: Store>(
    clock: &C,
    store: &S,
    platform: &str,
    ticket: &str,
    create_time: i64,
) -> bool {
    if let Some(stored) = load_ticket(store, platform).await {
        if stored.create_time > create_time {
            log::info!(account = platform; "older verify ticket ignored");
            return false;
        }
    }
    let record = Ticket {
        ticket: ticket.to_owned(),
        create_time,
        received_at: clock.now_secs(),
    };
    let text = serde_json::to_string(&record).unwrap_or_default();
    match store
        .put(&ticket_key(platform), &text, Some(TICKET_TTL_SECS))
        .await
    {
        Ok(()) => true,
        Err(e) => {
            log::error!(account = platform, error = e.to_string(); "verify ticket not stored");
            false
        }
    }
}

/// Asks WeChat to restart the ticket push (`api_start_push_ticket`), at most once an hour.
pub async fn request_ticket_push<C: Clock, S: Store, H: Http>(
    clock: &C,
    store: &S,
    http: &H,
    account: &Account,
) {
    let key = push_key(account.name());
    if let Ok(Some(_)) = store.get(&key).await {
        return;
    }
    let (Ok(base), Ok(app_id), Ok(secret)) = (
        account.api_base(),
        account.require_app_id(),
        account.app_secret(),
    ) else {
        return;
    };
    let _ = store
        .put(
            &key,
            &clock.now_secs().to_string(),
            Some(PUSH_REQUEST_INTERVAL_SECS),
        )
        .await;
    let request = HttpRequest::post_json(
        format!("{base}/cgi-bin/component/api_start_push_ticket"),
        &json!({ "component_appid": app_id, "component_secret": secret }),
    );
    match upstream::call(clock, http, &request).await {
        Ok(body) => match errcode_of(&body) {
            None => {
                log::warn!(account = account.name(); "no verify ticket yet; asked WeChat to restart the ticket push")
            }
            Some(e) => {
                log::error!(account = account.name(), error = e.to_string(); "api_start_push_ticket refused")
            }
        },
        Err(e) => {
            log::error!(account = account.name(), error = e.to_string(); "api_start_push_ticket failed")
        }
    }
}

/// What an exchanged authorization code gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorization {
    pub authorizer_app_id: String,
    pub func_info: Value,
    /// When the authorizer's access token expires (Unix seconds).
    pub expires_at: u64,
}
