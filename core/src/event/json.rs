//! `data` written as JSON straight from the element tree: no `serde_json::Value` tree in
//! between, no map, and no allocation for a name that needs no change or that WeChat documents
//! (`names::KNOWN_NAMES`). The rules are those of the module above; this file only writes them.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Number;

use super::fields::{is_list_item, number_kind, NumberKind, ALWAYS_ARRAY};
use super::names::{key_of, snake_case};
use crate::wire::xml::Element;

/// Past this many entries in one object, names are grouped through a hash map rather than by
/// comparing each with the names before it (a hostile message may hold 20,000 elements).
const LINEAR_GROUPING_UP_TO: usize = 24;

/// What one key of an object holds.
enum Member<'e> {
    Attribute(&'e str),
    Child(&'e Element<'e>),
    /// Text beside child elements (mixed content), kept under `$text`.
    Text(&'e str),
}

/// Writes the object of `children` (with `text` and `attributes` of their parent):
/// - each distinct key once, in the order of its first appearance (attributes first);
/// - as an array when the key occurs more than once (a repeated element, or two names with one
///   snake_case form such as `MsgId` and `MsgID`) or when its element is always a list;
/// - otherwise as the element's value.
pub(super) fn write_object<'e>(
    out: &mut Vec<u8>,
    children: impl Iterator<Item = &'e Element<'e>>,
    text: &'e str,
    attributes: &'e [(Cow<'e, str>, Cow<'e, str>)],
) {
    let mut keys: Vec<Cow<'e, str>> = Vec::new();
    let mut members: Vec<Member<'e>> = Vec::new();
    for (name, value) in attributes {
        keys.push(Cow::Owned(format!("@{}", snake_case(name))));
        members.push(Member::Attribute(value));
    }
    for child in children {
        keys.push(key_of(&child.name));
        members.push(Member::Child(child));
    }
    if !text.trim().is_empty() {
        keys.push(Cow::Borrowed("$text"));
        members.push(Member::Text(text));
    }
    let groups = group(&keys);

    out.push(b'{');
    let mut first = true;
    for (i, (key, member)) in keys.iter().zip(&members).enumerate() {
        let Some(link) = groups.get(i).filter(|l| l.head) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
        if link.size == 1 && !is_list(member, key) {
            write_member(out, member, key);
            continue;
        }
        out.push(b'[');
        let mut at = Some(i);
        let mut first_item = true;
        while let Some(j) = at {
            if let Some(member) = members.get(j) {
                if !first_item {
                    out.push(b',');
                }
                first_item = false;
                write_member(out, member, key);
            }
            at = groups.get(j).and_then(|l| l.next);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// Whether a key holds an array even when it occurs once.
fn is_list(member: &Member<'_>, key: &str) -> bool {
    match member {
        Member::Child(child) => is_list_item(&child.name) || ALWAYS_ARRAY.contains(&key),
        Member::Attribute(_) | Member::Text(_) => false,
    }
}

fn write_member(out: &mut Vec<u8>, member: &Member<'_>, key: &str) {
    match member {
        Member::Attribute(value) | Member::Text(value) => write_str(out, value),
        Member::Child(child) => write_value(out, child, key),
    }
}

/// An element's value: a scalar, an array of list items, or an object.
fn write_value(out: &mut Vec<u8>, element: &Element<'_>, key: &str) {
    if element.children.is_empty() && element.attributes.is_empty() {
        return write_scalar(out, key, &element.text);
    }
    let all_items = element.attributes.is_empty()
        && element.text.trim().is_empty()
        && element.children.iter().all(|c| is_list_item(&c.name));
    if all_items {
        out.push(b'[');
        for (i, item) in element.children.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_value(out, item, &key_of(&item.name));
        }
        out.push(b']');
        return;
    }
    write_object(
        out,
        element.children.iter(),
        &element.text,
        &element.attributes,
    );
}

/// A leaf: a JSON number where WeChat documents one and the text parses as one, else the text
/// exactly as sent (64-bit ids included).
fn write_scalar(out: &mut Vec<u8>, key: &str, text: &str) {
    let trimmed = text.trim();
    match number_kind(key) {
        Some(NumberKind::Integer) => {
            if let Ok(n) = trimmed.parse::<i64>() {
                return write_json(out, &n);
            }
        }
        Some(NumberKind::Float) => {
            if let Some(n) = trimmed.parse::<f64>().ok().and_then(Number::from_f64) {
                return write_json(out, &n);
            }
        }
        None => {}
    }
    write_str(out, text);
}

/// A JSON string, escaped exactly as serde_json escapes it, eight bytes at a time: a message's
/// text is almost all bytes that need no escape, so whole words are checked and copied.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            if !needs_escape(u64::from_le_bytes(word)) {
                at += 8;
                continue;
            }
        }
        let byte = bytes.get(at).copied().unwrap_or_default();
        if byte < 0x20 || byte == b'"' || byte == b'\\' {
            out.extend_from_slice(bytes.get(copied..at).unwrap_or_default());
            write_escape(out, byte);
            copied = at + 1;
        }
        at += 1;
    }
    out.extend_from_slice(bytes.get(copied..).unwrap_or_default());
    out.push(b'"');
}

