//! Arbitrary FORWARD_ROUTES documents: a configuration error or routes, never a panic; parsed
//! routes route any event without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::config::Config;

fuzz_target!(|doc: &str| {
    let config = Config::load_with(
        &|k| match k {
            "FORWARD_ROUTES" => Some(doc.to_owned()),
            "FORWARD_URLS" => Some("https://all.example/".to_owned()),
            _ => None,
        },
        &|name| name.len() % 2 == 0,
    );
    let _ = config.problems();
});
