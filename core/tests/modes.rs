//! The message modes of the console (明文 plain, 兼容 compatible, 安全 safe) on every account kind,
//! the mode confusions a forger would try, and ids that survive WeChat's re-encryption.

use wechat_relay_core::account::MessageMode;
use wechat_relay_core::callback::{open_callback, Mode, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::testing::{callback, config, text_message, Sent};
use wechat_relay_core::wire::crypto::{self, AesKey};
use wechat_relay_core::wire::signature::sha1_sorted;
use wechat_relay_core::Error;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const NOW: u64 = 1_800_000_000;

/// One account of each kind with callbacks, all with a key; `mode` is each account's own.
fn deployment(mode: Option<&str>, default_mode: Option<&str>) -> Config {
    let field = mode
        .map(|m| format!(r#", "mode": "{m}""#))
        .unwrap_or_default();
    let doc = format!(
        r#"{{"shop": {{"kind": "official", "app_id": "wxshop"{field}}},
             "mini": {{"kind": "miniprogram", "app_id": "wxmini"{field}}}}}"#
    );
    let mut pairs = vec![
        ("WECHAT_ACCOUNTS", doc),
        ("WECHAT_SHOP_TOKEN", "shoptoken".into()),
        ("WECHAT_SHOP_ENCODING_AES_KEY", KEY.into()),
        ("WECHAT_MINI_TOKEN", "minitoken".into()),
        ("WECHAT_MINI_ENCODING_AES_KEY", KEY.into()),
        ("WECHAT_TOKEN", "token".into()),
        ("WECHAT_ENCODING_AES_KEY", KEY.into()),
        ("WECHAT_APP_ID", "wxdefault".into()),
    ];
    if let Some(m) = default_mode {
        pairs.push(("WECHAT_MESSAGE_MODE", m.into()));
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    config(&borrowed)
}

fn send(c: &Config, account: &str, sent: Sent) -> Result<Mode, Error> {
    let (token, app) = match account {
        "shop" => ("shoptoken", "wxshop"),
        "mini" => ("minitoken", "wxmini"),
        _ => ("token", "wxdefault"),
    };
    let xml = text_message("o_user", "hi", 42, NOW);
    let (q, body) = callback(token, KEY, app, &xml, sent, NOW, "n");
    open_callback(c, account, &q, &body, NOW * 1000).map(|i| i.mode)
}

#[test]
fn safe_takes_only_encrypted_plain_only_plaintext_compatible_both() {
    for (mode, plain, safe) in [
        ("safe", false, true),
        ("compatible", true, true),
        ("plain", true, false),
    ] {
        // The account's own mode, and the same through WECHAT_MESSAGE_MODE.
        for c in [deployment(Some(mode), None), deployment(None, Some(mode))] {
            for account in ["shop", "mini"] {
                let got = send(&c, account, Sent::Plain);
                assert_eq!(got.is_ok(), plain, "{mode} {account} plaintext: {got:?}");
                if !plain {
                    assert_eq!(got, Err(Error::BadSignature));
                }
                for sent in [Sent::Safe, Sent::Compatible] {
                    let got = send(&c, account, sent);
                    assert_eq!(got.is_ok(), safe, "{mode} {account} {sent:?}: {got:?}");
                    if safe {
                        assert_eq!(got, Ok(Mode::Encrypted));
                    } else {
                        assert_eq!(got, Err(Error::BadSignature));
                    }
                }
            }
        }
    }
}

#[test]
fn unset_mode_is_safe_with_a_key_and_plain_without() {
    let c = deployment(None, None);
    for account in ["default", "shop", "mini"] {
        assert_eq!(
            c.account(account).unwrap().message_mode(),
            Ok(MessageMode::Safe)
        );
        assert_eq!(send(&c, account, Sent::Plain), Err(Error::BadSignature));
        assert_eq!(send(&c, account, Sent::Safe), Ok(Mode::Encrypted));
    }
    let c = config(&[("WECHAT_TOKEN", "token")]);
    assert_eq!(c.default_account().message_mode(), Ok(MessageMode::Plain));
    assert_eq!(send(&c, "default", Sent::Plain), Ok(Mode::Plaintext));
    // An encrypted callback to an account without a key: the key is named.
    let err = send(&c, "default", Sent::Safe).unwrap_err();
    assert!(err.to_string().contains("WECHAT_ENCODING_AES_KEY"), "{err}");
    // An account's own mode wins over the default.
    let c = deployment(Some("compatible"), Some("safe"));
    assert_eq!(send(&c, "shop", Sent::Plain), Ok(Mode::Plaintext));
    assert_eq!(send(&c, "default", Sent::Plain), Err(Error::BadSignature));
}

#[test]
fn a_mode_that_needs_a_missing_key_names_both() {
    let c = config(&[("WECHAT_TOKEN", "token"), ("WECHAT_MESSAGE_MODE", "safe")]);
    let e = c.default_account().message_mode().unwrap_err();
    assert_eq!(e.setting, "WECHAT_MESSAGE_MODE");
    assert!(e.problem.contains("WECHAT_ENCODING_AES_KEY"), "{e}");
    let err = send(&c, "default", Sent::Plain).unwrap_err();
    assert_eq!(err.status(), 500);
    let c = config(&[
        (
            "WECHAT_ACCOUNTS",
            r#"{"shop": {"kind": "official", "app_id": "wxshop", "mode": "compatible"}}"#,
        ),
        ("WECHAT_SHOP_TOKEN", "t"),
    ]);
    let e = c.account("shop").unwrap().message_mode().unwrap_err();
    assert_eq!(e.setting, "WECHAT_ACCOUNTS (shop.mode)");
    assert!(e.problem.contains("WECHAT_SHOP_ENCODING_AES_KEY"), "{e}");
    assert!(c.problems().iter().any(|p| p == &e));
    // Not a mode: named, listed once.
    let c = config(&[("WECHAT_TOKEN", "t"), ("WECHAT_MESSAGE_MODE", "secure")]);
    let e = c.default_account().message_mode().unwrap_err();
    assert!(e.problem.contains("plain, compatible, safe"), "{e}");
    assert_eq!(c.problems().iter().filter(|p| **p == e).count(), 1);
}

#[test]
fn wecom_apps_and_platforms_stay_encrypted_only() {
    let doc = r#"{"staff": {"kind": "wecom", "corp_id": "ww_corp"},
                  "platform": {"kind": "component", "app_id": "wxcomponent"}}"#;
    let c = config(&[
        ("WECHAT_ACCOUNTS", doc),
        ("WECHAT_STAFF_TOKEN", "stafftoken"),
        ("WECHAT_STAFF_ENCODING_AES_KEY", KEY),
        ("WECHAT_PLATFORM_TOKEN", "platformtoken"),
        ("WECHAT_PLATFORM_ENCODING_AES_KEY", KEY),
        // The default for the kinds that have a choice does not reach them.
        ("WECHAT_MESSAGE_MODE", "plain"),
    ]);
    for (account, token, receive_id) in [
        ("staff", "stafftoken", "ww_corp"),
        ("platform", "platformtoken", "wxcomponent"),
    ] {
        assert_eq!(
            c.account(account).unwrap().message_mode(),
            Ok(MessageMode::Safe)
        );
        let xml = text_message("o_user", "hi", 42, NOW);
        let (q, body) = callback(token, KEY, receive_id, &xml, Sent::Plain, NOW, "n");
        // Refused: no msg_signature (WeCom) or a plaintext the kind never sends.
        let err = open_callback(&c, account, &q, &body, NOW * 1000).unwrap_err();
        assert!(err.is_callers_fault(), "{account}: {err}");
        let (q, body) = callback(token, KEY, receive_id, &xml, Sent::Safe, NOW, "n");
        assert!(open_callback(&c, account, &q, &body, NOW * 1000).is_ok());
    }
    for kind in [
        r#""kind": "wecom", "corp_id": "ww""#,
        r#""kind": "component", "app_id": "wx""#,
    ] {
        for mode in ["plain", "compatible"] {
            let doc = format!(r#"{{"x": {{{kind}, "mode": "{mode}"}}}}"#);
            let c = config(&[
                ("WECHAT_ACCOUNTS", &doc),
                ("WECHAT_X_ENCODING_AES_KEY", KEY),
            ]);
            let e = c.account("x").unwrap().message_mode().unwrap_err();
            assert!(e.problem.contains("always encrypted"), "{e}");
        }
        let doc = format!(r#"{{"x": {{{kind}, "mode": "safe"}}}}"#);
        let c = config(&[
            ("WECHAT_ACCOUNTS", &doc),
            ("WECHAT_X_ENCODING_AES_KEY", KEY),
        ]);
        assert_eq!(
            c.account("x").unwrap().message_mode(),
            Ok(MessageMode::Safe)
        );
    }
}

/// What a forger holding one safe-mode URL (its `signature` is sha1 of token, timestamp and
/// nonce) can try: every one is refused.
#[test]
fn mode_confusion_is_refused() {
    let safe = deployment(Some("safe"), None);
    let plain = config(&[("WECHAT_TOKEN", "token"), ("WECHAT_APP_ID", "wxdefault")]);
    let xml = text_message("o_forged", "transfer all", 1, NOW);
    let (q, _) = callback("token", KEY, "wxdefault", &xml, Sent::Safe, NOW, "n");

    // The URL's query with a plaintext body, with or without its encrypt_type.
    let mut stripped = q.clone();
    stripped.encrypt_type = None;
    assert_eq!(
        open_callback(&safe, "default", &stripped, xml.as_bytes(), NOW * 1000).unwrap_err(),
        Error::BadSignature
    );
    stripped.msg_signature = None;
    assert_eq!(
        open_callback(&safe, "default", &stripped, xml.as_bytes(), NOW * 1000).unwrap_err(),
        Error::BadSignature
    );
    for raw in ["", "raw"] {
        stripped.encrypt_type = Some(raw.into());
        assert_eq!(
            open_callback(&safe, "default", &stripped, xml.as_bytes(), NOW * 1000).unwrap_err(),
            Error::BadSignature,
            "encrypt_type={raw:?}"
        );
    }
    // encrypt_type=aes with a plaintext body (no Encrypt) and the URL's msg_signature.
    let err = open_callback(&safe, "default", &q, xml.as_bytes(), NOW * 1000).unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    // A compatible-mode body whose plaintext fields were swapped: the event is the ciphertext's.
    let (cq, cbody) = callback("token", KEY, "wxdefault", &xml, Sent::Compatible, NOW, "n");
    let swapped = String::from_utf8(cbody)
        .unwrap()
        .replace("transfer all", "forged text");
    let e = open_callback(&safe, "default", &cq, swapped.as_bytes(), NOW * 1000)
        .unwrap()
        .event;
    assert_eq!(e.data.to_map()["content"], "transfer all");
    // msg_signature without encrypt_type, on a plain account: not a shape WeChat sends.
    let (mut pq, pbody) = callback("token", KEY, "wxdefault", &xml, Sent::Plain, NOW, "n");
    pq.msg_signature = Some(sha1_sorted(&["token", "1", "2", "3"]));
    assert_eq!(
        open_callback(&plain, "default", &pq, &pbody, NOW * 1000).unwrap_err(),
        Error::BadSignature
    );
    // encrypt_type=aes on a plain account that has a key: refused, not decrypted.
    let keyed_plain = deployment(Some("plain"), None);
    let (q, body) = callback("shoptoken", KEY, "wxshop", &xml, Sent::Safe, NOW, "n");
    assert_eq!(
        open_callback(&keyed_plain, "shop", &q, &body, NOW * 1000).unwrap_err(),
        Error::BadSignature
    );
}

/// WeChat's retry of a safe-mode message is encrypted again (new random prefix, nonce and
/// timestamp): the id is the plaintext's, so it stays; another plaintext gets another id.
#[test]
fn ids_are_stable_across_re_encryption() {
    let c = deployment(Some("safe"), None);
    let key = AesKey::from_encoding_aes_key(KEY).unwrap();
    let xml = text_message("o_user", "hi", 42, NOW);
    let sealed = |message: &str, random: [u8; 16], ts: u64, nonce: &str| {
        let encrypted = crypto::encrypt(&key, random, message.as_bytes(), "wxshop");
        let ts_text = ts.to_string();
        let q = Query::from_pairs([
            ("timestamp", ts_text.clone()),
            ("nonce", nonce.to_owned()),
            ("encrypt_type", "aes".to_owned()),
            (
                "msg_signature",
                sha1_sorted(&["shoptoken", &ts_text, nonce, &encrypted]),
            ),
        ]);
        let body = format!("<xml><ToUserName>gh</ToUserName><Encrypt>{encrypted}</Encrypt></xml>");
        open_callback(&c, "shop", &q, body.as_bytes(), NOW * 1000)
            .unwrap()
            .event
            .id
    };
    let first = sealed(&xml, *b"aaaaaaaaaaaaaaaa", NOW, "1");
    assert_eq!(first, sealed(&xml, *b"bbbbbbbbbbbbbbbb", NOW + 5, "2"));
    assert_eq!(first, sealed(&xml, *b"cccccccccccccccc", NOW + 10, "3"));
    let other = text_message("o_user", "hi", 43, NOW);
    assert_ne!(first, sealed(&other, *b"aaaaaaaaaaaaaaaa", NOW, "1"));
}

#[test]
fn the_clock_window_is_at_most_fifteen_minutes() {
    for (value, ok) in [
        ("0", true),
        ("900", true),
        ("901", false),
        ("999999999", false),
    ] {
        let c = config(&[("MAX_CLOCK_SKEW_SECONDS", value)]);
        assert_eq!(c.max_clock_skew().is_ok(), ok, "{value}");
        if let Err(e) = c.max_clock_skew() {
            assert!(e.problem.contains("900"), "{e}");
        }
    }
}
