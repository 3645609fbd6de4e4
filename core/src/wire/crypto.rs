//! WeChat's message encryption ("safe mode"), identical for Official Accounts, Mini Programs,
//! third-party platforms and WeCom.
//!
//! - `AESKey = base64_decode(EncodingAESKey + "=")`, 32 bytes; the IV is its first 16 bytes.
//! - Plaintext layout: `random(16) ‖ len(4, big-endian) ‖ message ‖ receive_id`.
//! - Padding: PKCS#7 over **32-byte** blocks (pad byte 1..=32), checked strictly.
//! - Cipher: AES-256-CBC without the cipher's own padding; the result is base64.
//!
//! Every way a ciphertext can be wrong yields a [`DecryptError`]; callers must answer all of
//! them identically (the variants exist for logs and tests only).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

use crate::wire::signature::constant_time_eq;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Below this many bytes of ciphertext the core's software AES decrypts a callback, at and above
/// it the platform's cipher (the `Cipher` port, WebCrypto in the Worker): a call out to
/// WebCrypto costs more than the few blocks of a short message (README.md#performance-and-size).
pub const PORT_CIPHER_FROM_BYTES: usize = 1024;

/// WeChat pads to multiples of 32 bytes, not AES's 16.
pub const PAD_BLOCK: usize = 32;
const RANDOM_LEN: usize = 16;
const LEN_FIELD: usize = 4;

/// Genuine EncodingAESKeys have non-zero trailing bits, so the decoder must allow them.
const LENIENT_KEY_DECODER: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The 32-byte AES key derived from a 43-character EncodingAESKey.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

/// Why an EncodingAESKey was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not exactly 43 characters.
    Length(usize),
    /// A character outside `[A-Za-z0-9+/]`.
    Alphabet,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Length(n) => write!(f, "must be exactly 43 characters, got {n}"),
            KeyError::Alphabet => f.write_str("must contain only base64 characters [A-Za-z0-9+/]"),
        }
    }
}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(..)")
    }
}

impl AesKey {
    /// Parses the EncodingAESKey shown in the WeChat console (43 characters, base64 without `=`).
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<Self, KeyError> {
        let trimmed = encoding_aes_key.trim();
        let len = trimmed.chars().count();
        if len != 43 {
            return Err(KeyError::Length(len));
        }
        let bytes = LENIENT_KEY_DECODER
            .decode(trimmed)
            .map_err(|_| KeyError::Alphabet)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Alphabet)?;
        Ok(AesKey(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        AesKey(key)
    }

    /// The raw key, for handing to another AES implementation (WebCrypto).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }
}

/// Why a ciphertext could not be opened. Answer them all the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptError {
    Base64,
    Length,
    Padding,
    Layout,
    ReceiveId,
}

/// A decrypted message and the receive id (AppID, CorpID or suite id) that trailed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub message: Vec<u8>,
    pub receive_id: String,
}

/// Encrypts `message` for `receive_id` with the given 16 random bytes; returns base64.
pub fn encrypt(key: &AesKey, random: [u8; 16], message: &[u8], receive_id: &str) -> String {
    let unpadded = RANDOM_LEN + LEN_FIELD + message.len() + receive_id.len();
    let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
    let mut buf = Vec::with_capacity(unpadded + pad);
    buf.extend_from_slice(&random);
    // A message over 4 GiB cannot be expressed in WeChat's format; callers never get near it.
    buf.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    buf.extend_from_slice(message);
    buf.extend_from_slice(receive_id.as_bytes());
    // pad is in 1..=32, so the cast is lossless.
    buf.resize(unpadded + pad, pad as u8);
    let len = buf.len();
    let cipher = Aes256CbcEnc::new(&key.0.into(), &key.iv().into());
    // The buffer is a whole number of blocks, so NoPadding cannot fail.
    let ciphertext = cipher
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    STANDARD.encode(ciphertext)
}

