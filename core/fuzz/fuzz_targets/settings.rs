//! Arbitrary values for the settings that shape accounts, modes and the delivery schedule: a
//! configuration error or settings, never a panic; what loads answers every question.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::config::Config;

const NAMES: [&str; 8] = [
    "WECHAT_ACCOUNTS",
    "WECHAT_MESSAGE_MODE",
    "WECHAT_ENCODING_AES_KEY",
    "QUEUE_RETENTION",
    "FORWARD_RETRY_DELAYS",
    "FORWARD_MAX_ATTEMPTS",
    "MAX_CLOCK_SKEW_SECONDS",
    "FORWARD_URLS",
];

fuzz_target!(|input: &str| {
    // One value per setting, separated by NUL; the accounts' secrets take the last value.
    let values: Vec<&str> = input.split('\0').collect();
    let value = |i: usize| values.get(i).map(|v| v.to_string());
    let config = Config::load(|k| match NAMES.iter().position(|n| *n == k) {
        Some(i) => value(i),
        None if k.starts_with("WECHAT_") => values.last().map(|v| v.to_string()),
        None => None,
    });
    let _ = config.problems();
    let _ = config.schedule().map(|s| s.span_secs());
    let _ = config.max_clock_skew();
    for account in config.accounts() {
        let _ = account.message_mode();
        let _ = account.require_aes_key();
    }
});
