//! Arbitrary decrypted plaintexts through the padding and layout checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|plain: &[u8]| {
    let _ = wechat_relay_core::wire::crypto::open_plaintext(plain);
});
