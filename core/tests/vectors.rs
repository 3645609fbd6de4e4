//! WeChat's official sample vectors and the Standard Webhooks reference vector, from
//! `tests/vectors/official.json`.

mod common;
use common::{read_json, str_of};

use wechat_relay_core::delivery::webhook::WebhookSecret;
use wechat_relay_core::wire::crypto::{self, AesKey};
use wechat_relay_core::wire::signature;

#[test]
fn callback_signatures() {
    let v = read_json("vectors/official.json");
    for case in v["signature"].as_array().unwrap() {
        let parts = [
            str_of(case, "token"),
            str_of(case, "timestamp"),
            str_of(case, "nonce"),
        ];
        assert_eq!(
            signature::sha1_sorted(&parts),
            str_of(case, "signature"),
            "{}",
            case["name"]
        );
        assert!(signature::verify(str_of(case, "signature"), &parts));
    }
}

#[test]
fn decrypt_official_ciphertexts() {
    let v = read_json("vectors/official.json");
    for case in v["decrypt"].as_array().unwrap() {
        let name = str_of(case, "name");
        let key = AesKey::from_encoding_aes_key(str_of(case, "encoding_aes_key")).unwrap();
        let encrypt = str_of(case, "encrypt");
        let msg_parts = [
            str_of(case, "token"),
            str_of(case, "timestamp"),
            str_of(case, "nonce"),
            encrypt,
        ];
        assert!(
            signature::verify(str_of(case, "msg_signature"), &msg_parts),
            "{name}: msg_signature"
        );
        let opened = crypto::decrypt(&key, encrypt, str_of(case, "receive_id"))
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let text = String::from_utf8(opened.message).unwrap();
        if let Some(exact) = case["exact"].as_str() {
            assert_eq!(text, exact, "{name}");
        }
        for needle in case["contains"].as_array().into_iter().flatten() {
            assert!(
                text.contains(needle.as_str().unwrap()),
                "{name}: {needle} not in {text}"
            );
        }
        // Same ciphertext, any other receive id: refused.
        assert_eq!(
            crypto::decrypt(&key, encrypt, "wx0000000000000000"),
            Err(crypto::DecryptError::ReceiveId)
        );
    }
}

#[test]
fn encrypt_matches_official_ciphertexts() {
    let v = read_json("vectors/official.json");
    for case in v["encrypt"].as_array().unwrap() {
        let name = str_of(case, "name");
        let key = AesKey::from_encoding_aes_key(str_of(case, "encoding_aes_key")).unwrap();
        let random: [u8; 16] = str_of(case, "random").as_bytes().try_into().unwrap();
        let enc = crypto::encrypt(
            &key,
            random,
            str_of(case, "plaintext").as_bytes(),
            str_of(case, "receive_id"),
        );
        assert_eq!(enc, str_of(case, "encrypt"), "{name}");
        if let Some(sig) = case["msg_signature"].as_str() {
            let envelope = wechat_relay_core::callback::reply::seal(
                &key,
                str_of(case, "token"),
                str_of(case, "receive_id"),
                random,
                str_of(case, "timestamp"),
                str_of(case, "nonce"),
                str_of(case, "plaintext").as_bytes(),
            );
            assert_eq!(envelope.msg_signature, sig, "{name}");
            assert_eq!(envelope.encrypt, enc);
        }
    }
}

#[test]
fn tampered_ciphertexts_are_refused() {
    let v = read_json("vectors/official.json");
    let case = &v["decrypt"][0];
    let key = AesKey::from_encoding_aes_key(str_of(case, "encoding_aes_key")).unwrap();
    let appid = str_of(case, "receive_id");
    let good = str_of(case, "encrypt");
    // Flip one character in every position of the last two blocks: padding or appid breaks.
    let chars: Vec<char> = good.chars().collect();
    let mut refused = 0;
    for i in chars.len() - 44..chars.len() - 2 {
        let mut t = chars.clone();
        t[i] = if t[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = t.into_iter().collect();
        if crypto::decrypt(&key, &tampered, appid).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 40, "only {refused} tamperings refused");
    // Truncated by one block.
    assert!(crypto::decrypt(&key, &good[..good.len() - 24], appid).is_err());
}

#[test]
fn standard_webhooks_reference() {
    let v = read_json("vectors/official.json");
    for case in v["standard_webhooks"].as_array().unwrap() {
        let secret: WebhookSecret = str_of(case, "secret").parse().unwrap();
        let ts = case["timestamp"].as_u64().unwrap();
        let sig = secret.sign(str_of(case, "id"), ts, str_of(case, "body").as_bytes());
        assert_eq!(sig, str_of(case, "signature"));
    }
}

#[test]
fn jssdk_signature_matches_the_documented_example() {
    let v = read_json("vectors/official.json");
    for case in v["jssdk"].as_array().unwrap() {
        let ts: u64 = str_of(case, "timestamp").parse().unwrap();
        let sig = wechat_relay_core::token::jssdk::signature(
            str_of(case, "jsapi_ticket"),
            str_of(case, "noncestr"),
            ts,
            str_of(case, "url"),
        );
        assert_eq!(sig, str_of(case, "signature"), "{}", case["name"]);
        // A fragment does not change it.
        let with_fragment = format!("{}#section", str_of(case, "url"));
        let sig2 = wechat_relay_core::token::jssdk::signature(
            str_of(case, "jsapi_ticket"),
            str_of(case, "noncestr"),
            ts,
            &with_fragment,
        );
        assert_eq!(sig2, str_of(case, "signature"));
    }
}
