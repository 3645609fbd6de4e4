//! Every account kind through the inbound pipeline with WeChat's official vectors (the WeCom
//! samples, the Mini Program JSON sample), and the refusals that keep accounts apart.

mod common;
use common::{read_json, str_of};

use wechat_relay_core::callback::{open_callback, verify_url, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::testing::{callback, config, text_message, Sent};
use wechat_relay_core::Error;

const OA_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const WECOM_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const WECOM_CORP: &str = "wx5823bf96d3bd56c7";
const MP_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const MP_APP: &str = "wxba5fad812f8e6fb9";
/// The widest window; each test runs at its vector's own time.
const SKEW: &str = "900";

fn vector(name_part: &str) -> serde_json::Value {
    read_json("vectors/official.json")["decrypt"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| str_of(c, "name").contains(name_part))
        .unwrap_or_else(|| panic!("no vector {name_part}"))
        .clone()
}

/// A service account, a WeCom app (the official sample's secrets) and a Mini Program (the
/// documentation's JSON sample) in one deployment.
fn deployment(agent_id: &str) -> Config {
    let doc = format!(
        r#"{{"shop": {{"kind": "official", "app_id": "wxshop00000000000"}},
             "staff": {{"kind": "wecom", "corp_id": "{WECOM_CORP}", "agent_id": "{agent_id}"}},
             "mini": {{"kind": "miniprogram", "app_id": "{MP_APP}", "format": "json"}}}}"#
    );
    config(&[
        ("MAX_CLOCK_SKEW_SECONDS", SKEW),
        ("WECHAT_ACCOUNTS", &doc),
        ("WECHAT_SHOP_TOKEN", "shoptoken"),
        ("WECHAT_SHOP_ENCODING_AES_KEY", OA_KEY),
        ("WECHAT_STAFF_TOKEN", "QDG6eK"),
        ("WECHAT_STAFF_ENCODING_AES_KEY", WECOM_KEY),
        ("WECHAT_MINI_TOKEN", "AAAAA"),
        ("WECHAT_MINI_ENCODING_AES_KEY", MP_KEY),
    ])
}

fn query(pairs: &[(&str, &str)]) -> Query {
    Query::from_pairs(pairs.iter().map(|(k, v)| (*k, v.to_string())))
}

#[test]
fn wecom_url_verification_decrypts_echostr() {
    let c = deployment("218");
    let v = vector("Sample.cs) GET");
    let q = query(&[
        ("msg_signature", str_of(&v, "msg_signature")),
        ("timestamp", str_of(&v, "timestamp")),
        ("nonce", str_of(&v, "nonce")),
        ("echostr", str_of(&v, "encrypt")),
    ]);
    assert_eq!(
        verify_url(&c, "staff", &q, 1_409_659_589).unwrap(),
        "1616140317555161061"
    );
    // The echostr is not echoed as is, and a signature over another token fails.
    let bad = query(&[
        ("msg_signature", "0000000000000000000000000000000000000000"),
        ("timestamp", str_of(&v, "timestamp")),
        ("nonce", str_of(&v, "nonce")),
        ("echostr", str_of(&v, "encrypt")),
    ]);
    assert_eq!(
        verify_url(&c, "staff", &bad, 1_409_659_589),
        Err(Error::BadSignature)
    );
    // The plain signature an Official Account sends is not enough for WeCom.
    let plain = query(&[
        ("signature", "x"),
        ("timestamp", "1"),
        ("nonce", "n"),
        ("echostr", "e"),
    ]);
    assert_eq!(
        verify_url(&c, "staff", &plain, 1),
        Err(Error::MissingParameter("msg_signature"))
    );

    // wechatpy's WeCom vector, as its own account.
    let v = vector("wechatpy");
    let c = config(&[
        ("MAX_CLOCK_SKEW_SECONDS", SKEW),
        (
            "WECHAT_ACCOUNTS",
            r#"{"work": {"kind": "wecom", "corp_id": "wx49f0ab532d5d035a"}}"#,
        ),
        ("WECHAT_WORK_TOKEN", "123456"),
        (
            "WECHAT_WORK_ENCODING_AES_KEY",
            "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
        ),
    ]);
    let q = query(&[
        ("msg_signature", str_of(&v, "msg_signature")),
        ("timestamp", str_of(&v, "timestamp")),
        ("nonce", str_of(&v, "nonce")),
        ("echostr", str_of(&v, "encrypt")),
    ]);
    assert_eq!(
        verify_url(&c, "work", &q, 1_411_443_780).unwrap(),
        "5927782489442352469"
    );
}

fn wecom_post(v: &serde_json::Value) -> (Query, Vec<u8>) {
    let q = query(&[
        ("msg_signature", str_of(v, "msg_signature")),
        ("timestamp", str_of(v, "timestamp")),
        ("nonce", str_of(v, "nonce")),
    ]);
    let body = format!(
        "<xml><ToUserName><![CDATA[{WECOM_CORP}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
        str_of(v, "encrypt")
    );
    (q, body.into_bytes())
}

