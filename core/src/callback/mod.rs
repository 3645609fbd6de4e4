//! The inbound pipeline, sans I/O: verify, decrypt, parse and normalize one WeChat callback.
//!
//! The shell passes in the query, the body bytes and the current time; it gets back either the
//! echo string / normalized event or an [`Error`] that already knows its HTTP status.

pub mod reply;

use crate::account::Account;
use crate::config::Config;
use crate::error::Error;
use crate::event::{self, Event};
use crate::wire::crypto;
use crate::wire::signature;
use crate::wire::xml;

/// Largest body accepted. WeChat's callbacks are a few KiB at most.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Whether a body is in WeChat's JSON format rather than XML: its first non-blank character.
fn is_json(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses a callback body in either of WeChat's formats: XML (the default) or JSON (selectable in
/// newer push settings), told apart by the first non-blank character.
pub fn parse_body(body: &[u8]) -> Result<xml::Element<'_>, xml::XmlError> {
    if is_json(body) {
        crate::wire::json_body::parse(body)
    } else {
        xml::parse(body)
    }
}

/// The query parameters WeChat sends (first occurrence wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub openid: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

impl Query {
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Query
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut q = Query::default();
        for (key, value) in pairs {
            let slot = match key.as_ref() {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "openid" => &mut q.openid,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into());
            }
        }
        q
    }
}

fn required<'q>(value: &'q Option<String>, name: &'static str) -> Result<&'q str, Error> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(Error::MissingParameter(name))
}

fn parse_timestamp(ts: &str) -> Result<u64, Error> {
    ts.parse::<u64>()
        .map_err(|_| Error::MalformedParameter("timestamp"))
}

fn check_window(timestamp: u64, now_secs: u64, skew: u64) -> Result<(), Error> {
    if timestamp.abs_diff(now_secs) > skew {
        return Err(Error::StaleTimestamp);
    }
    Ok(())
}

/// `GET` URL verification: returns what to answer. Official Accounts and Mini Programs send
/// `signature` and a plaintext `echostr`, echoed verbatim; WeCom sends `msg_signature` over the
/// token, timestamp, nonce and an encrypted `echostr`, whose plaintext is the answer.
pub fn verify_url(
    config: &Config,
    account: &str,
    query: &Query,
    now_secs: u64,
) -> Result<String, Error> {
    let account = config.account(account)?;
    if account.kind().encrypted_echostr() {
        return verify_wecom_url(config, account, query, now_secs);
    }
    let sig = required(&query.signature, "signature")?;
    let ts = required(&query.timestamp, "timestamp")?;
    let nonce = required(&query.nonce, "nonce")?;
    let echostr = required(&query.echostr, "echostr")?;
    let timestamp = parse_timestamp(ts)?;
    let token = account.token()?;
    if !signature::verify(sig, &[token, ts, nonce]) {
        return Err(Error::BadSignature);
    }
    check_window(timestamp, now_secs, config.max_clock_skew()?)?;
    Ok(echostr.to_owned())
}

fn verify_wecom_url(
    config: &Config,
    account: &Account,
    query: &Query,
    now_secs: u64,
) -> Result<String, Error> {
    let sig = required(&query.msg_signature, "msg_signature")?;
    let ts = required(&query.timestamp, "timestamp")?;
    let nonce = required(&query.nonce, "nonce")?;
    let echostr = required(&query.echostr, "echostr")?;
    let timestamp = parse_timestamp(ts)?;
    let token = account.token()?;
    if !signature::verify(sig, &[token, ts, nonce, echostr]) {
        return Err(Error::BadSignature);
    }
    check_window(timestamp, now_secs, config.max_clock_skew()?)?;
    let key = account.require_aes_key()?;
    let corp_id = account.require_app_id()?;
    let opened = crypto::decrypt(key, echostr, corp_id).map_err(|_| Error::Decryption)?;
    String::from_utf8(opened.message).map_err(|_| Error::Decryption)
}

/// How a callback arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plaintext,
    /// Safe or compatible mode (`encrypt_type=aes`).
    Encrypted,
}

/// A verified, decrypted and normalized callback.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub event: Event,
    pub mode: Mode,
    /// Whether the message was in WeChat's JSON format (replies must be JSON too).
    pub json: bool,
}

