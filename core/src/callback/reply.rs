//! Passive replies: what a reply receiver (`REPLY_URL`) may answer, the XML (or JSON) WeChat
//! accepts as the answer to a callback, the encrypted envelope that safe mode requires around
//! it, and the customer-service message that carries a reply that came too late.

use serde_json::{json, Value};

use crate::wire::crypto::{self, AesKey};
use crate::wire::signature;

/// Largest reply receiver answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// WeChat shows at most 8 articles in a news reply.
pub const MAX_ARTICLES: usize = 8;

/// One news article of a `news` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub title: String,
    pub description: String,
    pub pic_url: String,
    pub url: String,
}

/// The passive reply kinds an Official Account may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        title: String,
        description: String,
    },
    Music {
        title: String,
        description: String,
        music_url: String,
        hq_music_url: String,
        thumb_media_id: String,
    },
    News {
        articles: Vec<Article>,
    },
    /// Hand the conversation to customer service (optionally one agent).
    TransferCustomerService {
        kf_account: Option<String>,
    },
}

/// Writes `<Name><![CDATA[value]]></Name>`, splitting any `]]>` inside the value.
fn cdata(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("><![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]></");
    out.push_str(name);
    out.push('>');
}

/// Why a reply receiver's answer is not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn field<'a>(
    answer: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ReplyError> {
    match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ReplyError(format!("\"{name}\" must be a string"))),
    }
}

fn required<'a>(
    answer: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ReplyError> {
    field(answer, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReplyError(format!("\"{name}\" is missing or empty")))
}

fn optional(answer: &serde_json::Map<String, Value>, name: &str) -> Result<String, ReplyError> {
    Ok(field(answer, name)?.unwrap_or_default().to_owned())
}

