//! WeChat's JSON message format (the "数据格式: JSON" option of newer push settings): turned into
//! the same element tree as XML, so one normalizer serves both.
//!
//! An object becomes an element's children, an array becomes the same child repeated (as WeChat's
//! XML repeats `<List>`), strings and numbers become text. Integers keep every digit (64-bit
//! message ids included).

use serde_json::Value;

use crate::wire::xml::{Element, XmlError, MAX_DEPTH, MAX_ELEMENTS};

/// Parses a JSON object body into an `<xml>` element tree.
pub fn parse(body: &[u8]) -> Result<Element<'static>, XmlError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message: String = e.to_string().chars().take(120).collect();
        XmlError::Syntax(format!("JSON: {message}"))
    })?;
    let Value::Object(map) = value else {
        return Err(XmlError::Structure("JSON body must be an object"));
    };
    let mut count = 0;
    let mut root = Element::named("xml");
    for (key, v) in &map {
        push(&mut root, key, v, 1, &mut count)?;
    }
    Ok(root)
}

fn push(
    parent: &mut Element<'static>,
    name: &str,
    value: &Value,
    depth: usize,
    count: &mut usize,
) -> Result<(), XmlError> {
    if depth >= MAX_DEPTH {
        return Err(XmlError::TooDeep);
    }
    if let Value::Array(items) = value {
        for item in items {
            push(parent, name, item, depth, count)?;
        }
        return Ok(());
    }
    *count += 1;
    if *count > MAX_ELEMENTS {
        return Err(XmlError::TooManyElements);
    }
    let mut element = Element::named(name.to_owned());
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                push(&mut element, key, v, depth + 1, count)?;
            }
        }
        Value::String(s) => element.text = s.clone().into(),
        Value::Number(n) => element.text = n.to_string().into(),
        Value::Bool(b) => element.text = b.to_string().into(),
        Value::Null | Value::Array(_) => {}
    }
    parent.children.push(element);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_numbers() {
        let doc = parse(br#"{"ToUserName":"gh_1","CreateTime":1714112445,"MsgId":23456789012345678,"List":[{"A":"x"},{"A":"y"}],"Info":{"Count":2}}"#).unwrap();
        assert_eq!(doc.child_text("ToUserName"), Some("gh_1"));
        assert_eq!(doc.child_text("CreateTime"), Some("1714112445"));
        assert_eq!(doc.child_text("MsgId"), Some("23456789012345678"));
        assert_eq!(doc.children.iter().filter(|c| c.name == "List").count(), 2);
        assert_eq!(doc.child("Info").unwrap().child_text("Count"), Some("2"));
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        assert!(matches!(parse(b"[1,2]"), Err(XmlError::Structure(_))));
        assert!(matches!(parse(b"{\"a\":"), Err(XmlError::Syntax(_))));
        let deep = format!("{}{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