/// `POST` callback: everything between the request and the event to forward, with the
/// software AES of [`crypto`]. A shell with a faster cipher uses [`begin_callback`] and
/// [`Sealed::finish`] instead and decrypts in between.
pub fn open_callback(
    config: &Config,
    account: &str,
    query: &Query,
    body: &[u8],
    now_ms: u64,
) -> Result<Inbound, Error> {
    match begin_callback(config, account, query, body, now_ms)? {
        Begun::Opened(inbound) => Ok(inbound),
        Begun::Sealed(mut sealed) => {
            let mut blocks = std::mem::take(&mut sealed.ciphertext);
            crypto::cbc_decrypt(&sealed.key, &mut blocks).map_err(|_| Error::Decryption)?;
            sealed.finish(&blocks)
        }
    }
}

/// The first step of a `POST` callback: everything up to decryption.
pub enum Begun {
    /// A plaintext callback, done.
    Opened(Inbound),
    /// An authenticated ciphertext waiting to be decrypted (AES-256-CBC, no padding removed).
    Sealed(Sealed),
}

/// An encrypted callback whose signatures and timestamp have been checked.
pub struct Sealed {
    /// The base64-decoded `Encrypt` value: whole 32-byte blocks.
    pub ciphertext: Vec<u8>,
    pub key: crypto::AesKey,
    app_id: String,
    account: String,
    /// The WeCom app the message must be for, when configured.
    agent_id: Option<String>,
    now_ms: u64,
}

impl Sealed {
    /// Finishes with the raw CBC decryption of [`Sealed::ciphertext`] (padding still on):
    /// strips WeChat's padding, checks the receive id, parses and normalizes.
    pub fn finish(self, decrypted: &[u8]) -> Result<Inbound, Error> {
        self.open(decrypted)?.parse()?.normalize(None)
    }

    /// Strips WeChat's padding and checks the receive id, leaving the parse (and a WeCom
    /// message's AgentID check) to [`Opened::parse`].
    pub fn open(self, decrypted: &[u8]) -> Result<Opened, Error> {
        let opened =
            crypto::open_plaintext_for(decrypted, &self.app_id).map_err(|_| Error::Decryption)?;
        Ok(Opened {
            json: is_json(&opened.message),
            message: opened.message,
            receive_id: opened.receive_id,
            account: self.account,
            agent_id: self.agent_id,
            now_ms: self.now_ms,
        })
    }
}

/// A decrypted and authenticated message, not yet parsed.
pub struct Opened {
    /// Whether it was in WeChat's JSON format.
    pub json: bool,
    /// The decrypted message, which the event id is computed over and the tree borrows from.
    message: Vec<u8>,
    /// The id that trailed it (AppID, corp id, component AppID).
    pub receive_id: String,
    account: String,
    /// The WeCom app the message must be for, when configured.
    agent_id: Option<String>,
    now_ms: u64,
}

impl Opened {
    /// The message parsed (once: the tree borrows the message, and both the event and any
    /// other reader use it), refused when it is for another WeCom app.
    pub fn parse(&self) -> Result<Parsed<'_>, Error> {
        let root = parse_body(&self.message)?;
        if let (Some(expected), Some(agent)) = (&self.agent_id, root.child_text("AgentID")) {
            if !agent.trim().is_empty() && agent.trim() != expected {
                return Err(Error::WrongRecipient);
            }
        }
        Ok(Parsed { root, opened: self })
    }
}

/// A decrypted message's tree, borrowed from it.
pub struct Parsed<'a> {
    pub root: xml::Element<'a>,
    opened: &'a Opened,
}

impl Parsed<'_> {
    fn context<'c>(
        &'c self,
        app_id: Option<&'c str>,
        merchant: Option<&'c str>,
    ) -> event::Context<'c> {
        event::Context {
            account: &self.opened.account,
            app_id,
            merchant,
            message: &self.opened.message,
            received_at_ms: self.opened.now_ms,
        }
    }

    /// The event, with `app_id` the receive id unless a platform's merchant (authorizer) is
    /// given.
    pub fn normalize(&self, merchant: Option<&str>) -> Result<Inbound, Error> {
        let ctx = self.context(Some(merchant.unwrap_or(&self.opened.receive_id)), merchant);
        let event = event::normalize(&self.root, &ctx)?;
        Ok(Inbound {
            event,
            mode: Mode::Encrypted,
            json: self.opened.json,
        })
    }

    /// A third-party platform's authorization push as an event.
    pub fn normalize_component(&self) -> Result<Event, Error> {
        event::normalize_component(&self.root, &self.context(None, None))
    }
}

