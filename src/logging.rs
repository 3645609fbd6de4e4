//! The `log` backend: one JSON object per line (`{"level", "msg", ...fields}`) on the console,
//! which `wrangler tail` and Workers Logs show. The core decides what to log and never logs a
//! secret; this only writes the lines.

use serde_json::{Map, Value};

struct JsonLines;

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0
            .insert(key.as_str().to_owned(), Value::from(value.to_string()));
        Ok(())
    }
}

impl log::Log for JsonLines {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Map::new();
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            _ => "info",
        };
        line.insert("level".into(), Value::from(level));
        line.insert("msg".into(), Value::from(record.args().to_string()));
        let _ = record.key_values().visit(&mut Fields(&mut line));
        let text = Value::Object(line).to_string();
        match record.level() {
            log::Level::Error => worker::console_error!("{text}"),
            log::Level::Warn => worker::console_warn!("{text}"),
            _ => worker::console_log!("{text}"),
        }
    }

    fn flush(&self) {}
}

static LOGGER: JsonLines = JsonLines;

/// Installs the backend (once per isolate; later calls do nothing).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
