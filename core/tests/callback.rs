//! The whole inbound pipeline: URL verification, plaintext and safe-mode callbacks, and every
//! kind of bad input, each with its status.

mod common;

use wechat_relay_core::callback::reply;
use wechat_relay_core::callback::{open_callback, verify_url, Mode, Query, MAX_BODY_BYTES};
use wechat_relay_core::config::Config;
use wechat_relay_core::wire::crypto::AesKey;
use wechat_relay_core::wire::signature::sha1_sorted;
use wechat_relay_core::Error;

const TOKEN: &str = "spamtest";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wx2c2769f8efd9abc2";
const NOW: u64 = 1_409_735_669;
const TEXT: &str = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_user]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 😀]]></Content><MsgId>6054768590064713728</MsgId></xml>";

fn config(extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("WECHAT_TOKEN", TOKEN),
        ("WECHAT_ENCODING_AES_KEY", KEY),
        ("WECHAT_APP_ID", APP_ID),
        ("FORWARD_URLS", "http://127.0.0.1:1/hook"),
        // Most tests send both plaintext and safe-mode callbacks.
        ("WECHAT_MESSAGE_MODE", "compatible"),
    ];
    pairs.extend_from_slice(extra);
    Config::load(move |k| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
}

fn plain_query(ts: u64, nonce: &str) -> Query {
    let ts = ts.to_string();
    Query::from_pairs([
        ("signature", sha1_sorted(&[TOKEN, &ts, nonce])),
        ("timestamp", ts.clone()),
        ("nonce", nonce.to_owned()),
        ("openid", "o_user".to_owned()),
    ])
}

/// A safe-mode callback as WeChat sends it: envelope body and query.
fn encrypted(message: &str, app_id: &str, ts: u64) -> (Query, Vec<u8>) {
    let key = AesKey::from_encoding_aes_key(KEY).unwrap();
    let ts = ts.to_string();
    let sealed = reply::seal(
        &key,
        TOKEN,
        app_id,
        *b"0123456789abcdef",
        &ts,
        "nonce1",
        message.as_bytes(),
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.encrypt
    );
    let q = Query::from_pairs([
        ("signature", sha1_sorted(&[TOKEN, &ts, "nonce1"])),
        ("timestamp", ts.clone()),
        ("nonce", "nonce1".to_owned()),
        ("openid", "o_user".to_owned()),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", sealed.msg_signature),
    ]);
    (q, body.into_bytes())
}

fn open(
    cfg: &Config,
    q: &Query,
    body: &[u8],
) -> Result<wechat_relay_core::callback::Inbound, Error> {
    open_callback(cfg, "default", q, body, NOW * 1000)
}

#[test]
fn url_verification() {
    let cfg = config(&[]);
    let mut q = plain_query(NOW, "1320562132");
    q.echostr = Some("echo-123".into());
    assert_eq!(verify_url(&cfg, "default", &q, NOW).unwrap(), "echo-123");
    // The official plaintext signature vector.
    assert_eq!(
        q.signature.as_deref(),
        Some("16120ec1b8dbb870f510d87ce6bc2463eae6ca1a")
    );

    let mut bad = q.clone();
    bad.signature = Some("0".repeat(40));
    assert_eq!(
        verify_url(&cfg, "default", &bad, NOW),
        Err(Error::BadSignature)
    );
    assert_eq!(
        verify_url(&cfg, "default", &q, NOW + 301),
        Err(Error::StaleTimestamp)
    );
    assert_eq!(
        verify_url(&cfg, "default", &q, NOW - 301),
        Err(Error::StaleTimestamp)
    );
    assert!(verify_url(&cfg, "default", &q, NOW + 300).is_ok());
    let mut no_echo = q.clone();
    no_echo.echostr = None;
    assert_eq!(
        verify_url(&cfg, "default", &no_echo, NOW),
        Err(Error::MissingParameter("echostr"))
    );
    let mut bad_ts = q.clone();
    bad_ts.timestamp = Some("yesterday".into());
    assert_eq!(
        verify_url(&cfg, "default", &bad_ts, NOW),
        Err(Error::MalformedParameter("timestamp"))
    );
}