/// How a `POST` callback arrived, checked against the account's message mode: a safe-mode
/// account takes only `encrypt_type=aes` (with its `msg_signature`), a plain-mode one only
/// plaintext, a compatible one both. A callback in a mode the account is not in is refused as a
/// bad signature: it is not what WeChat sends that account, and its `signature` alone (which
/// every safe-mode URL shows) proves nothing about the body.
fn arrival(account: &Account, query: &Query) -> Result<Mode, Error> {
    let configured = account.message_mode()?;
    let arrived = match query.encrypt_type.as_deref() {
        // WeCom always encrypts and sends no encrypt_type: a plaintext POST is refused below
        // (it has no msg_signature or no Encrypt).
        _ if account.kind().always_encrypted() => return Ok(Mode::Encrypted),
        None | Some("") | Some("raw") => Mode::Plaintext,
        Some("aes") => Mode::Encrypted,
        Some(_) => return Err(Error::MalformedParameter("encrypt_type")),
    };
    let refused = match arrived {
        Mode::Plaintext if query.msg_signature.is_some() => {
            Some("msg_signature without encrypt_type=aes")
        }
        Mode::Plaintext if !configured.accepts_plaintext() => {
            Some("a plaintext callback (no encrypt_type=aes)")
        }
        Mode::Encrypted if !configured.accepts_encrypted() => {
            // Without a key, the console's mode is ahead of the relay's settings: name the key.
            account.require_aes_key()?;
            Some("an encrypted callback (encrypt_type=aes)")
        }
        _ => None,
    };
    if let Some(what) = refused {
        log::warn!(account = account.name(), mode = configured.as_str(); "{what} refused: the account is in {} mode", configured.as_str());
        return Err(Error::BadSignature);
    }
    Ok(arrived)
}

/// Verifies a `POST` callback and, in plaintext mode, opens it; in safe or compatible mode
/// returns the authenticated ciphertext for the caller to decrypt.
pub fn begin_callback(
    config: &Config,
    account: &str,
    query: &Query,
    body: &[u8],
    now_ms: u64,
) -> Result<Begun, Error> {
    let account = config.account(account)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let token = account.token()?;
    let mode = arrival(account, query)?;
    let ts = required(&query.timestamp, "timestamp")?;
    let nonce = required(&query.nonce, "nonce")?;
    let timestamp = parse_timestamp(ts)?;
    let now_secs = now_ms / 1000;

    match mode {
        Mode::Plaintext => {
            let sig = required(&query.signature, "signature")?;
            if !signature::verify(sig, &[token, ts, nonce]) {
                return Err(Error::BadSignature);
            }
            check_window(timestamp, now_secs, config.max_clock_skew()?)?;
            let ctx = event::Context {
                account: account.name(),
                app_id: account.app_id(),
                merchant: None,
                message: body,
                received_at_ms: now_ms,
            };
            Ok(Begun::Opened(Inbound {
                event: event::normalize(&parse_body(body)?, &ctx)?,
                mode,
                json: is_json(body),
            }))
        }
        Mode::Encrypted => {
            let msg_sig = required(&query.msg_signature, "msg_signature")?;
            let envelope = parse_body(body)?;
            let encrypted = envelope
                .child_text("Encrypt")
                .ok_or(Error::MissingElement("Encrypt"))?;
            // Authenticate before decrypting anything.
            if !signature::verify(msg_sig, &[token, ts, nonce, encrypted]) {
                return Err(Error::BadSignature);
            }
            if let Some(sig) = query.signature.as_deref() {
                if !signature::verify(sig, &[token, ts, nonce]) {
                    return Err(Error::BadSignature);
                }
            }
            check_window(timestamp, now_secs, config.max_clock_skew()?)?;
            let key = account.require_aes_key()?;
            let app_id = account.require_app_id()?;
            let ciphertext = crypto::decode_ciphertext(encrypted).map_err(|_| Error::Decryption)?;
            Ok(Begun::Sealed(Sealed {
                ciphertext,
                key: key.clone(),
                app_id: app_id.to_owned(),
                account: account.name().to_owned(),
                agent_id: account.agent_id().map(str::to_owned),
                now_ms,
            }))
        }
    }
}
