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
mod json;
mod names;

pub use names::snake_case;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::wire::xml::Element;

/// The normalized event: the body of every forwarded POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_` + 32 hex of SHA-256 over the account (and a platform merchant's AppID) and the
    /// whole authenticated message; stable across WeChat's retries; equals `webhook-id`.
    pub id: String,
    pub account: String,
    pub app_id: Option<String>,
    /// `MsgType`, lowercased (`type` in the JSON).
    pub kind: String,
    /// `Event`, lowercased, when `type` is `"event"`.
    pub event: Option<String>,
    /// `FromUserName`; `None` for the pushes that carry none (WeCom's `kf_msg_or_event`).
    pub from: Option<String>,
    pub to: String,
    /// `CreateTime`, Unix seconds.
    pub created_at: i64,
    pub data: Data,
    /// RFC 3339.
    pub received_at: String,
}

impl Event {
    /// Serializes to the bytes that are signed and forwarded: the fields in the order of
    /// `schema/event.schema.json`, `data` spliced in as written at normalization.
    pub fn to_json(&self) -> Vec<u8> {
        fn field<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
            out.push(if out.is_empty() { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            // Strings, integers and options of them into a Vec: this cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        }
        let mut out = Vec::with_capacity(self.data.as_bytes().len() + 320);
        field(&mut out, "id", &self.id);
        field(&mut out, "account", &self.account);
        field(&mut out, "app_id", &self.app_id);
        field(&mut out, "type", &self.kind);
        field(&mut out, "event", &self.event);
        field(&mut out, "from", &self.from);
        field(&mut out, "to", &self.to);
        field(&mut out, "created_at", &self.created_at);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        field(&mut out, "received_at", &self.received_at);
        out.push(b'}');
        out
    }
}

/// The event's `data`: a JSON object, written once from the element tree at normalization.
/// Code that reads a field parses it ([`Data::get`]); forwarding splices the text as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data(Vec<u8>);

impl Default for Data {
    fn default() -> Self {
        Data(b"{}".to_vec())
    }
}

impl Data {
    /// The JSON text of the object (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The object, parsed.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_slice(&self.0).unwrap_or_default()
    }

    /// One top-level field, parsed.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }

    /// `data` of `root`: its children whose names are not in `skip`, with its text and
    /// attributes.
    fn of(root: &Element<'_>, skip: &[&str]) -> Data {
        let mut out = Vec::with_capacity(root.text.len() + 64 * root.children.len() + 2);
        json::write_object(
            &mut out,
            root.children.iter().filter(|c| !skip.contains(&&*c.name)),
            &root.text,
            &root.attributes,
        );
        // Written from `&str` pieces and JSON punctuation only, so it is UTF-8; kept as bytes
        // rather than checked again (16 KB of Chinese text costs microseconds to validate).
        Data(out)
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
pub fn normalize(root: &Element<'_>, ctx: &Context<'_>) -> Result<Event, Error> {
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
    let data = Data::of(root, envelope);

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
pub fn normalize_component(root: &Element<'_>, ctx: &Context<'_>) -> Result<Event, Error> {
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
    let data = Data::of(root, &["AppId", "CreateTime", "InfoType"]);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let data = e.data.to_map();
        assert_eq!(data["authorization_code"], "queryauthcode@@@abc");
        assert!(!data.contains_key("app_id") && !data.contains_key("info_type"));
        let r = push(b"<xml><AppId>wxcomponent</AppId><CreateTime>1</CreateTime><InfoType>notify_third_fasteregister</InfoType><appid>wxnew</appid><status>0</status><auth_code>xxx</auth_code><msg>OK</msg><info><name>n</name></info></xml>").unwrap();
        assert_eq!(
            (r.app_id.as_deref(), r.event.as_deref()),
            (Some("wxnew"), Some("notify_third_fasteregister"))
        );
        assert_eq!(r.data.to_map()["info"]["name"], "n");
        let o = push(b"<xml><AppId>wxcomponent</AppId><CreateTime>2</CreateTime><InfoType>wxa_nickname_audit</InfoType><ret>2</ret></xml>").unwrap();
        assert_eq!((o.app_id, o.from.as_deref()), (None, Some("wxcomponent")));
        assert_ne!(e.id, r.id);
        assert!(push(b"<xml><AppId>a</AppId><CreateTime>1</CreateTime></xml>").is_err());
    }

    #[test]
    fn numbers_only_where_documented() {
        let data =
            |xml: &str| Data::of(&crate::wire::xml::parse(xml.as_bytes()).unwrap(), &[]).to_map();
        let d = data("<xml><Scale>20</Scale><Location_X>23.134521</Location_X><MsgId>6054768590064713728</MsgId><Latitude>NaN</Latitude><Count>n/a</Count></xml>");
        assert_eq!(d["scale"], Value::from(20));
        assert_eq!(d["location_x"], serde_json::json!(23.134521));
        assert_eq!(d["msg_id"], Value::from("6054768590064713728"));
        assert_eq!(d["latitude"], Value::from("NaN"));
        assert_eq!(d["count"], Value::from("n/a"));
    }

    #[test]
    fn the_json_has_the_schema_order_and_data_spliced() {
        let root = crate::wire::xml::parse(b"<xml><ToUserName>gh</ToUserName><CreateTime>3</CreateTime><MsgType>text</MsgType><Content>\"hi\"</Content></xml>").unwrap();
        let ctx = Context {
            account: "default",
            app_id: None,
            merchant: None,
            message: b"m",
            received_at_ms: 0,
        };
        let e = normalize(&root, &ctx).unwrap();
        let json = String::from_utf8(e.to_json()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"id":"{}","account":"default","app_id":null,"type":"text","event":null,"from":null,"to":"gh","created_at":3,"data":{{"content":"\"hi\""}},"received_at":"1970-01-01T00:00:00.000Z"}}"#,
                e.id
            )
        );
    }
}
