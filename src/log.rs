//! Structured log lines: one JSON object per line, never a secret in it.

use serde_json::{Map, Value};

fn emit(level: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut line = Map::new();
    line.insert("level".into(), Value::from(level));
    line.insert("msg".into(), Value::from(msg));
    for (k, v) in fields {
        line.insert((*k).into(), Value::from(*v));
    }
    let text = Value::Object(line).to_string();
    match level {
        "error" => worker::console_error!("{text}"),
        "warn" => worker::console_warn!("{text}"),
        _ => worker::console_log!("{text}"),
    }
}

pub fn info(msg: &str, fields: &[(&str, &str)]) {
    emit("info", msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    emit("warn", msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &str)]) {
    emit("error", msg, fields);
}

/// A URL fit for logs: scheme, host, port and path; user info, query and fragment dropped, since
/// webhook URLs often carry tokens there.
pub fn redact_url(url: &str) -> String {
    match worker::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<unparseable url>".to_owned(),
    }
}
