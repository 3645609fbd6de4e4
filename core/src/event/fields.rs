//! What normalization knows of WeChat's field names: a new field that WeChat documents as a
//! number is one line here (and its name in `names::KNOWN_NAMES`, which only saves the conversion) (plus a sample pair under `tests/samples`, and the schema entry in
//! `schema/event.schema.json` when it is an envelope field).

/// Element names that always denote list entries.
pub const LIST_ITEM_NAMES: &[&str] = &["item", "Item", "List"];

/// Whether an element of this name is a list entry.
pub fn is_list_item(name: &str) -> bool {
    LIST_ITEM_NAMES.contains(&name)
}

/// Element names (after snake_casing) that are always arrays, even when they occur once.
pub const ALWAYS_ARRAY: &[&str] = &["fail_idx"];

/// Fields WeChat documents as integers (snake_case names, at any depth).
pub const INTEGER_FIELDS: &[&str] = &[
    "scale",
    "total_count",
    "filter_count",
    "sent_count",
    "error_count",
    "count",
    "article_idx",
    "user_declare_state",
    "audit_state",
    "original_article_type",
    "can_reprint",
    "need_replace_content",
    "need_show_reprint_source",
    "check_state",
    "publish_status",
    "idx",
    "fail_idx",
    "popup_scene",
    "error_code",
    "expired_time",
    "fail_time",
    "agent_id",
    "status_code",
    "create_order_time",
    "pay_finish_time",
    "fee",
    "original_fee",
    "is_give_by_friend",
    "is_restore_member_card",
    "is_recommend_by_friend",
    "verify_code",
    "trans_id",
    // WeCom: batch jobs and approvals.
    "err_code",
    "sp_status",
    "apply_time",
    "sp_time",
    "approver_attr",
    "statu_change_event",
];

/// Fields WeChat documents as decimal numbers.
pub const FLOAT_FIELDS: &[&str] = &[
    "location_x",
    "location_y",
    "latitude",
    "longitude",
    "precision",
];

/// How a documented number field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    Integer,
    Float,
}

/// Whether WeChat documents the field (snake_case name) as a number.
pub fn number_kind(key: &str) -> Option<NumberKind> {
    if INTEGER_FIELDS.contains(&key) {
        Some(NumberKind::Integer)
    } else if FLOAT_FIELDS.contains(&key) {
        Some(NumberKind::Float)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_numbers() {
        assert_eq!(number_kind("scale"), Some(NumberKind::Integer));
        assert_eq!(number_kind("latitude"), Some(NumberKind::Float));
        assert_eq!(number_kind("msg_id"), None);
    }
}