/// Whether any of the eight bytes is `"`, `\\` or a control character below 0x20 (bytes of
/// multi-byte characters, 0x80 and up, never are).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// Writes the escape of a byte that needs one, as serde_json writes it.
fn write_escape(out: &mut Vec<u8>, byte: u8) {
    let hex = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
    let short: &[u8] = match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x00..=0x1f => {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[hex(byte >> 4), hex(byte & 0x0f)]);
            return;
        }
        _ => &[byte],
    };
    out.extend_from_slice(short);
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing a string or a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Where one entry's key occurs: whether it is the key's first entry, and for the first, how
/// many entries share it; for each, the next entry with the same key.
#[derive(Clone, Copy, Default)]
struct Link {
    head: bool,
    size: usize,
    tail: usize,
    next: Option<usize>,
}

fn group(keys: &[Cow<'_, str>]) -> Vec<Link> {
    let mut links = vec![Link::default(); keys.len()];
    let mut heads: Vec<usize> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let linear = keys.len() <= LINEAR_GROUPING_UP_TO;
    for (i, key) in keys.iter().enumerate() {
        let head = if linear {
            heads
                .iter()
                .copied()
                .find(|&h| keys.get(h).is_some_and(|k| k == key))
        } else {
            index.get(key.as_ref()).copied()
        };
        match head {
            Some(h) => {
                let tail = links.get(h).map_or(h, |l| l.tail);
                if let Some(t) = links.get_mut(tail) {
                    t.next = Some(i);
                }
                if let Some(l) = links.get_mut(h) {
                    l.tail = i;
                    l.size += 1;
                }
            }
            None => {
                if linear {
                    heads.push(i);
                } else {
                    index.insert(key.as_ref(), i);
                }
                if let Some(l) = links.get_mut(i) {
                    *l = Link {
                        head: true,
                        size: 1,
                        tail: i,
                        next: None,
                    };
                }
            }
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(xml: &str) -> serde_json::Value {
        let root = crate::wire::xml::parse(xml.as_bytes()).unwrap();
        let mut out = Vec::new();
        write_object(&mut out, root.children.iter(), &root.text, &root.attributes);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn repeated_and_colliding_names_become_one_flat_array() {
        assert_eq!(
            data("<xml><MsgId>1</MsgId><MsgID>2</MsgID><Msgid>3</Msgid><A>x</A></xml>"),
            serde_json::json!({"msg_id": ["1", "2"], "msgid": "3", "a": "x"})
        );
        assert_eq!(
            data("<xml><B>1</B><A>x</A><B>2</B><B>3</B></xml>"),
            serde_json::json!({"b": ["1", "2", "3"], "a": "x"})
        );
        // A list item once is still a list; an attribute sharing a list's key joins it.
        assert_eq!(
            data("<xml><item>1</item></xml>"),
            serde_json::json!({"item": ["1"]})
        );
        assert_eq!(
            data("<xml><FailIdx>3</FailIdx></xml>"),
            serde_json::json!({"fail_idx": [3]})
        );
    }

    #[test]
    fn attributes_mixed_text_and_list_items() {
        assert_eq!(
            data(
                r#"<xml><P Kind="x">text<Q>1</Q></P><L><item><Count>2</Count></item><item><Count>x</Count></item></L></xml>"#
            ),
            serde_json::json!({"p": {"@kind": "x", "q": "1", "$text": "text"}, "l": [{"count": 2}, {"count": "x"}]})
        );
    }

    #[test]
    fn many_distinct_and_repeated_names_group_through_the_map() {
        let mut xml = String::from("<xml>");
        for i in 0..200 {
            xml.push_str(&format!("<N{i}>{i}</N{i}><R>{i}</R>"));
        }
        xml.push_str("</xml>");
        let v = data(&xml);
        let object = v.as_object().unwrap();
        assert_eq!(object.len(), 201);
        assert_eq!(object["r"].as_array().unwrap().len(), 200);
        assert_eq!(object["n199"], "199");
        assert_eq!(object.keys().nth(1).map(String::as_str), Some("r"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..128).map(|b| char::from(b).to_string()).collect();
        cases.push((0u8..128).map(char::from).collect());
        cases.push("微信 \"quoted\" back\\slash\n 😀 end\u{7f}\u{1f}".repeat(5));
        cases.push("abcdefg\"".to_owned());
        cases.push("abcdefgh\u{0}ijklmnop".to_owned());
        cases.push(String::new());
        for s in cases {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            data("<xml><C><![CDATA[\"a\"\\\n\u{1}</C>]]></C></xml>"),
            serde_json::json!({"c": "\"a\"\\\n\u{1}</C>"})
        );
    }
}
