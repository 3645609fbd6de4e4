//! Logs.

use super::*;

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

struct Line<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for Line<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut line = format!("{} {}", record.level(), record.args());
        let _ = record.key_values().visit(&mut Line(&mut line));
        LOGS.with(|l| l.borrow_mut().push(line));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// The log lines this thread wrote since the last call (`LEVEL message key=value ...`). The
/// first call installs the capturing logger.
pub fn take_logs() -> Vec<String> {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
