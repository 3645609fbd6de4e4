//! A small XML reader for WeChat's message format, safe on hostile input.
//!
//! WeChat's XML is a flat-ish tree of elements with text or CDATA content and no attributes or
//! namespaces. This reader builds an [`Element`] tree and refuses anything that could make it do
//! unbounded work: DOCTYPE (and so entity declarations), nesting deeper than [`MAX_DEPTH`], more
//! than [`MAX_ELEMENTS`] elements. Text is kept exactly: several CDATA sections in one element
//! are concatenated, leading and trailing white space survives.
//!
//! The tree borrows from the document: a name, an attribute or a text with no entity and in
//! one piece is a slice of the input, taken without checking its UTF-8 again (the whole input
//! was checked once); only unescaped or concatenated text is allocated.

use std::borrow::Cow;

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

pub const MAX_DEPTH: usize = 32;
pub const MAX_ELEMENTS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element<'a> {
    pub name: Cow<'a, str>,
    pub attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub children: Vec<Element<'a>>,
    /// All text and CDATA directly inside this element, concatenated in document order.
    pub text: Cow<'a, str>,
}

impl<'a> Element<'a> {
    /// An element named `name` with nothing in it.
    pub fn named(name: impl Into<Cow<'a, str>>) -> Self {
        Element {
            name: name.into(),
            ..Element::default()
        }
    }

    /// The same tree, owning its names and text (to keep it past its document).
    pub fn into_owned(self) -> Element<'static> {
        Element {
            name: Cow::Owned(self.name.into_owned()),
            attributes: self
                .attributes
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            children: self.children.into_iter().map(Element::into_owned).collect(),
            text: Cow::Owned(self.text.into_owned()),
        }
    }

    /// The first direct child with this name.
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first direct child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| &*c.text)
    }

    /// Appends a piece of text (borrowed as it is when it is the first).
    fn push_text(&mut self, piece: Cow<'a, str>) {
        if self.text.is_empty() {
            self.text = piece;
        } else {
            self.text.to_mut().push_str(&piece);
        }
    }
}

/// Why a body is not acceptable XML. The message is short and safe to show the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    NotUtf8,
    Empty,
    /// DOCTYPE or entity declarations: refused without expanding anything.
    Doctype,
    TooDeep,
    TooManyElements,
    /// A root element that is not `<xml>`, a second root, or text outside the root.
    Structure(&'static str),
    Syntax(String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::NotUtf8 => f.write_str("body is not UTF-8"),
            XmlError::Empty => f.write_str("body is empty"),
            XmlError::Doctype => f.write_str("DOCTYPE and entity declarations are not accepted"),
            XmlError::TooDeep => write!(f, "XML nested deeper than {MAX_DEPTH} levels"),
            XmlError::TooManyElements => write!(f, "XML has more than {MAX_ELEMENTS} elements"),
            XmlError::Structure(what) => f.write_str(what),
            XmlError::Syntax(what) => write!(f, "malformed XML: {what}"),
        }
    }
}

/// Parses a whole document whose root element must be `<xml>`.
pub fn parse(body: &[u8]) -> Result<Element<'_>, XmlError> {
    // simdutf8: the same check as `std::str::from_utf8`, several times faster on CJK text.
    let text = simdutf8::basic::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = false;

    let mut stack: Vec<Element<'_>> = Vec::new();
    let mut root: Option<Element<'_>> = None;
    let mut count = 0usize;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(short(&e.to_string())))?;
        match event {
            XmlEvent::Start(start) => {
                let element = open(text, &start, &mut count, stack.len(), root.is_some())?;
                stack.push(element);
            }
            XmlEvent::Empty(start) => {
                let element = open(text, &start, &mut count, stack.len(), root.is_some())?;
                close(element, &mut stack, &mut root);
            }
            XmlEvent::End(_) => {
                let element = stack
                    .pop()
                    .ok_or(XmlError::Structure("unexpected closing tag"))?;
                close(element, &mut stack, &mut root);
            }
            XmlEvent::Text(t) => {
                let unescaped = unescape(str_of(text, &t)?)?;
                match stack.last_mut() {
                    Some(parent) => parent.push_text(unescaped),
                    None if unescaped.trim().is_empty() => {}
                    None => return Err(XmlError::Structure("text outside the root element")),
                }
            }
            XmlEvent::CData(c) => {
                let raw = str_of(text, &c)?;
                match stack.last_mut() {
                    Some(parent) => parent.push_text(raw),
                    None => return Err(XmlError::Structure("CDATA outside the root element")),
                }
            }
            XmlEvent::DocType(_) => return Err(XmlError::Doctype),
            XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::Comment(_) => {}
            XmlEvent::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("document ends inside an element".into()));
    }
    root.ok_or(XmlError::Structure("no root element"))
}

/// `bytes` as the slice of `source` they are (the reader hands out slices of its input), with
/// no second UTF-8 check: the offset is found from the addresses and `str::get` checks the char
/// boundaries. Bytes from anywhere else are checked and copied.
fn str_of<'a>(source: &'a str, bytes: &[u8]) -> Result<Cow<'a, str>, XmlError> {
    let within = (bytes.as_ptr() as usize)
        .checked_sub(source.as_ptr() as usize)
        .and_then(|start| source.get(start..start.checked_add(bytes.len())?));
    match within {
        Some(slice) => Ok(Cow::Borrowed(slice)),
        None => std::str::from_utf8(bytes)
            .map(|s| Cow::Owned(s.to_owned()))
            .map_err(|_| XmlError::NotUtf8),
    }
}