#[test]
fn plaintext_callback() {
    let cfg = config(&[]);
    let inbound = open(&cfg, &plain_query(NOW, "n"), TEXT.as_bytes()).unwrap();
    assert_eq!(inbound.mode, Mode::Plaintext);
    assert_eq!(inbound.event.kind, "text");
    assert_eq!(inbound.event.data.to_map()["content"], "你好 😀");
    assert_eq!(inbound.event.app_id.as_deref(), Some(APP_ID));
}

#[test]
fn safe_mode_callback() {
    let cfg = config(&[]);
    let (q, body) = encrypted(TEXT, APP_ID, NOW);
    let inbound = open(&cfg, &q, &body).unwrap();
    assert_eq!(inbound.mode, Mode::Encrypted);
    assert_eq!(inbound.event.data.to_map()["msg_id"], "6054768590064713728");
    assert_eq!(inbound.event.app_id.as_deref(), Some(APP_ID));
    // Retries carry a new nonce and signature but yield the same id.
    let plain = open(&cfg, &plain_query(NOW, "other"), TEXT.as_bytes()).unwrap();
    assert_eq!(plain.event.id, inbound.event.id);
}

#[test]
fn official_safe_mode_sample() {
    // WXBizMsgCrypt Sample.py: token spamtest, appid wx2c2769f8efd9abc2.
    let v = common::read_json("vectors/official.json");
    let case = &v["decrypt"][0];
    let body = format!("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>", common::str_of(case, "encrypt"));
    let q = Query::from_pairs([
        ("timestamp", "1409735669"),
        ("nonce", "1320562132"),
        ("encrypt_type", "aes"),
        ("msg_signature", "5d197aaffba7e9b25a30732f161a50dee96bd5fa"),
    ]);
    let inbound = open(&config(&[]), &q, body.as_bytes()).unwrap();
    assert_eq!(inbound.event.data.to_map()["content"], "abcdteT");
    assert_eq!(
        inbound.event.from.as_deref(),
        Some("oyORnuP8q7ou2gfYjqLzSIWZf0rs")
    );
    assert_eq!(inbound.event.created_at, 1_409_735_668);
}

#[test]
fn compatible_mode_uses_the_ciphertext() {
    let cfg = config(&[]);
    let (q, body) = encrypted(TEXT, APP_ID, NOW);
    let body = String::from_utf8(body).unwrap().replace(
        "<Encrypt>",
        "<FromUserName>forged</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>plain copy</Content><Encrypt>",
    );
    let inbound = open(&cfg, &q, body.as_bytes()).unwrap();
    assert_eq!(inbound.event.from.as_deref(), Some("o_user"));
    assert_eq!(inbound.event.data.to_map()["content"], "你好 😀");
}

#[test]
fn bad_signatures_and_timestamps_are_401() {
    let cfg = config(&[]);
    let mut q = plain_query(NOW, "n");
    q.signature = Some("da39a3ee5e6b4b0d3255bfef95601890afd80709".into());
    assert_eq!(open(&cfg, &q, TEXT.as_bytes()).unwrap_err().status(), 401);

    let stale = plain_query(NOW - 3600, "n");
    assert_eq!(
        open(&cfg, &stale, TEXT.as_bytes()).unwrap_err(),
        Error::StaleTimestamp
    );

    let (mut q, body) = encrypted(TEXT, APP_ID, NOW);
    q.msg_signature = Some("0".repeat(40));
    assert_eq!(open(&cfg, &q, &body).unwrap_err(), Error::BadSignature);

    let (mut q, body) = encrypted(TEXT, APP_ID, NOW);
    q.signature = Some("0".repeat(40));
    assert_eq!(open(&cfg, &q, &body).unwrap_err(), Error::BadSignature);

    let (mut q, body) = encrypted(TEXT, APP_ID, NOW);
    q.msg_signature = None;
    assert_eq!(
        open(&cfg, &q, &body).unwrap_err(),
        Error::MissingParameter("msg_signature")
    );
}

