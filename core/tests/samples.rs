//! Every message and event type in `tests/samples/`: WeChat's XML in, the expected normalized
//! event out. Also checks that nothing in the XML is lost: every element's text shows up.

mod common;

use serde_json::Value;
use wechat_relay_core::event::{self, Context};
use wechat_relay_core::xml;

fn normalize(xml_bytes: &[u8]) -> Value {
    let root = xml::parse(xml_bytes).unwrap();
    let ctx = Context {
        account: "default",
        app_id: Some("wxapp"),
        received_at_ms: 1_700_000_000_000,
    };
    serde_json::to_value(event::normalize(&root, &ctx).unwrap()).unwrap()
}

#[test]
fn every_sample_normalizes_as_expected() {
    let samples = common::samples();
    assert!(samples.len() >= 40, "samples missing: {}", samples.len());
    for (name, xml_bytes, expected) in samples {
        let got = normalize(&xml_bytes);
        for key in ["type", "event", "from", "to", "created_at", "data"] {
            assert_eq!(got[key], expected[key], "{name}: {key}\n got: {}", got[key]);
        }
        assert_eq!(got["account"], "default");
        assert_eq!(got["app_id"], "wxapp");
        assert_eq!(got["received_at"], "2023-11-14T22:13:20.000Z");
        assert!(got["id"].as_str().unwrap().starts_with("evt_"), "{name}");
    }
}

#[test]
fn every_catalogued_type_has_a_sample() {
    let names: Vec<String> = common::samples().into_iter().map(|(n, _, _)| n).collect();
    for required in [
        "text",
        "image",
        "voice",
        "voice_recognition",
        "video",
        "shortvideo",
        "location",
        "link",
        "event_subscribe",
        "event_subscribe_qrscene",
        "event_unsubscribe",
        "event_scan",
        "event_location",
        "event_click",
        "event_view",
        "event_scancode_push",
        "event_scancode_waitmsg",
        "event_pic_sysphoto",
        "event_pic_photo_or_album",
        "event_pic_weixin",
        "event_location_select",
        "event_templatesendjobfinish",
        "event_masssendjobfinish",
        "event_view_miniprogram",
        "event_subscribe_msg_popup_event",
        "event_subscribe_msg_change_event",
        "event_subscribe_msg_sent_event",
        "event_publishjobfinish",
        "event_kf_create_session",
        "event_unknown_future",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "no sample for {required}"
        );
    }
}

/// Every leaf text of the XML appears somewhere in the event.
#[test]
fn nothing_is_lost() {
    fn leaves(e: &xml::Element, out: &mut Vec<String>) {
        if e.children.is_empty() {
            out.push(e.text.clone());
        }
        for c in &e.children {
            leaves(c, out);
        }
    }
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    for (name, xml_bytes, _) in common::samples() {
        let root = xml::parse(&xml_bytes).unwrap();
        let mut want = Vec::new();
        leaves(&root, &mut want);
        let mut have = Vec::new();
        strings(&normalize(&xml_bytes), &mut have);
        for w in want {
            let found = have.iter().any(|h| h == &w)
                || have.iter().any(|h| h.eq_ignore_ascii_case(&w))
                || w.trim()
                    .parse::<f64>()
                    .is_ok_and(|x| have.iter().any(|h| h.parse::<f64>() == Ok(x)));
            assert!(found, "{name}: {w:?} lost");
        }
    }
}

#[test]
fn retries_share_an_id_and_different_callbacks_do_not() {
    let a = normalize(b"<xml><ToUserName>t</ToUserName><FromUserName>u1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>42</MsgId></xml>");
    let again = normalize(b"<xml><ToUserName>t</ToUserName><FromUserName>u1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>42</MsgId></xml>");
    let other_user = normalize(b"<xml><ToUserName>t</ToUserName><FromUserName>u2</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>42</MsgId></xml>");
    assert_eq!(a["id"], again["id"]);
    assert_ne!(a["id"], other_user["id"]);

    let ev = |key: &str, time: u32| {
        normalize(format!("<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>{time}</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>{key}</EventKey></xml>").as_bytes())["id"].clone()
    };
    assert_eq!(ev("A", 5), ev("A", 5));
    assert_ne!(ev("A", 5), ev("B", 5));
    assert_ne!(ev("A", 5), ev("A", 6));
    let job = |msg: u32| {
        normalize(format!("<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>{msg}</MsgID><Status>success</Status></xml>").as_bytes())["id"].clone()
    };
    assert_ne!(job(1), job(2));
}

#[test]
fn envelope_errors() {
    let root = xml::parse(
        b"<xml><ToUserName>t</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    )
    .unwrap();
    let ctx = Context {
        account: "default",
        app_id: None,
        received_at_ms: 0,
    };
    assert_eq!(
        event::normalize(&root, &ctx).unwrap_err().to_string(),
        "missing element <FromUserName>"
    );
    let root = xml::parse(b"<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>").unwrap();
    assert_eq!(event::normalize(&root, &ctx).unwrap_err().status(), 400);
    let root = xml::parse(b"<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>").unwrap();
    assert_eq!(
        event::normalize(&root, &ctx).unwrap_err().to_string(),
        "missing element <Event>"
    );
}
