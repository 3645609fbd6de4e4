//! The normalized event: WeChat's XML turned into one JSON shape for every message and event.
//!
//! Envelope fields (`ToUserName`, `FromUserName`, `CreateTime`, `MsgType`, `Event`) move to the
//! top level; every other element goes into `data` by a generic rule, so a type nobody has seen
//! yet is still forwarded whole:
//! - names become snake_case (`Location_X` -> `location_x`, `MsgID` -> `msg_id`);
//! - an element with child elements becomes an object; one whose children are all list items
//!   (`<item>`, `<Item>`, `<List>`) becomes an array, also when WeChat sends a single item;
//! - a repeated element becomes an array;
//! - fields that WeChat documents as numbers become JSON numbers; everything else, 64-bit ids
//!   included, stays a string, exactly as sent.

mod fields;

use serde::Serialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::wire::xml::Element;
use fields::{ALWAYS_ARRAY, FLOAT_FIELDS, INTEGER_FIELDS, LIST_ITEM_NAMES};

/// The normalized event: the body of every forwarded POST.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `evt_` + 32 hex of SHA-256 over the account (and a platform merchant's AppID) and the
    /// whole authenticated message; stable across WeChat's retries; equals `webhook-id`.
    pub id: String,
    pub account: String,
    pub app_id: Option<String>,
    /// `MsgType`, lowercased.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Event`, lowercased, when `type` is `"event"`.
    pub event: Option<String>,
    /// `FromUserName`; `None` for the pushes that carry none (WeCom's `kf_msg_or_event`).
    pub from: Option<String>,
    pub to: String,
    /// `CreateTime`, Unix seconds.
    pub created_at: i64,
    pub data: Map<String, Value>,
    /// RFC 3339.
    pub received_at: String,
}

impl Event {
    /// Serializes to the bytes that are signed and forwarded.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings, integers and a `Value` map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What the pipeline knows besides the XML.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub account: &'a str,
    pub app_id: Option<&'a str>,
    /// For a third-party platform's merchant, its AppID: part of the event id.
    pub merchant: Option<&'a str>,
    /// The whole authenticated message (the plaintext once decrypted, else the body), which
    /// the event id is computed over.
    pub message: &'a [u8],
    pub received_at_ms: u64,
}

impl Context<'_> {
    /// The event id of this message.
    pub fn event_id(&self) -> String {
        event_id(self.account, self.merchant, self.message)
    }
}

/// Turns a parsed `<xml>` message into the normalized event.
pub fn normalize(root: &Element, ctx: &Context<'_>) -> Result<Event, Error> {
    let required = |name: &'static str| root.child_text(name).ok_or(Error::MissingElement(name));
    let to = required("ToUserName")?.trim().to_owned();
    // Some pushes come from no user (WeCom's 微信客服 `kf_msg_or_event`).
    let from = root
        .child_text("FromUserName")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    let created_at: i64 = required("CreateTime")?
        .trim()
        .parse()
        .map_err(|_| Error::MalformedElement("CreateTime"))?;
    let kind = required("MsgType")?.trim().to_lowercase();
    let event = if kind == "event" {
        Some(required("Event")?.trim().to_lowercase())
    } else {
        None
    };

    let envelope: &[&str] = if event.is_some() {
        &[
            "ToUserName",
            "FromUserName",
            "CreateTime",
            "MsgType",
            "Event",
        ]
    } else {
        &["ToUserName", "FromUserName", "CreateTime", "MsgType"]
    };
    let rest: Vec<&Element> = root
        .children
        .iter()
        .filter(|c| !envelope.contains(&c.name.as_str()))
        .collect();
    let data = object_of(&rest, &root.text, &root.attributes);

    Ok(Event {
        id: ctx.event_id(),
        account: ctx.account.to_owned(),
        app_id: ctx.app_id.map(str::to_owned),
        kind,
        event,
        from,
        to,
        created_at,
        data,
        received_at: crate::time::rfc3339_millis(ctx.received_at_ms),
    })
}

/// Turns a third-party platform's authorization push (`<xml><AppId/><CreateTime/><InfoType/>
/// ...</xml>`) into the event: `type` "component", `event` the InfoType lowercased, `app_id` the
/// authorizer's AppID (`AuthorizerAppid`, or `appid` in registration events) or null, `from` that
/// AppID or else the component's, `to` the component's, `data` every other element.
pub fn normalize_component(root: &Element, ctx: &Context<'_>) -> Result<Event, Error> {
    let required = |name: &'static str| root.child_text(name).ok_or(Error::MissingElement(name));
    let component = required("AppId")?.trim().to_owned();
    let info_type = required("InfoType")?.trim().to_lowercase();
    let created_at: i64 = required("CreateTime")?
        .trim()
        .parse()
        .map_err(|_| Error::MalformedElement("CreateTime"))?;
    let authorizer = root
        .child_text("AuthorizerAppid")
        .or_else(|| root.child_text("appid"))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let rest: Vec<&Element> = root
        .children
        .iter()
        .filter(|c| !["AppId", "CreateTime", "InfoType"].contains(&c.name.as_str()))
        .collect();
    let data = object_of(&rest, &root.text, &root.attributes);
    Ok(Event {
        id: ctx.event_id(),
        account: ctx.account.to_owned(),
        app_id: authorizer.clone(),
        kind: "component".to_owned(),
        event: Some(info_type),
        from: Some(authorizer.unwrap_or_else(|| component.clone())),
        to: component,
        created_at,
        data,
        received_at: crate::time::rfc3339_millis(ctx.received_at_ms),
    })
}