/// Every decryption failure answers identically, and only after msg_signature is valid.
#[test]
fn decryption_failures_look_the_same() {
    let cfg = config(&[]);
    let resign = |encrypt: &str| {
        let ts = NOW.to_string();
        let q = Query::from_pairs([
            ("timestamp", ts.clone()),
            ("nonce", "n".to_owned()),
            ("encrypt_type", "aes".to_owned()),
            ("msg_signature", sha1_sorted(&[TOKEN, &ts, "n", encrypt])),
        ]);
        let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        open(&cfg, &q, body.as_bytes()).unwrap_err()
    };
    let key = AesKey::from_encoding_aes_key(KEY).unwrap();
    let wrong_app =
        wechat_relay_core::wire::crypto::encrypt(&key, [0; 16], TEXT.as_bytes(), "wx_someone_else");
    let other_key =
        AesKey::from_encoding_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").unwrap();
    let wrong_key =
        wechat_relay_core::wire::crypto::encrypt(&other_key, [0; 16], TEXT.as_bytes(), APP_ID);
    let errors = [
        resign("not base64 at all!"),
        resign("AAAAAAAAAAAAAAAAAAAAAA=="),
        resign(&wrong_app),
        resign(&wrong_key),
        resign(&wrong_app[..wrong_app.len() - 4]),
    ];
    for e in &errors {
        assert_eq!(e, &Error::Decryption);
        assert_eq!(e.status(), 401);
        assert_eq!(e.to_string(), "cannot decrypt message");
    }
}

#[test]
fn malformed_bodies_are_400() {
    let cfg = config(&[]);
    let q = plain_query(NOW, "n");
    for body in [
        &b""[..],
        b"   ",
        b"not xml",
        b"{\"ToUserName\":\"x\"}",
        b"<xml><ToUserName>t</ToUserName>",
        b"<xml><a></b></xml>",
        b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><xml><c>&b;</c></xml>",
        b"<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><xml/>",
        b"<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime></xml>",
        b"<xml>\xc3\x28</xml>",
    ] {
        let err = open(&cfg, &q, body).unwrap_err();
        assert_eq!(err.status(), 400, "{:?} -> {err}", String::from_utf8_lossy(body));
    }
    let (q, _) = encrypted(TEXT, APP_ID, NOW);
    let err = open(&cfg, &q, b"<xml><ToUserName>gh</ToUserName></xml>").unwrap_err();
    assert_eq!(err, Error::MissingElement("Encrypt"));
}

#[test]
fn oversized_body_is_413_and_missing_params_400() {
    let cfg = config(&[]);
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        open(&cfg, &plain_query(NOW, "n"), &big)
            .unwrap_err()
            .status(),
        413
    );
    let mut q = plain_query(NOW, "n");
    q.signature = None;
    assert_eq!(
        open(&cfg, &q, TEXT.as_bytes()).unwrap_err(),
        Error::MissingParameter("signature")
    );
    assert_eq!(
        open(&cfg, &Query::default(), TEXT.as_bytes())
            .unwrap_err()
            .status(),
        400
    );
    let mut q = plain_query(NOW, "n");
    q.encrypt_type = Some("rot13".into());
    assert_eq!(
        open(&cfg, &q, TEXT.as_bytes()).unwrap_err(),
        Error::MalformedParameter("encrypt_type")
    );
}

#[test]
fn missing_settings_are_named_and_500() {
    let cfg = Config::load(|k| (k == "WECHAT_TOKEN").then(|| TOKEN.to_owned()));
    let (q, body) = encrypted(TEXT, APP_ID, NOW);
    let err = open(&cfg, &q, &body).unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(err.to_string().contains("WECHAT_ENCODING_AES_KEY"), "{err}");

    let cfg = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some(TOKEN.to_owned()),
        "WECHAT_ENCODING_AES_KEY" => Some(KEY.to_owned()),
        _ => None,
    });
    let err = open(&cfg, &q, &body).unwrap_err();
    assert!(err.to_string().contains("WECHAT_APP_ID"), "{err}");

    let cfg = Config::load(|_| None);
    let err = open(&cfg, &plain_query(NOW, "n"), TEXT.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("WECHAT_TOKEN"), "{err}");
    assert!(!err.is_callers_fault());
}

