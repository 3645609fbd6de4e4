//! WeChat's side of a callback.

/// How WeChat sends a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Plain,
    Safe,
    Compatible,
}

/// A callback as WeChat would POST it for an account with these secrets: `(query, body)`.
/// `message` is XML or WeChat's JSON format.
pub fn callback(
    token: &str,
    encoding_aes_key: &str,
    receive_id: &str,
    message: &str,
    mode: Sent,
    timestamp: u64,
    nonce: &str,
) -> (crate::callback::Query, Vec<u8>) {
    use crate::wire::signature::sha1_sorted;
    let ts = timestamp.to_string();
    let mut pairs = vec![
        ("signature".to_owned(), sha1_sorted(&[token, &ts, nonce])),
        ("timestamp".to_owned(), ts.clone()),
        ("nonce".to_owned(), nonce.to_owned()),
        ("openid".to_owned(), "o_user".to_owned()),
    ];
    if mode == Sent::Plain {
        return (
            crate::callback::Query::from_pairs(pairs),
            message.as_bytes().to_vec(),
        );
    }
    let key = crate::wire::crypto::AesKey::from_encoding_aes_key(encoding_aes_key).unwrap();
    let encrypted =
        crate::wire::crypto::encrypt(&key, *b"0123456789abcdef", message.as_bytes(), receive_id);
    pairs.push(("encrypt_type".to_owned(), "aes".to_owned()));
    pairs.push((
        "msg_signature".to_owned(),
        sha1_sorted(&[token, &ts, nonce, &encrypted]),
    ));
    // JSON when it is JSON (a hostile test's garbage goes in the XML envelope).
    let json = message.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(message).is_ok_and(|v| v.is_object());
    let body = match (json, mode) {
        (true, Sent::Compatible) => {
            let mut v: serde_json::Value = serde_json::from_str(message).unwrap();
            v["Encrypt"] = encrypted.into();
            v.to_string()
        }
        (true, _) => {
            let v: serde_json::Value = serde_json::from_str(message).unwrap();
            serde_json::json!({"ToUserName": v["ToUserName"], "Encrypt": encrypted}).to_string()
        }
        (false, Sent::Compatible) => message.replace("</xml>", &format!("<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")),
        (false, _) => format!("<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"),
    };
    (crate::callback::Query::from_pairs(pairs), body.into_bytes())
}

/// A text message from `from` with this content and MsgId.
pub fn text_message(from: &str, content: &str, msg_id: u64, create_time: u64) -> String {
    format!("<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")
}

/// A decrypt case of `tests/vectors/official.json` whose name contains `name_part`.
pub fn official_vector(name_part: &str) -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/official.json");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["decrypt"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(name_part))
        .unwrap_or_else(|| panic!("no vector {name_part}"))
        .clone()
}

/// What WeChat does with a safe-mode reply: checks its MsgSignature, decrypts it, checks the
/// receive id, parses the message.
pub fn open_reply(
    body: &str,
    token: &str,
    encoding_aes_key: &str,
    receive_id: &str,
) -> crate::wire::xml::Element<'static> {
    let env = crate::wire::xml::parse(body.as_bytes()).unwrap();
    let encrypt = env.child_text("Encrypt").unwrap();
    assert!(crate::wire::signature::verify(
        env.child_text("MsgSignature").unwrap(),
        &[
            token,
            env.child_text("TimeStamp").unwrap(),
            env.child_text("Nonce").unwrap(),
            encrypt
        ]
    ));
    let key = crate::wire::crypto::AesKey::from_encoding_aes_key(encoding_aes_key).unwrap();
    let opened = crate::wire::crypto::decrypt(&key, encrypt, receive_id).unwrap();
    crate::wire::xml::parse(&opened.message)
        .unwrap()
        .into_owned()
}