#[test]
fn wecom_official_sample_is_an_event_of_its_account_with_agent_id() {
    let c = deployment("218");
    let v = vector("Sample.cs) POST");
    let (q, body) = wecom_post(&v);
    let inbound = open_callback(&c, "staff", &q, &body, 1_409_659_813_000).unwrap();
    let e = inbound.event;
    assert_eq!(e.account, "staff");
    assert_eq!(e.app_id.as_deref(), Some(WECOM_CORP));
    assert_eq!(e.kind, "text");
    assert_eq!(e.data.to_map()["content"], "hello");
    assert_eq!(e.data.to_map()["agent_id"], 218);
    assert_eq!(e.data.to_map()["msg_id"], "4561255354251345929");
}

#[test]
fn wecom_refuses_another_apps_messages_and_plaintext() {
    let v = vector("Sample.cs) POST");
    let (q, body) = wecom_post(&v);
    let other_app = deployment("1000002");
    assert_eq!(
        open_callback(&other_app, "staff", &q, &body, 1_409_659_813_000).unwrap_err(),
        Error::WrongRecipient
    );
    // A plaintext POST, even correctly signed with the app's token, is refused.
    let c = deployment("218");
    let xml = text_message("o_user", "hi", 1, 1_409_659_813);
    let (plain_q, plain_body) = callback(
        "QDG6eK",
        WECOM_KEY,
        WECOM_CORP,
        &xml,
        Sent::Plain,
        1_409_659_813,
        "n",
    );
    let err = open_callback(&c, "staff", &plain_q, &plain_body, 1_409_659_813_000).unwrap_err();
    assert!(matches!(err.status(), 400 | 401), "{err:?}");
}

#[test]
fn the_mini_program_json_sample_through_its_account() {
    let c = deployment("218");
    let v = vector("Mini Program doc safe-mode JSON");
    let q = query(&[
        ("msg_signature", str_of(&v, "msg_signature")),
        ("timestamp", str_of(&v, "timestamp")),
        ("nonce", str_of(&v, "nonce")),
        ("encrypt_type", "aes"),
    ]);
    let body =
        serde_json::json!({"ToUserName": "gh_97417a04a28d", "Encrypt": str_of(&v, "encrypt")})
            .to_string();
    let inbound = open_callback(&c, "mini", &q, body.as_bytes(), 1_714_112_445_000).unwrap();
    assert!(inbound.json);
    let e = inbound.event;
    assert_eq!(
        (e.account.as_str(), e.app_id.as_deref()),
        ("mini", Some(MP_APP))
    );
    assert_eq!(e.event.as_deref(), Some("debug_demo"));
    assert_eq!(e.data.to_map()["debug_str"], "hello world");
}

#[test]
fn callbacks_for_one_account_are_refused_by_every_other() {
    let c = deployment("218");
    let now = 1_800_000_000u64;
    let xml = text_message("o_user", "hi", 42, now);
    // Signed with the shop's token, sent to the Mini Program: wrong token.
    let (q, body) = callback(
        "shoptoken",
        OA_KEY,
        "wxshop00000000000",
        &xml,
        Sent::Safe,
        now,
        "n",
    );
    assert!(open_callback(&c, "shop", &q, &body, now * 1000).is_ok());
    assert_eq!(
        open_callback(&c, "mini", &q, &body, now * 1000).unwrap_err(),
        Error::BadSignature
    );
    assert_eq!(
        open_callback(&c, "default", &q, &body, now * 1000)
            .unwrap_err()
            .status(),
        500,
        "default has no token here"
    );
    // The right token but another account's key: cannot be decrypted.
    let (q, body) = callback("AAAAA", OA_KEY, MP_APP, &xml, Sent::Safe, now, "n");
    assert_eq!(
        open_callback(&c, "mini", &q, &body, now * 1000).unwrap_err(),
        Error::Decryption
    );
    // The right token and key, another account's AppID inside: refused.
    let (q, body) = callback(
        "AAAAA",
        MP_KEY,
        "wxshop00000000000",
        &xml,
        Sent::Safe,
        now,
        "n",
    );
    assert_eq!(
        open_callback(&c, "mini", &q, &body, now * 1000).unwrap_err(),
        Error::Decryption
    );
    // Unknown accounts are 404.
    assert_eq!(
        open_callback(&c, "nobody", &q, &body, now * 1000).unwrap_err(),
        Error::NotFound
    );
}

#[test]
fn the_same_message_id_on_two_accounts_is_two_events() {
    let c = deployment("218");
    let now = 1_800_000_000u64;
    let xml = text_message("o_user", "hi", 42, now);
    let (q, body) = callback(
        "shoptoken",
        OA_KEY,
        "wxshop00000000000",
        &xml,
        Sent::Safe,
        now,
        "n",
    );
    let shop = open_callback(&c, "shop", &q, &body, now * 1000)
        .unwrap()
        .event;
    let (q, body) = callback("AAAAA", MP_KEY, MP_APP, &xml, Sent::Safe, now, "n");
    let mini = open_callback(&c, "mini", &q, &body, now * 1000)
        .unwrap()
        .event;
    assert_ne!(shop.id, mini.id);
    assert_eq!(shop.app_id.as_deref(), Some("wxshop00000000000"));
}