/// `evt_` and 32 lowercase hex digits.
pub fn is_event_id(id: &str) -> bool {
    id.strip_prefix("evt_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `evt_` + 32 hex characters of SHA-256 over the account, the merchant's AppID (a third-party
/// platform's authorizer; empty otherwise) and the whole authenticated message. Every field
/// counts, so two different callbacks never share an id, while a WeChat retry (the same
/// message, resent or re-encrypted with a new random prefix, nonce and timestamp) keeps it.
pub fn event_id(account: &str, merchant: Option<&str>, message: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(account.as_bytes())
        .chain_update(b"\n")
        .chain_update(merchant.unwrap_or("").as_bytes())
        .chain_update(b"\n")
        .chain_update(message)
        .finalize();
    let half = digest.get(..16).unwrap_or_default();
    format!("evt_{}", crate::wire::signature::hex(half))
}

fn object_of(
    children: &[&Element],
    text: &str,
    attributes: &[(String, String)],
) -> Map<String, Value> {
    let mut map = Map::new();
    let mut occurrences: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for child in children {
        *occurrences.entry(child.name.as_str()).or_default() += 1;
    }
    for (name, value) in attributes {
        map.insert(
            format!("@{}", snake_case(name)),
            Value::String(value.clone()),
        );
    }
    for child in children {
        let key = snake_case(&child.name);
        let value = value_of(child, &key);
        let as_list = LIST_ITEM_NAMES.contains(&child.name.as_str())
            || ALWAYS_ARRAY.contains(&key.as_str())
            || occurrences.get(child.name.as_str()).is_some_and(|&n| n > 1);
        if as_list {
            match map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                // An attribute of the same snake_case name got there first: keep both.
                other => *other = Value::Array(vec![other.take(), value]),
            }
        } else if let Some(existing) = map.get_mut(&key) {
            // Two names with one snake_case form (MsgId and MsgID): keep both.
            *existing = Value::Array(vec![existing.take(), value]);
        } else {
            map.insert(key, value);
        }
    }
    // Mixed content: text beside child elements is kept rather than dropped.
    if !text.trim().is_empty() {
        map.insert("$text".to_owned(), Value::String(text.to_owned()));
    }
    map
}

fn value_of(element: &Element, key: &str) -> Value {
    if element.children.is_empty() && element.attributes.is_empty() {
        return scalar(key, &element.text);
    }
    let children: Vec<&Element> = element.children.iter().collect();
    let all_items = !children.is_empty()
        && element.attributes.is_empty()
        && element.text.trim().is_empty()
        && children
            .iter()
            .all(|c| LIST_ITEM_NAMES.contains(&c.name.as_str()));
    if all_items {
        return Value::Array(
            children
                .iter()
                .map(|c| value_of(c, &snake_case(&c.name)))
                .collect(),
        );
    }
    Value::Object(object_of(&children, &element.text, &element.attributes))
}

fn scalar(key: &str, text: &str) -> Value {
    let trimmed = text.trim();
    if INTEGER_FIELDS.contains(&key) {
        if let Ok(n) = trimmed.parse::<i64>() {
            return Value::Number(n.into());
        }
    } else if FLOAT_FIELDS.contains(&key) {
        if let Some(n) = trimmed.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    // Not a documented number, or not parseable as one: the text exactly as sent.
    Value::String(text.to_owned())
}

/// `Location_X` -> `location_x`, `MsgID` -> `msg_id`, `HQMusicUrl` -> `hq_music_url`,
/// `PicMd5Sum` -> `pic_md5_sum`, `MediaId16K` -> `media_id16k`, `publish_id` -> `publish_id`.
pub fn snake_case(name: &str) -> String {
    // WeChat's names are ASCII: no allocation beyond the result (a profile of the 2.4 KB
    // message put 15% of the pipeline in this function when it collected chars first).
    if name.is_ascii() {
        let bytes = name.as_bytes();
        let mut out = String::with_capacity(name.len() + 4);
        for (i, &c) in bytes.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).and_then(|p| bytes.get(p)).copied();
                let next = bytes.get(i + 1).copied();
                if is_boundary(prev.map(char::from), next.map(char::from)) {
                    out.push('_');
                }
                out.push(char::from(c.to_ascii_lowercase()));
            } else {
                out.push(char::from(c));
            }
        }
        return out;
    }
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
            let next = chars.get(i + 1).copied();
            if is_boundary(prev, next) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a capital letter between `prev` and `next` starts a word.
