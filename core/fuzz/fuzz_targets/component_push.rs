//! Arbitrary decrypted platform pushes: an event or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::event;
use wechat_relay_core::wire::xml;

fuzz_target!(|body: &[u8]| {
    if let Ok(root) = xml::parse(body) {
        let ctx = event::Context {
            account: "platform",
            app_id: None,
            merchant: None,
            message: body,
            received_at_ms: 0,
        };
        if let Ok(e) = event::normalize_component(&root, &ctx) {
            let _ = e.to_json();
        }
        // The same message as a merchant's message or event.
        let merchant = event::Context { merchant: Some("wxmerchant"), ..ctx };
        if let Ok(e) = event::normalize(&root, &merchant) {
            assert!(e.id.starts_with("evt_") && e.id.len() == 36);
        }
    }
    let _ = wechat_relay_core::component::auth_code_of(body);
});