/// Text with its entity and character references replaced (borrowed when it has none).
fn unescape(text: Cow<'_, str>) -> Result<Cow<'_, str>, XmlError> {
    let syntax = |e: quick_xml::escape::EscapeError| XmlError::Syntax(short(&e.to_string()));
    match text {
        Cow::Borrowed(s) => quick_xml::escape::unescape(s).map_err(syntax),
        Cow::Owned(s) => Ok(Cow::Owned(
            quick_xml::escape::unescape(&s)
                .map_err(syntax)?
                .into_owned(),
        )),
    }
}

fn open<'a>(
    source: &'a str,
    start: &quick_xml::events::BytesStart<'_>,
    count: &mut usize,
    depth: usize,
    have_root: bool,
) -> Result<Element<'a>, XmlError> {
    if depth == 0 && have_root {
        return Err(XmlError::Structure("more than one root element"));
    }
    if depth >= MAX_DEPTH {
        return Err(XmlError::TooDeep);
    }
    *count += 1;
    if *count > MAX_ELEMENTS {
        return Err(XmlError::TooManyElements);
    }
    let name = str_of(source, start.name().as_ref())?;
    if depth == 0 && name != "xml" {
        return Err(XmlError::Structure("root element must be <xml>"));
    }
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError::Syntax(short(&e.to_string())))?;
        let key = str_of(source, attr.key.as_ref())?;
        let value = unescape(str_of(source, &attr.value)?)?;
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

fn close<'a>(element: Element<'a>, stack: &mut [Element<'a>], root: &mut Option<Element<'a>>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Parser messages can quote input; keep what is echoed back short.
fn short(message: &str) -> String {
    message.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_plain_text_borrow_the_document_only_rewritten_text_is_owned() {
        let doc = parse(
            "<xml><A>plain 微信</A><B><![CDATA[x]]></B><C>a &amp; b</C><D>x<![CDATA[y]]></D><E k=\"v&lt;\" j=\"w\"/></xml>"
                .as_bytes(),
        )
        .unwrap();
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        assert!(borrowed(&doc.name) && doc.children.iter().all(|c| borrowed(&c.name)));
        let text = |name: &str| doc.child(name).unwrap().text.clone();
        assert!(borrowed(&text("A")) && text("A") == "plain 微信");
        assert!(borrowed(&text("B")) && text("B") == "x");
        assert!(!borrowed(&text("C")) && text("C") == "a & b");
        assert!(!borrowed(&text("D")) && text("D") == "xy");
        let attributes = &doc.child("E").unwrap().attributes;
        assert!(attributes.iter().all(|(k, _)| borrowed(k)));
        assert_eq!(
            attributes.first().map(|(_, v)| (borrowed(v), &**v)),
            Some((false, "v<"))
        );
        assert_eq!(
            attributes.get(1).map(|(_, v)| (borrowed(v), &**v)),
            Some((true, "w"))
        );
        // Kept past its document, the same tree.
        let owned = doc.clone().into_owned();
        assert_eq!(owned, doc);
        assert!(!borrowed(&owned.name));
    }

    #[test]
    fn cdata_sections_concatenate_and_whitespace_survives() {
        let doc = parse(b"<xml><Content><![CDATA[ a]]><![CDATA[b ]]></Content></xml>").unwrap();
        assert_eq!(doc.child_text("Content"), Some(" ab "));
    }

    #[test]
    fn cdata_of_multibyte_text_is_kept_exactly() {
        let doc = parse(
            "<xml><A><![CDATA[微信]]></A><B>x<![CDATA[ 消息 ]]>y<![CDATA[]]></B></xml>".as_bytes(),
        )
        .unwrap();
        assert_eq!(doc.child_text("A"), Some("微信"));
        assert_eq!(doc.child_text("B"), Some("x 消息 y"));
        let bom = parse("\u{feff}<xml><A><![CDATA[é]]></A></xml>".as_bytes()).unwrap();
        assert_eq!(bom.child_text("A"), Some("é"));
    }

    #[test]
    fn cdata_end_marker_split_across_sections() {
        let doc = parse(b"<xml><C><![CDATA[x]]]]><![CDATA[>y]]></C></xml>").unwrap();
        assert_eq!(doc.child_text("C"), Some("x]]>y"));
    }

    #[test]
    fn entities_and_char_refs_in_plain_text() {
        let doc = parse(b"<xml><C>a &amp; b &#20013;</C></xml>").unwrap();
        assert_eq!(doc.child_text("C"), Some("a & b \u{4e2d}"));
    }

    #[test]
    fn refuses_doctype_unknown_entities_and_bad_structure() {
        let laughs = b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><xml><a>&lol2;</a></xml>";
        assert_eq!(parse(laughs), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<xml><a>&xxe;</a></xml>"),
            Err(XmlError::Syntax(_))
        ));
        assert!(matches!(parse(b"<root/>"), Err(XmlError::Structure(_))));
        assert!(matches!(
            parse(b"<xml></xml><xml></xml>"),
            Err(XmlError::Structure(_))
        ));
        assert!(matches!(parse(b"<xml><a>"), Err(XmlError::Syntax(_))));
        assert!(matches!(
            parse(b"<xml><a></b></xml>"),
            Err(XmlError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"{\"json\":1}"),
            Err(XmlError::Structure(_))
        ));
        assert_eq!(parse(b"   "), Err(XmlError::Empty));
        assert_eq!(parse(b"<xml>\xff</xml>"), Err(XmlError::NotUtf8));
    }

    #[test]
    fn depth_is_bounded() {
        let mut doc = String::from("<xml>");
        for _ in 0..MAX_DEPTH {
            doc.push_str("<a>");
        }
        assert_eq!(parse(doc.as_bytes()), Err(XmlError::TooDeep));
    }
}