/// Decrypts a base64 `Encrypt` value and checks the trailing receive id in constant time.
pub fn decrypt(
    key: &AesKey,
    encrypted: &str,
    expected_receive_id: &str,
) -> Result<Opened, DecryptError> {
    let mut buf = decode_ciphertext(encrypted)?;
    cbc_decrypt(key, &mut buf)?;
    open_plaintext_for(&buf, expected_receive_id)
}

/// Base64-decodes an `Encrypt` value and checks that it is whole 32-byte blocks.
pub fn decode_ciphertext(encrypted: &str) -> Result<Vec<u8>, DecryptError> {
    let buf = STANDARD
        .decode(encrypted.trim())
        .map_err(|_| DecryptError::Base64)?;
    if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
        return Err(DecryptError::Length);
    }
    Ok(buf)
}

/// AES-256-CBC decryption in place, removing no padding (software AES).
pub fn cbc_decrypt(key: &AesKey, blocks: &mut [u8]) -> Result<(), DecryptError> {
    Aes256CbcDec::new(&key.0.into(), &key.iv().into())
        .decrypt_padded_mut::<NoPadding>(blocks)
        .map(|_| ())
        .map_err(|_| DecryptError::Length)
}

/// For ciphers that insist on PKCS#7 over 16-byte blocks (WebCrypto's AES-CBC): the one
/// ciphertext block to append to `ciphertext` so that its decryption ends in a full 16-byte pad
/// block, which such a cipher strips, leaving exactly the raw plaintext. Computed as
/// `AES(key, [16; 16] XOR last ciphertext block)`.
pub fn pkcs7_16_tail_block(key: &AesKey, ciphertext: &[u8]) -> Result<[u8; 16], DecryptError> {
    let last = ciphertext
        .len()
        .checked_sub(16)
        .and_then(|start| ciphertext.get(start..))
        .ok_or(DecryptError::Length)?;
    let mut block = [16u8; 16];
    for (b, c) in block.iter_mut().zip(last) {
        *b ^= c;
    }
    let cipher = aes::Aes256::new(&key.0.into());
    let mut ga = aes::cipher::generic_array::GenericArray::from(block);
    aes::cipher::BlockEncrypt::encrypt_block(&cipher, &mut ga);
    Ok(ga.into())
}

/// [`open_plaintext`], then the constant-time check that the trailing receive id is `expected`.
pub fn open_plaintext_for(plain: &[u8], expected: &str) -> Result<Opened, DecryptError> {
    let opened = open_plaintext(plain)?;
    if !constant_time_eq(opened.receive_id.as_bytes(), expected.as_bytes()) {
        return Err(DecryptError::ReceiveId);
    }
    Ok(opened)
}

/// Strips WeChat's PKCS#7/32 padding and splits the plaintext layout. Exposed so a shell that
/// decrypts with another AES implementation (WebCrypto) can share the checks.
pub fn open_plaintext(plain: &[u8]) -> Result<Opened, DecryptError> {
    let unpadded = strip_padding(plain)?;
    let len_bytes: [u8; 4] = unpadded
        .get(RANDOM_LEN..RANDOM_LEN + LEN_FIELD)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecryptError::Layout)?;
    let msg_len =
        usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| DecryptError::Layout)?;
    let msg_start = RANDOM_LEN + LEN_FIELD;
    let msg_end = msg_start.checked_add(msg_len).ok_or(DecryptError::Layout)?;
    let message = unpadded
        .get(msg_start..msg_end)
        .ok_or(DecryptError::Layout)?;
    let receive_id = unpadded.get(msg_end..).ok_or(DecryptError::Layout)?;
    let receive_id = std::str::from_utf8(receive_id).map_err(|_| DecryptError::Layout)?;
    Ok(Opened {
        message: message.to_vec(),
        receive_id: receive_id.to_owned(),
    })
}

