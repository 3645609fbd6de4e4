//! Arbitrary bodies through the whole plaintext and safe-mode pipeline: any outcome but a panic,
//! and every event that comes out is valid JSON with an object for `data` (it is written
//! straight from the element tree, not through serde_json's `Value`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::callback::{open_callback, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::wire::signature::sha1_sorted;

fuzz_target!(|body: &[u8]| {
    let config = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some("fuzz".into()),
        "WECHAT_ENCODING_AES_KEY" => Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into()),
        "WECHAT_APP_ID" => Some("wxfuzz".into()),
        // Both modes reach the parsers.
        "WECHAT_MESSAGE_MODE" => Some("compatible".into()),
        _ => None,
    });
    // Plaintext mode with a valid signature, so the body reaches the parser.
    let plain = Query::from_pairs([
        ("signature", sha1_sorted(&["fuzz", "100", "n"])),
        ("timestamp", "100".to_owned()),
        ("nonce", "n".to_owned()),
    ]);
    if let Ok(inbound) = open_callback(&config, "default", &plain, body, 100_000) {
        let json: serde_json::Value = serde_json::from_slice(&inbound.event.to_json())
            .unwrap_or_else(|e| panic!("the event is not JSON: {e}"));
        assert!(json["data"].is_object(), "data is not an object");
        assert_eq!(json["id"], inbound.event.id.as_str());
    }
    // Safe mode: the body's Encrypt (if any) is signed, so decryption runs on it too.
    if let Ok(root) = wechat_relay_core::wire::xml::parse(body) {
        if let Some(enc) = root.child_text("Encrypt") {
            let safe = Query::from_pairs([
                ("msg_signature", sha1_sorted(&["fuzz", "100", "n", enc])),
                ("timestamp", "100".to_owned()),
                ("nonce", "n".to_owned()),
                ("encrypt_type", "aes".to_owned()),
            ]);
            let _ = open_callback(&config, "default", &safe, body, 100_000);
        }
    }
});
