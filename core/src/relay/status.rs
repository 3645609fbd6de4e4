//! `GET /admin/status`: everything the console's Accounts section shows, gathered from the
//! settings (kind, ids, mode, server URLs, setup check, problems by setting name) and from each
//! account's object (its counts, dead letters and credentials' times), asked all at once.
//! Never a secret, token or ticket: times and names only.

use super::*;
use crate::coordinator::{ask_within, Request, Response, REQUEST_TIMEOUT_MS};
use crate::http::routes;

/// How many accounts' objects one status asks at most (each is a subrequest; the free plan
/// allows 50 a request).
pub const MAX_STATUS_OBJECTS: usize = 40;

impl<C: ClockPort, S: StorePort, K: CoordinatorPort, H: HttpPort, Q: QueuePort, X: CipherPort>
    Relay<C, S, K, H, Q, X>
{
    /// The status of every account; `origin` (`https://host`) makes the server URLs whole.
    pub async fn status(&self, origin: &str) -> serde_json::Value {
        let accounts = self.config.accounts();
        let asked = join_all(
            accounts
                .iter()
                .take(MAX_STATUS_OBJECTS)
                .map(|account| self.health_of(account.name())),
        )
        .await;
        let mut shown = Vec::with_capacity(accounts.len());
        for (i, account) in accounts.iter().enumerate() {
            let health = asked.get(i).cloned().unwrap_or_else(|| {
                Err(format!(
                    "not asked: one status asks at most {MAX_STATUS_OBJECTS} accounts' objects"
                ))
            });
            shown.push(account_status(account, origin, health));
        }
        let problems: Vec<serde_json::Value> = self.config.problems().iter().map(problem).collect();
        json!({
            "now": self.clock.now_ms(),
            "accounts": shown,
            "problems": problems,
        })
    }

    async fn health_of(&self, name: &str) -> Result<serde_json::Value, String> {
        let request = Request::Health {
            account: name.to_owned(),
        };
        match ask_within(
            &self.coordinator,
            &self.clock,
            name,
            &request,
            REQUEST_TIMEOUT_MS,
        )
        .await
        {
            Ok(Response::Health(health)) => {
                serde_json::to_value(health).map_err(|e| format!("unreadable: {e}"))
            }
            Ok(Response::Failed { error }) => Err(format!("the account's object failed: {error}")),
            Ok(_) => Err("the account's object answered something else".into()),
            Err(e) => Err(format!("the account's object did not answer: {e}")),
        }
    }
}

fn problem(e: &crate::settings::ConfigError) -> serde_json::Value {
    json!({ "setting": e.setting, "problem": e.problem })
}

fn account_status(
    account: &Account,
    origin: &str,
    health: Result<serde_json::Value, String>,
) -> serde_json::Value {
    let kind = account.kind();
    let id_field = if kind == crate::account::Kind::WeCom {
        "corp_id"
    } else {
        "app_id"
    };
    let urls: Vec<serde_json::Value> = routes::server_paths(account)
        .into_iter()
        .map(|(label, path)| json!({ "label": label, "url": format!("{origin}{path}") }))
        .collect();
    let mode = match account.message_mode() {
        Ok(m) => m.as_str().into(),
        Err(_) => serde_json::Value::Null,
    };
    let (health, health_error) = match health {
        Ok(h) => (h, serde_json::Value::Null),
        Err(e) => (serde_json::Value::Null, e.into()),
    };
    let mut shown = json!({
        "name": account.name(),
        "kind": kind.as_str(),
        "agent_id": account.agent_id(),
        "message_mode": mode,
        "server_urls": urls,
        "problems": account.problems().iter().map(problem).collect::<Vec<_>>(),
        "setup": account.setup(),
        "health": health,
        "health_error": health_error,
    });
    if let Some(map) = shown.as_object_mut() {
        map.insert(id_field.to_owned(), account.app_id().into());
    }
    shown
}