#[test]
fn clock_skew_setting_is_honoured() {
    let cfg = config(&[("MAX_CLOCK_SKEW_SECONDS", "10")]);
    assert_eq!(
        open(&cfg, &plain_query(NOW - 11, "n"), TEXT.as_bytes()).unwrap_err(),
        Error::StaleTimestamp
    );
    assert!(open(&cfg, &plain_query(NOW - 10, "n"), TEXT.as_bytes()).is_ok());
}

/// The Mini Program / new push settings' JSON format: the official safe-mode vector end to end.
#[test]
fn official_json_safe_mode_vector() {
    let v = common::read_json("vectors/official.json");
    let case = v["decrypt"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("JSON"))
        .unwrap();
    let cfg = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some("AAAAA".into()),
        "WECHAT_ENCODING_AES_KEY" => Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        "WECHAT_APP_ID" => Some("wxba5fad812f8e6fb9".into()),
        _ => None,
    });
    let body = serde_json::json!({"ToUserName": "gh_97417a04a28d", "Encrypt": common::str_of(case, "encrypt")}).to_string();
    let q = Query::from_pairs([
        ("timestamp", common::str_of(case, "timestamp")),
        ("nonce", common::str_of(case, "nonce")),
        ("encrypt_type", "aes"),
        ("msg_signature", common::str_of(case, "msg_signature")),
    ]);
    let inbound = open_callback(&cfg, "default", &q, body.as_bytes(), 1_714_112_445_000).unwrap();
    let e = inbound.event;
    assert_eq!(
        (e.kind.as_str(), e.event.as_deref()),
        ("event", Some("debug_demo"))
    );
    assert_eq!(e.from.as_deref(), Some("o9AgO5Kd5ggOC-bXrbNODIiE3bGY"));
    assert_eq!(e.to, "gh_97417a04a28d");
    assert_eq!(e.created_at, 1_714_112_445);
    assert_eq!(e.data.to_map()["debug_str"], "hello world");
    assert_eq!(e.app_id.as_deref(), Some("wxba5fad812f8e6fb9"));
}

#[test]
fn json_plaintext_normalizes_like_xml() {
    let cfg = config(&[]);
    let json = r#"{"ToUserName":"gh_1","FromUserName":"o_user","CreateTime":1409735668,"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"T1","SubscribeStatusString":"accept","PopupScene":"2"}}"#;
    let xml = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o_user</FromUserName><CreateTime>1409735668</CreateTime><MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event><List><TemplateId>T1</TemplateId><SubscribeStatusString>accept</SubscribeStatusString><PopupScene>2</PopupScene></List></xml>";
    let from_json = open(&cfg, &plain_query(NOW, "n"), json.as_bytes())
        .unwrap()
        .event;
    let from_xml = open(&cfg, &plain_query(NOW, "n"), xml.as_bytes())
        .unwrap()
        .event;
    assert_eq!(from_json.data.to_map(), from_xml.data.to_map());
    // The id is over the message as sent: the two formats are two messages.
    assert_ne!(from_json.id, from_xml.id);
    // A single List is still an array, as when WeChat's JSON sends an object for one entry.
    assert_eq!(from_json.data.to_map()["list"][0]["popup_scene"], 2);
    // 64-bit ids keep every digit.
    let text = r#"{"ToUserName":"gh_1","FromUserName":"o","CreateTime":1409735668,"MsgType":"text","Content":"hi","MsgId":18446744073709551615}"#;
    let e = open(&cfg, &plain_query(NOW, "n"), text.as_bytes())
        .unwrap()
        .event;
    assert_eq!(e.data.to_map()["msg_id"], "18446744073709551615");
}
