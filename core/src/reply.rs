//! Passive replies: the XML WeChat accepts as the answer to a callback, and the encrypted
//! envelope that safe mode requires around it (and around any callback built for tests).

use crate::crypto::{self, AesKey};
use crate::signature;

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

impl Reply {
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
    use crate::xml;

    #[test]
    fn text_reply_survives_cdata_terminators() {
        let r = Reply::Text {
            content: "a]]>b <c> 你好".into(),
        };
        let parsed = xml::parse(r.to_xml("o_user", "gh_1", 7).as_bytes()).unwrap();
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
        let parsed = xml::parse(r.to_xml("o", "gh", 1).as_bytes()).unwrap();
        assert_eq!(parsed.child_text("ArticleCount"), Some("2"));
        assert_eq!(parsed.child("Articles").unwrap().children.len(), 2);
    }

    #[test]
    fn sealed_envelope_opens_with_the_same_key() {
        let key = AesKey::from_bytes([9; 32]);
        let env = seal(&key, "tok", "wxid", [1; 16], "100", "n", b"<xml/>");
        let parsed = xml::parse(env.to_xml().as_bytes()).unwrap();
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
}