fn is_boundary(prev: Option<char>, next: Option<char>) -> bool {
    match prev {
        None | Some('_') => false,
        Some(p) if p.is_ascii_lowercase() => true,
        // After a digit or an acronym, a capital starts a word only if a lowercase letter
        // follows: PicMd5Sum -> pic_md5_sum, MediaId16K -> media_id16k.
        Some(p) if p.is_ascii_digit() || p.is_ascii_uppercase() => {
            next.is_some_and(|n| n.is_ascii_lowercase())
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        for (from, to) in [
            ("Location_X", "location_x"),
            ("MsgID", "msg_id"),
            ("MsgId", "msg_id"),
            ("HQMusicUrl", "hq_music_url"),
            ("PicMd5Sum", "pic_md5_sum"),
            ("publish_id", "publish_id"),
            ("ScanCodeInfo", "scan_code_info"),
            ("AgentID", "agent_id"),
            ("bizmsgmenuid", "bizmsgmenuid"),
            ("SubscribeMsgPopupEvent", "subscribe_msg_popup_event"),
            ("URL", "url"),
            ("OpenID", "open_id"),
            ("Fee", "fee"),
            ("MediaId16K", "media_id16k"),
            ("Md5", "md5"),
            // Not ASCII (no WeChat name is): the same rule over chars.
            ("ÉtatID", "État_id"),
            ("名字Name", "名字name"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
        }
    }

    #[test]
    fn event_id_is_stable_and_scoped() {
        let a = event_id("default", None, b"<xml>1</xml>");
        assert_eq!(a, event_id("default", None, b"<xml>1</xml>"));
        assert_ne!(a, event_id("other", None, b"<xml>1</xml>"));
        assert_ne!(a, event_id("default", Some("wxmerchant"), b"<xml>1</xml>"));
        assert_ne!(a, event_id("default", None, b"<xml>2</xml>"));
        // The separators keep the parts apart.
        assert_ne!(event_id("a", Some("b"), b"c"), event_id("a", None, b"b\nc"));
        assert_eq!(a.len(), 36);
        assert!(crate::delivery::jobs::is_event_id(&a));
    }

    #[test]
    fn component_pushes() {
        let push = |message: &'static [u8]| {
            let ctx = Context {
                account: "platform",
                app_id: None,
                merchant: None,
                message,
                received_at_ms: 0,
            };
            normalize_component(&crate::wire::xml::parse(message).unwrap(), &ctx)
        };
        let e = push(b"<xml><AppId><![CDATA[wxcomponent]]></AppId><CreateTime>1413192760</CreateTime><InfoType><![CDATA[authorized]]></InfoType><AuthorizerAppid><![CDATA[wxmerchant]]></AuthorizerAppid><AuthorizationCode><![CDATA[queryauthcode@@@abc]]></AuthorizationCode><AuthorizationCodeExpiredTime>1413196360</AuthorizationCodeExpiredTime><PreAuthCode><![CDATA[preauthcode@@@x]]></PreAuthCode></xml>").unwrap();
        assert_eq!(
            (e.kind.as_str(), e.event.as_deref()),
            ("component", Some("authorized"))
        );
        assert_eq!(
            (e.app_id.as_deref(), e.from.as_deref(), e.to.as_str()),
            (Some("wxmerchant"), Some("wxmerchant"), "wxcomponent")
        );
        assert_eq!(e.created_at, 1_413_192_760);
        assert_eq!(e.data["authorization_code"], "queryauthcode@@@abc");
        assert!(!e.data.contains_key("app_id") && !e.data.contains_key("info_type"));
        let r = push(b"<xml><AppId>wxcomponent</AppId><CreateTime>1</CreateTime><InfoType>notify_third_fasteregister</InfoType><appid>wxnew</appid><status>0</status><auth_code>xxx</auth_code><msg>OK</msg><info><name>n</name></info></xml>").unwrap();
        assert_eq!(
            (r.app_id.as_deref(), r.event.as_deref()),
            (Some("wxnew"), Some("notify_third_fasteregister"))
        );
        assert_eq!(r.data["info"]["name"], "n");
        let o = push(b"<xml><AppId>wxcomponent</AppId><CreateTime>2</CreateTime><InfoType>wxa_nickname_audit</InfoType><ret>2</ret></xml>").unwrap();
        assert_eq!((o.app_id, o.from.as_deref()), (None, Some("wxcomponent")));
        assert_ne!(e.id, r.id);
        assert!(push(b"<xml><AppId>a</AppId><CreateTime>1</CreateTime></xml>").is_err());
    }

    #[test]
    fn numbers_only_where_documented() {
        assert_eq!(scalar("scale", "20"), Value::from(20));
        assert_eq!(
            scalar("location_x", "23.134521"),
            serde_json::json!(23.134521)
        );
        assert_eq!(
            scalar("msg_id", "6054768590064713728"),
            Value::from("6054768590064713728")
        );
        assert_eq!(scalar("scale", "n/a"), Value::from("n/a"));
        assert_eq!(scalar("latitude", "NaN"), Value::from("NaN"));
    }
}
