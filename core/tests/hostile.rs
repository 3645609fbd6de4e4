//! Mutated and random inputs through the pipeline: every outcome is an `Err` or an `Ok`, never
//! a panic (a panic kills the wasm isolate). Deterministic, so it runs in every CI pass; the
//! coverage-guided version is `core/fuzz` (cargo +nightly fuzz run callback).

mod common;

use wechat_relay_core::callback::{open_callback, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::wire::crypto::{self, AesKey};
use wechat_relay_core::wire::signature::sha1_sorted;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(rng.below(out.len() + 1)),
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                let specials = b"<>/![]&;\"' \x00\xff";
                let b = specials[rng.below(specials.len())];
                out.insert(i, b);
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                let j = (i + rng.below(64)).min(out.len());
                let piece = out[i..j].to_vec();
                out.splice(i..i, piece);
            }
            _ => out.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
    out
}

#[test]
fn mutated_samples_never_panic() {
    let config = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some("t".into()),
        _ => None,
    });
    let query = Query::from_pairs([
        ("signature", sha1_sorted(&["t", "100", "n"])),
        ("timestamp", "100".to_owned()),
        ("nonce", "n".to_owned()),
    ]);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let samples = common::samples();
    let mut accepted = 0;
    for round in 0..20_000 {
        let (_, xml, _) = &samples[round % samples.len()];
        let body = mutate(&mut rng, xml);
        if open_callback(&config, "default", &query, &body, 100_000).is_ok() {
            accepted += 1;
        }
    }
    // Some mutations keep the document valid; most do not. Both paths ran.
    assert!(accepted > 100 && accepted < 20_000, "accepted {accepted}");
}

#[test]
fn random_ciphertexts_never_panic() {
    let key = AesKey::from_bytes([3; 32]);
    let mut rng = XorShift(42);
    let good = crypto::encrypt(&key, [0; 16], b"<xml/>", "wxid");
    for _ in 0..5_000 {
        let bytes = mutate(&mut rng, good.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        // CBC without a MAC is malleable: some bit flips still open (to altered bytes). That
        // is why msg_signature, which covers the ciphertext, is checked before decrypting.
        let _ = crypto::decrypt(&key, &text, "wxid");
    }
    for len in 0..200 {
        let plain: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = crypto::open_plaintext(&plain);
    }
}
