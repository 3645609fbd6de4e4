//! Arbitrary decrypted platform pushes: an event or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::{event, xml};

fuzz_target!(|body: &[u8]| {
    if let Ok(root) = xml::parse(body) {
        let ctx = event::Context { account: "platform", app_id: None, received_at_ms: 0 };
        if let Ok(e) = event::normalize_component(&root, &ctx) {
            let _ = e.to_json();
        }
    }
    let _ = wechat_relay_core::component::auth_code_of(body);
});
