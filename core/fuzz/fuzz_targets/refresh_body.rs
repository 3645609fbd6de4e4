//! Arbitrary `POST /token/refresh` bodies: a refused token, none, or a 400, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::token::refused_token;

fuzz_target!(|body: &[u8]| {
    match refused_token(body) {
        Ok(Some(token)) => assert!(!token.trim().is_empty()),
        Ok(None) => {}
        Err(e) => assert_eq!(e.status(), 400),
    }
});
