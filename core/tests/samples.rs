//! Every message and event type in `tests/samples/`: WeChat's XML in, the expected normalized
//! event out. Also checks that nothing in the XML is lost: every element's text shows up.

mod common;

use serde_json::Value;
use wechat_relay_core::event::{self, Context};
use wechat_relay_core::wire::xml;

fn normalize(xml_bytes: &[u8]) -> Value {
    let root = xml::parse(xml_bytes).unwrap();
    let ctx = Context {
        account: "default",
        app_id: Some("wxapp"),
        merchant: None,
        message: xml_bytes,
        received_at_ms: 1_700_000_000_000,
    };
    serde_json::from_slice(&event::normalize(&root, &ctx).unwrap().to_json()).unwrap()
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
        "wecom_change_contact_create_user",
        "wecom_change_contact_update_party",
        "wecom_change_contact_update_tag",
        "wecom_change_external_contact_add",
        "wecom_change_external_chat_update",
        "wecom_batch_job_result",
        "wecom_kf_msg_or_event",
        "wecom_sys_approval_change",
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
    fn leaves(e: &xml::Element<'_>, out: &mut Vec<String>) {
        if e.children.is_empty() {
            out.push(e.text.to_string());
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

/// Five contact changes of one HR sync in one second (FromUserName `sys`, only UserID differs),
/// and the OA's pushes whose difference is nested: each its own id. Field-based ids merged them.
#[test]
fn distinct_callbacks_never_share_an_id() {
    let contact = |user: &str| {
        normalize(format!("<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>{user}</UserID></xml>").as_bytes())["id"].clone()
    };
    let external = |external: &str| {
        normalize(format!("<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType><UserID>zhangsan</UserID><ExternalUserID>{external}</ExternalUserID></xml>").as_bytes())["id"].clone()
    };
    let sent = |msg: &str| {
        normalize(format!("<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>t</TemplateId><MsgID>{msg}</MsgID><ErrorCode>0</ErrorCode><ErrorStatus>success</ErrorStatus></List></SubscribeMsgSentEvent></xml>").as_bytes())["id"].clone()
    };
    let publish = |id: &str| {
        normalize(format!("<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>PUBLISHJOBFINISH</Event><PublishEventInfo><publish_id>{id}</publish_id><publish_status>0</publish_status></PublishEventInfo></xml>").as_bytes())["id"].clone()
    };
    let batch = |job: &str| {
        normalize(format!("<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>batch_job_result</Event><BatchJob><JobId>{job}</JobId><JobType>sync_user</JobType><ErrCode>0</ErrCode><ErrMsg>ok</ErrMsg></BatchJob></xml>").as_bytes())["id"].clone()
    };
    let mut ids = Vec::new();
    for f in [contact, external, sent, publish, batch] {
        for n in ["a1", "a2", "a3", "a4", "a5"] {
            assert_eq!(f(n), f(n), "a resent callback keeps its id");
            ids.push(f(n));
        }
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "every callback its own id");
}

/// One changed byte anywhere in the message is another event; the account is part of the id.
#[test]
fn ids_follow_every_byte_of_the_message() {
    let base = b"<xml><ToUserName>t</ToUserName><FromUserName>u1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>42</MsgId></xml>";
    let id = |account: &str, body: &[u8]| {
        let ctx = Context {
            account,
            app_id: None,
            merchant: None,
            message: body,
            received_at_ms: 0,
        };
        event::normalize(&xml::parse(body).unwrap(), &ctx)
            .unwrap()
            .id
    };
    let first = id("default", base);
    assert_eq!(first, id("default", base));
    assert_ne!(first, id("shop", base));
    let mut seen = std::collections::HashSet::new();
    for i in 0..base.len() {
        let mut mutated = base.to_vec();
        mutated[i] ^= 0x01;
        if let Ok(root) = xml::parse(&mutated) {
            let ctx = Context {
                account: "default",
                app_id: None,
                merchant: None,
                message: &mutated,
                received_at_ms: 0,
            };
            if let Ok(e) = event::normalize(&root, &ctx) {
                assert_ne!(e.id, first, "byte {i} changed, id kept");
                assert!(seen.insert(e.id), "byte {i}: id collides");
            }
        }
    }
    assert!(seen.len() > 10, "the mutations exercised normalize");
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
        merchant: None,
        message: b"",
        received_at_ms: 0,
    };
    // No FromUserName (WeCom's kf_msg_or_event): forwarded with `from` null.
    assert_eq!(event::normalize(&root, &ctx).unwrap().from, None);
    let root = xml::parse(
        b"<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    )
    .unwrap();
    assert_eq!(
        event::normalize(&root, &ctx).unwrap_err().to_string(),
        "missing element <ToUserName>"
    );
    let root = xml::parse(b"<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>").unwrap();
    assert_eq!(event::normalize(&root, &ctx).unwrap_err().status(), 400);
    let root = xml::parse(b"<xml><ToUserName>t</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>").unwrap();
    assert_eq!(
        event::normalize(&root, &ctx).unwrap_err().to_string(),
        "missing element <Event>"
    );
}
