//! WeChat's callback signatures: `hex(sha1(concat(sort(parts))))`.
//!
//! `signature` covers `[token, timestamp, nonce]`; `msg_signature` adds the `Encrypt` value.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Lowercase hex SHA-1 over the lexicographically sorted parts, concatenated without separator.
pub fn sha1_sorted(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Lowercase hex SHA-1 of `bytes` (RustCrypto's `sha1`: the CPU's SHA extensions natively when
/// it has them, which matters for `msg_signature` over a 16 KB message's base64).
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(
                DIGITS
                    .get(usize::from(nibble))
                    .map_or('0', |&d| char::from(d)),
            );
        }
    }
    out
}

/// Constant-time check of a hex signature received from WeChat against the one we compute.
/// Upper-case hex is accepted; any other difference (length included) is a mismatch.
pub fn verify(received: &str, parts: &[&str]) -> bool {
    let expected = sha1_sorted(parts);
    let received = received.to_ascii_lowercase();
    constant_time_eq(received.as_bytes(), expected.as_bytes())
}

/// Constant-time equality of two byte strings. Lengths are not secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_before_hashing() {
        assert_eq!(sha1_sorted(&["b", "a"]), sha1_sorted(&["a", "b"]));
        // sha1("ab")
        assert_eq!(
            sha1_sorted(&["b", "a"]),
            "da23614e02469a0d7c7bd1bdab5c9c474b1904dc"
        );
    }

    #[test]
    fn verify_rejects_prefix_and_wrong_length() {
        let good = sha1_sorted(&["t", "1", "n"]);
        assert!(verify(&good, &["t", "1", "n"]));
        assert!(verify(&good.to_ascii_uppercase(), &["t", "1", "n"]));
        assert!(!verify(&good[..39], &["t", "1", "n"]));
        assert!(!verify("", &["t", "1", "n"]));
        assert!(!verify(&good, &["t", "1", "m"]));
    }
}