impl Reply {
    /// Reads a reply receiver's JSON answer: `None` for an empty answer (no reply), an error for
    /// anything that is not one of the reply shapes.
    pub fn from_answer(body: &[u8]) -> Result<Option<Reply>, ReplyError> {
        if body.len() > MAX_ANSWER_BYTES {
            return Err(ReplyError(format!(
                "answer larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|_| ReplyError("answer is not JSON".into()))?;
        let Value::Object(a) = value else {
            return Err(ReplyError("answer must be a JSON object".into()));
        };
        let reply = match required(&a, "type")? {
            "text" => Reply::Text {
                content: required(&a, "content")?.to_owned(),
            },
            "image" => Reply::Image {
                media_id: required(&a, "media_id")?.to_owned(),
            },
            "voice" => Reply::Voice {
                media_id: required(&a, "media_id")?.to_owned(),
            },
            "video" => Reply::Video {
                media_id: required(&a, "media_id")?.to_owned(),
                title: optional(&a, "title")?,
                description: optional(&a, "description")?,
            },
            "music" => Reply::Music {
                title: optional(&a, "title")?,
                description: optional(&a, "description")?,
                music_url: optional(&a, "music_url")?,
                hq_music_url: optional(&a, "hq_music_url")?,
                thumb_media_id: required(&a, "thumb_media_id")?.to_owned(),
            },
            "news" => {
                let Some(Value::Array(items)) = a.get("articles") else {
                    return Err(ReplyError("\"articles\" must be a list".into()));
                };
                if items.is_empty() || items.len() > MAX_ARTICLES {
                    return Err(ReplyError(format!(
                        "\"articles\" must hold 1 to {MAX_ARTICLES} articles"
                    )));
                }
                let articles = items
                    .iter()
                    .map(|item| {
                        let Value::Object(item) = item else {
                            return Err(ReplyError("every article must be an object".into()));
                        };
                        Ok(Article {
                            title: required(item, "title")?.to_owned(),
                            description: optional(item, "description")?,
                            pic_url: optional(item, "pic_url")?,
                            url: optional(item, "url")?,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Reply::News { articles }
            }
            "transfer_customer_service" => Reply::TransferCustomerService {
                kf_account: field(&a, "kf_account")?
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            },
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ReplyError(format!("unknown reply type {shown:?}")));
            }
        };
        Ok(Some(reply))
    }

    /// The body of `POST /cgi-bin/message/custom/send` that gives `openid` the same content, for
    /// a reply that came too late; `None` for a hand-over to customer service, which has none.
    /// A news message carries one article (the API's limit).
    pub fn custom_message(&self, openid: &str) -> Option<Value> {
        let (msgtype, content) = match self {
            Reply::Text { content } => ("text", json!({ "content": content })),
            Reply::Image { media_id } => ("image", json!({ "media_id": media_id })),
            Reply::Voice { media_id } => ("voice", json!({ "media_id": media_id })),
            Reply::Video {
                media_id,
                title,
                description,
            } => (
                "video",
                json!({ "media_id": media_id, "title": title, "description": description }),
            ),
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => (
                "music",
                json!({
                    "title": title, "description": description, "musicurl": music_url,
                    "hqmusicurl": hq_music_url, "thumb_media_id": thumb_media_id
                }),
            ),
            Reply::News { articles } => {
                let first = articles.first()?;
                (
                    "news",
                    json!({ "articles": [{
                        "title": first.title, "description": first.description,
                        "url": first.url, "picurl": first.pic_url
                    }] }),
                )
            }
            Reply::TransferCustomerService { .. } => return None,
        };
        let mut message = serde_json::Map::new();
        message.insert("touser".into(), openid.into());
        message.insert("msgtype".into(), msgtype.into());
        message.insert(msgtype.into(), content);
        Some(Value::Object(message))
    }

    /// The reply in WeChat's JSON message format (for accounts that push JSON).
    pub fn to_json(&self, to: &str, from: &str, create_time: i64) -> String {
        let mut m = serde_json::Map::new();
        m.insert("ToUserName".into(), to.into());
        m.insert("FromUserName".into(), from.into());
        m.insert("CreateTime".into(), create_time.into());
        m.insert("MsgType".into(), self.msg_type().into());
        match self {
            Reply::Text { content } => {
                m.insert("Content".into(), content.as_str().into());
            }
            Reply::Image { media_id } => {
                m.insert("Image".into(), json!({ "MediaId": media_id }));
            }
            Reply::Voice { media_id } => {
                m.insert("Voice".into(), json!({ "MediaId": media_id }));
            }
            Reply::Video {
                media_id,
                title,
                description,
            } => {
                m.insert(
                    "Video".into(),
                    json!({ "MediaId": media_id, "Title": title, "Description": description }),
                );
            }
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => {
                m.insert(
                    "Music".into(),
                    json!({
                        "Title": title, "Description": description, "MusicUrl": music_url,
                        "HQMusicUrl": hq_music_url, "ThumbMediaId": thumb_media_id
                    }),
                );
            }
            Reply::News { articles } => {
                m.insert("ArticleCount".into(), articles.len().into());
                let items: Vec<Value> = articles
                    .iter()
                    .map(|a| json!({ "Title": a.title, "Description": a.description, "PicUrl": a.pic_url, "Url": a.url }))
                    .collect();
                m.insert("Articles".into(), Value::Array(items));
            }
            Reply::TransferCustomerService { kf_account } => {
                if let Some(k) = kf_account {
                    m.insert("TransInfo".into(), json!({ "KfAccount": k }));
                }
            }
        }
        Value::Object(m).to_string()
    }

    fn msg_type(&self) -> &'static str {
        match self {
            Reply::Text { .. } => "text",
            Reply::Image { .. } => "image",
            Reply::Voice { .. } => "voice",
            Reply::Video { .. } => "video",
            Reply::Music { .. } => "music",
            Reply::News { .. } => "news",
            Reply::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }

    /// The reply XML, addressed back to the sender of the callback (`to` = its FromUserName,
    /// `from` = its ToUserName).
    pub fn to_xml(&self, to: &str, from: &str, create_time: i64) -> String {
        let mut x = String::with_capacity(256);
        x.push_str("<xml>");
        cdata(&mut x, "ToUserName", to);
        cdata(&mut x, "FromUserName", from);
        x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
        cdata(&mut x, "MsgType", self.msg_type());
        match self {
            Reply::Text { content } => cdata(&mut x, "Content", content),
            Reply::Image { media_id } => {
                x.push_str("<Image>");
                cdata(&mut x, "MediaId", media_id);
                x.push_str("</Image>");
            }
            Reply::Voice { media_id } => {
                x.push_str("<Voice>");
                cdata(&mut x, "MediaId", media_id);
                x.push_str("</Voice>");
            }
            Reply::Video {
                media_id,
                title,
                description,
            } => {
                x.push_str("<Video>");
                cdata(&mut x, "MediaId", media_id);
                cdata(&mut x, "Title", title);
                cdata(&mut x, "Description", description);
                x.push_str("</Video>");
            }
            Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => {
                x.push_str("<Music>");
                cdata(&mut x, "Title", title);
                cdata(&mut x, "Description", description);
                cdata(&mut x, "MusicUrl", music_url);
                cdata(&mut x, "HQMusicUrl", hq_music_url);
                cdata(&mut x, "ThumbMediaId", thumb_media_id);
                x.push_str("</Music>");
            }
            Reply::News { articles } => {
                x.push_str(&format!(
                    "<ArticleCount>{}</ArticleCount><Articles>",
                    articles.len()
                ));
                for a in articles {
                    x.push_str("<item>");
                    cdata(&mut x, "Title", &a.title);
                    cdata(&mut x, "Description", &a.description);
                    cdata(&mut x, "PicUrl", &a.pic_url);
                    cdata(&mut x, "Url", &a.url);
                    x.push_str("</item>");
                }
                x.push_str("</Articles>");
            }
            Reply::TransferCustomerService { kf_account } => {
                if let Some(account) = kf_account {
                    x.push_str("<TransInfo>");
                    cdata(&mut x, "KfAccount", account);
                    x.push_str("</TransInfo>");
                }
            }
        }
        x.push_str("</xml>");
        x
    }
}

/// The fields of a safe-mode envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
}

/// Encrypts `message` and signs it: the safe-mode envelope WeChat expects around a reply.
pub fn seal(
    key: &AesKey,
    token: &str,
    app_id: &str,
    random: [u8; 16],
    timestamp: &str,
    nonce: &str,
    message: &[u8],
) -> Envelope {
    let encrypt = crypto::encrypt(key, random, message, app_id);
    let msg_signature = signature::sha1_sorted(&[token, timestamp, nonce, &encrypt]);
    Envelope {
        encrypt,
        msg_signature,
        timestamp: timestamp.to_owned(),
        nonce: nonce.to_owned(),
    }
}

impl Envelope {
    /// `{"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}`, for accounts that push JSON.
    pub fn to_json(&self) -> String {
        json!({
            "Encrypt": self.encrypt,
            "MsgSignature": self.msg_signature,
            "TimeStamp": self.timestamp,
            "Nonce": self.nonce,
        })
        .to_string()
    }

    /// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(self.encrypt.len() + 200);
        x.push_str("<xml>");
        cdata(&mut x, "Encrypt", &self.encrypt);
        cdata(&mut x, "MsgSignature", &self.msg_signature);
        x.push_str(&format!("<TimeStamp>{}</TimeStamp>", self.timestamp));
        cdata(&mut x, "Nonce", &self.nonce);
        x.push_str("</xml>");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xml;

    #[test]
    fn text_reply_survives_cdata_terminators() {
        let r = Reply::Text {
            content: "a]]>b <c> 你好".into(),
        };
        let xml = r.to_xml("o_user", "gh_1", 7);
        let parsed = xml::parse(xml.as_bytes()).unwrap();
        assert_eq!(parsed.child_text("Content"), Some("a]]>b <c> 你好"));
        assert_eq!(parsed.child_text("ToUserName"), Some("o_user"));
        assert_eq!(parsed.child_text("MsgType"), Some("text"));
    }

    #[test]
    fn news_reply_lists_articles() {
        let a = Article {
            title: "t".into(),
            description: "d".into(),
            pic_url: "p".into(),
            url: "u".into(),
        };
        let r = Reply::News {
            articles: vec![a.clone(), a],
        };
        let xml = r.to_xml("o", "gh", 1);
        let parsed = xml::parse(xml.as_bytes()).unwrap();
        assert_eq!(parsed.child_text("ArticleCount"), Some("2"));
        assert_eq!(parsed.child("Articles").unwrap().children.len(), 2);
    }

    #[test]
    fn sealed_envelope_opens_with_the_same_key() {
        let key = AesKey::from_bytes([9; 32]);
        let env = seal(&key, "tok", "wxid", [1; 16], "100", "n", b"<xml/>");
        let xml = env.to_xml();
        let parsed = xml::parse(xml.as_bytes()).unwrap();
        let encrypt = parsed.child_text("Encrypt").unwrap();
        assert!(signature::verify(
            parsed.child_text("MsgSignature").unwrap(),
            &["tok", "100", "n", encrypt]
        ));
        assert_eq!(
            crypto::decrypt(&key, encrypt, "wxid").unwrap().message,
            b"<xml/>"
        );
    }

    #[test]
    fn every_answer_shape_becomes_its_reply() {
        let parse = |v: Value| Reply::from_answer(v.to_string().as_bytes());
        assert_eq!(
            parse(json!({"type": "text", "content": "你好 😀"})),
            Ok(Some(Reply::Text {
                content: "你好 😀".into()
            }))
        );
        assert_eq!(
            parse(json!({"type": "image", "media_id": "M"})),
            Ok(Some(Reply::Image {
                media_id: "M".into()
            }))
        );
        assert_eq!(
            parse(json!({"type": "voice", "media_id": "M"})),
            Ok(Some(Reply::Voice {
                media_id: "M".into()
            }))
        );
        assert_eq!(
            parse(json!({"type": "video", "media_id": "M", "title": "T"})),
            Ok(Some(Reply::Video {
                media_id: "M".into(),
                title: "T".into(),
                description: String::new()
            }))
        );
        assert!(matches!(
            parse(json!({"type": "music", "title": "t", "thumb_media_id": "th"})),
            Ok(Some(Reply::Music { .. }))
        ));
        let news = parse(
            json!({"type": "news", "articles": [{"title": "a", "url": "u"}, {"title": "b"}]}),
        )
        .unwrap()
        .unwrap();
        match &news {
            Reply::News { articles } => assert_eq!(
                articles
                    .iter()
                    .map(|a| a.title.as_str())
                    .collect::<Vec<_>>(),
                ["a", "b"]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(json!({"type": "transfer_customer_service"})),
            Ok(Some(Reply::TransferCustomerService { kf_account: None }))
        );
        assert_eq!(
            parse(json!({"type": "transfer_customer_service", "kf_account": "kf@x"})),
            Ok(Some(Reply::TransferCustomerService {
                kf_account: Some("kf@x".into())
            }))
        );
        assert_eq!(Reply::from_answer(b""), Ok(None));
        assert_eq!(Reply::from_answer(b" \n"), Ok(None));
    }

    #[test]
    fn hostile_answers_are_errors_never_panics() {
        for bad in [
            &b"null"[..],
            b"[]",
            b"\"text\"",
            b"{",
            b"{}",
            br#"{"type": 5}"#,
            br#"{"type": "text"}"#,
            br#"{"type": "text", "content": ""}"#,
            br#"{"type": "text", "content": 5}"#,
            br#"{"type": "image"}"#,
            br#"{"type": "music", "title": "t"}"#,
            br#"{"type": "news", "articles": []}"#,
            br#"{"type": "news", "articles": "x"}"#,
            br#"{"type": "news", "articles": [5]}"#,
            br#"{"type": "news", "articles": [{"title": 1}]}"#,
            br#"{"type": "news", "articles": [{}]}"#,
            br#"{"type": "location"}"#,
            br#"{"type": "transfer_customer_service", "kf_account": []}"#,
            b"\xff\xfe",
        ] {
            assert!(
                Reply::from_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let nine: Vec<Value> = (0..9).map(|i| json!({"title": i.to_string()})).collect();
        assert!(Reply::from_answer(
            json!({"type": "news", "articles": nine})
                .to_string()
                .as_bytes()
        )
        .is_err());
        let huge = format!(
            r#"{{"type":"text","content":"{}"}}"#,
            "a".repeat(MAX_ANSWER_BYTES)
        );
        assert!(Reply::from_answer(huge.as_bytes())
            .unwrap_err()
            .0
            .contains("larger"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(Reply::from_answer(deep.as_bytes()).is_err());
    }

    #[test]
    fn late_replies_become_customer_service_messages() {
        let text = Reply::Text {
            content: "hi".into(),
        }
        .custom_message("o_1")
        .unwrap();
        assert_eq!(
            text,
            json!({"touser": "o_1", "msgtype": "text", "text": {"content": "hi"}})
        );
        let a = |t: &str| Article {
            title: t.into(),
            description: "d".into(),
            pic_url: "p".into(),
            url: "u".into(),
        };
        let news = Reply::News {
            articles: vec![a("first"), a("second")],
        }
        .custom_message("o_1")
        .unwrap();
        assert_eq!(
            news["news"]["articles"],
            json!([{"title": "first", "description": "d", "url": "u", "picurl": "p"}])
        );
        let music = Reply::Music {
            title: "t".into(),
            description: "d".into(),
            music_url: "m".into(),
            hq_music_url: "h".into(),
            thumb_media_id: "th".into(),
        };
        assert_eq!(music.custom_message("o").unwrap()["music"]["musicurl"], "m");
        assert_eq!(
            Reply::Image {
                media_id: "M".into()
            }
            .custom_message("o")
            .unwrap()["image"]["media_id"],
            "M"
        );
        assert_eq!(
            Reply::TransferCustomerService { kf_account: None }.custom_message("o"),
            None
        );
    }

    #[test]
    fn json_replies_for_json_accounts() {
        let r: Value = serde_json::from_str(
            &Reply::Text {
                content: "x".into(),
            }
            .to_json("o", "gh", 5),
        )
        .unwrap();
        assert_eq!(
            r,
            json!({"ToUserName": "o", "FromUserName": "gh", "CreateTime": 5, "MsgType": "text", "Content": "x"})
        );
        let env = seal(
            &AesKey::from_bytes([1; 32]),
            "t",
            "wx",
            [2; 16],
            "9",
            "n",
            b"{}",
        );
        let v: Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["TimeStamp"], "9");
        assert!(v["Encrypt"].as_str().is_some());
    }
}
