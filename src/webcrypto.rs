//! AES-256-CBC decryption with the runtime's WebCrypto, several times faster in workerd than
//! software AES compiled to wasm on large bodies.
//!
//! WebCrypto insists on PKCS#7 padding over 16-byte blocks, while WeChat pads to 32 bytes with
//! pad bytes up to 32. So one extra ciphertext block is appended that decrypts to a full 16-byte
//! pad block ([`crypto::pkcs7_16_tail_block`]); WebCrypto strips it and returns the raw
//! plaintext, whose WeChat padding the core then checks itself. Any WebCrypto failure falls back
//! to the core's software AES, so the answer never depends on which one ran.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wechat_relay_core::wire::crypto;
use wechat_relay_core::Cipher;

async fn call_subtle(method: &str, args: &Array) -> Result<JsValue, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let subtle = Reflect::get(&crypto, &"subtle".into())?;
    let function: js_sys::Function = Reflect::get(&subtle, &method.into())?.dyn_into()?;
    let promise: js_sys::Promise = function.apply(&subtle, args)?.dyn_into()?;
    JsFuture::from(promise).await
}

fn aes_cbc(iv: Option<&[u8]>) -> Result<Object, JsValue> {
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"AES-CBC".into())?;
    if let Some(iv) = iv {
        Reflect::set(&algorithm, &"iv".into(), &Uint8Array::from(iv).into())?;
    }
    Ok(algorithm)
}

async fn decrypt_js(key: &[u8; 32], ciphertext: &[u8]) -> Result<Vec<u8>, JsValue> {
    let import_args = Array::of5(
        &"raw".into(),
        &Uint8Array::from(key.as_slice()).into(),
        &aes_cbc(None)?.into(),
        &JsValue::FALSE,
        &Array::of1(&"decrypt".into()).into(),
    );
    let crypto_key = call_subtle("importKey", &import_args).await?;
    let iv = key
        .get(..16)
        .ok_or_else(|| JsValue::from_str("short key"))?;
    let decrypt_args = Array::of3(
        &aes_cbc(Some(iv))?.into(),
        &crypto_key,
        &Uint8Array::from(ciphertext).into(),
    );
    let plain = call_subtle("decrypt", &decrypt_args).await?;
    Ok(Uint8Array::new(&plain).to_vec())
}

/// The core's [`Cipher`] port over WebCrypto.
#[derive(Clone, Copy, Default)]
pub struct WebCrypto;

impl Cipher for WebCrypto {
    async fn cbc_decrypt(
        &self,
        key: &crypto::AesKey,
        ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>, crypto::DecryptError> {
        cbc_decrypt(key, ciphertext).await
    }
}

/// The raw CBC decryption of `ciphertext` (whole 32-byte blocks), WeChat's padding still on.
async fn cbc_decrypt(
    key: &crypto::AesKey,
    ciphertext: Vec<u8>,
) -> Result<Vec<u8>, crypto::DecryptError> {
    let mut extended = ciphertext.clone();
    extended.extend_from_slice(&crypto::pkcs7_16_tail_block(key, &ciphertext)?);
    match decrypt_js(key.as_bytes(), &extended).await {
        Ok(plain) if plain.len() == ciphertext.len() => Ok(plain),
        outcome => {
            let why = match outcome {
                Ok(plain) => format!("unexpected length {}", plain.len()),
                Err(e) => format!("{e:?}"),
            };
            log::warn!(error = why; "WebCrypto AES failed; using software AES");
            let mut blocks = ciphertext;
            crypto::cbc_decrypt(key, &mut blocks)?;
            Ok(blocks)
        }
    }
}