fn strip_padding(plain: &[u8]) -> Result<&[u8], DecryptError> {
    let &pad = plain.last().ok_or(DecryptError::Padding)?;
    let pad = usize::from(pad);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(DecryptError::Padding);
    }
    let cut = plain.len() - pad;
    let (body, padding) = plain.split_at(cut);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(DecryptError::Padding);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AesKey {
        AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap()
    }

    #[test]
    fn key_must_be_43_base64_chars() {
        assert_eq!(
            AesKey::from_encoding_aes_key("abc").unwrap_err(),
            KeyError::Length(3)
        );
        assert_eq!(
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!")
                .unwrap_err(),
            KeyError::Alphabet
        );
        // Trailing bits set (the last 'G' carries bits beyond the 32nd byte): still accepted.
        assert!(
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").is_ok()
        );
    }

    #[test]
    fn round_trip_every_padding_length() {
        for len in 0..70 {
            let msg = vec![b'x'; len];
            let enc = encrypt(&key(), [7; 16], &msg, "wxid");
            let opened = decrypt(&key(), &enc, "wxid").unwrap();
            assert_eq!(opened.message, msg);
        }
    }

    #[test]
    fn padding_is_checked_strictly() {
        let mut plain = vec![0u8; 64];
        plain[63] = 33;
        assert_eq!(strip_padding(&plain), Err(DecryptError::Padding));
        plain[63] = 0;
        assert_eq!(strip_padding(&plain), Err(DecryptError::Padding));
        plain[63] = 2;
        plain[62] = 3;
        assert_eq!(strip_padding(&plain), Err(DecryptError::Padding));
        plain[62] = 2;
        assert_eq!(strip_padding(&plain).unwrap().len(), 62);
    }

    #[test]
    fn layout_length_beyond_body_is_rejected() {
        let mut plain = vec![0u8; 32];
        plain[16..20].copy_from_slice(&1000u32.to_be_bytes());
        plain[31] = 1;
        assert_eq!(open_plaintext(&plain), Err(DecryptError::Layout));
    }

    #[test]
    fn wrong_receive_id_is_rejected() {
        let enc = encrypt(&key(), [1; 16], b"hi", "wx_a");
        assert_eq!(decrypt(&key(), &enc, "wx_b"), Err(DecryptError::ReceiveId));
    }

    /// What WebCrypto does: CBC decryption that removes PKCS#7/16 padding. With the tail block
    /// appended it must return exactly the raw (WeChat-padded) plaintext.
    #[test]
    fn tail_block_makes_pkcs7_16_ciphers_return_the_raw_plaintext() {
        use aes::cipher::block_padding::Pkcs7;
        for len in [0usize, 1, 11, 12, 13, 40, 100] {
            let msg = vec![b'm'; len];
            let mut raw = decode_ciphertext(&encrypt(&key(), [5; 16], &msg, "wxid")).unwrap();
            let tail = pkcs7_16_tail_block(&key(), &raw).unwrap();
            let mut extended = raw.clone();
            extended.extend_from_slice(&tail);
            let stripped = Aes256CbcDec::new(&key().0.into(), &key().iv().into())
                .decrypt_padded_mut::<Pkcs7>(&mut extended)
                .unwrap()
                .to_vec();
            cbc_decrypt(&key(), &mut raw).unwrap();
            assert_eq!(stripped, raw, "len {len}");
            assert_eq!(open_plaintext(&stripped).unwrap().message, msg);
        }
        assert_eq!(
            pkcs7_16_tail_block(&key(), &[0; 8]),
            Err(DecryptError::Length)
        );
    }

    #[test]
    fn bad_base64_and_length() {
        assert_eq!(decrypt(&key(), "***", "x"), Err(DecryptError::Base64));
        assert_eq!(decrypt(&key(), "AAAA", "x"), Err(DecryptError::Length));
        assert_eq!(decrypt(&key(), "", "x"), Err(DecryptError::Length));
    }
}
