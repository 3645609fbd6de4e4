//! WeChat's release check (全网发布): its test accounts, answered by the relay itself.

use super::*;

/// WeChat's release-check (全网发布) test accounts: Official Accounts and Mini Programs.
pub const RELEASE_TEST_ACCOUNTS: [&str; 10] = [
    "wx570bc396a51b8ff8",
    "wx9252c5e0bb1836fc",
    "wx8e1097c5bc82cde9",
    "wx14550af28c71a144",
    "wxa35b9c23cfe664eb",
    "wxd101a85aa106f53e",
    "wxc39235c15087f6f3",
    "wx7720d01d4b2a4500",
    "wx05d483572dcd5d8b",
    "wx5910277cae6fd970",
];

pub const RELEASE_TEXT: &str = "TESTCOMPONENT_MSG_TYPE_TEXT";

pub const RELEASE_QUERY_AUTH_CODE: &str = "QUERY_AUTH_CODE:";

/// What the release check asks of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseCheck {
    /// Answer the passive reply `TESTCOMPONENT_MSG_TYPE_TEXT_callback`.
    Text,
    /// Answer empty at once, then exchange the code and send `<code>_from_api`.
    QueryAuthCode(String),
}

impl ReleaseCheck {
    /// The release check's test messages, from WeChat's test accounts only.
    pub fn of(authorizer: &str, event: &Event) -> Option<ReleaseCheck> {
        if !RELEASE_TEST_ACCOUNTS.contains(&authorizer) || event.kind != "text" {
            return None;
        }
        let content = event.data.get("content")?;
        let content = content.as_str()?;
        if content == RELEASE_TEXT {
            return Some(ReleaseCheck::Text);
        }
        let code = content.strip_prefix(RELEASE_QUERY_AUTH_CODE)?;
        (!code.is_empty()).then(|| ReleaseCheck::QueryAuthCode(code.to_owned()))
    }
}
