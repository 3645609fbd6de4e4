//! The keys of `data`: WeChat's element names in snake_case, by one rule, with the documented
//! names looked up in a table rather than converted (and allocated) on every message.

use std::borrow::Cow;

/// The key an element's name becomes: the name itself when snake_case leaves it as it is, the
/// table's form for WeChat's documented names, else the computed one.
pub fn key_of(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(name);
    }
    match snake_name(name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(snake_case(name)),
    }
}

/// `Location_X` -> `location_x`, `MsgID` -> `msg_id`, `HQMusicUrl` -> `hq_music_url`,
/// `PicMd5Sum` -> `pic_md5_sum`, `MediaId16K` -> `media_id16k`, `publish_id` -> `publish_id`.
pub fn snake_case(name: &str) -> String {
    // WeChat's names are ASCII: no allocation beyond the result (a profile of the 2.4 KB
    // message put 15% of the pipeline in this function when it collected chars first).
    if name.is_ascii() {
        let bytes = name.as_bytes();
        let mut out = String::with_capacity(name.len() + 4);
        for (i, &c) in bytes.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let prev = i.checked_sub(1).and_then(|p| bytes.get(p)).copied();
                let next = bytes.get(i + 1).copied();
                if is_boundary(prev.map(char::from), next.map(char::from)) {
                    out.push('_');
                }
                out.push(char::from(c.to_ascii_lowercase()));
            } else {
                out.push(char::from(c));
            }
        }
        return out;
    }
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
            let next = chars.get(i + 1).copied();
            if is_boundary(prev, next) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a capital letter between `prev` and `next` starts a word.
fn is_boundary(prev: Option<char>, next: Option<char>) -> bool {
    match prev {
        None | Some('_') => false,
        Some(p) if p.is_ascii_lowercase() => true,
        // After a digit or an acronym, a capital starts a word only if a lowercase letter
        // follows: PicMd5Sum -> pic_md5_sum, MediaId16K -> media_id16k.
        Some(p) if p.is_ascii_digit() || p.is_ascii_uppercase() => {
            next.is_some_and(|n| n.is_ascii_lowercase())
        }
        Some(_) => false,
    }
}

/// WeChat's documented element names and their snake_case forms, sorted by name: a known name
/// is looked up rather than converted and allocated. A name missing here is still converted by
/// the rule ([`snake_case`] above); a unit test checks every entry against it.
pub const KNOWN_NAMES: &[(&str, &str)] = &[
    ("AddPartyItems", "add_party_items"),
    ("AddUserItems", "add_user_items"),
    ("Address", "address"),
    ("AgentID", "agent_id"),
    ("AgentId", "agent_id"),
    ("Alias", "alias"),
    ("AppID", "app_id"),
    ("AppId", "app_id"),
    ("ApplyTime", "apply_time"),
    ("ApplyUserId", "apply_user_id"),
    ("ApplyUserImage", "apply_user_image"),
    ("ApplyUserName", "apply_user_name"),
    ("ApplyUserParty", "apply_user_party"),
    ("Applyer", "applyer"),
    ("ApprovalInfo", "approval_info"),
    ("ApprovalNode", "approval_node"),
    ("ApprovalNodes", "approval_nodes"),
    ("Approver", "approver"),
    ("ApproverAttr", "approver_attr"),
    ("ApproverStep", "approver_step"),
    ("ArticleDetail", "article_detail"),
    ("ArticleId", "article_id"),
    ("ArticleIdx", "article_idx"),
    ("ArticleUrl", "article_url"),
    ("ArticleUrlResult", "article_url_result"),
    ("AuditState", "audit_state"),
    ("AuthCode", "auth_code"),
    ("AuthCorpId", "auth_corp_id"),
    ("AuthorizationCode", "authorization_code"),
    (
        "AuthorizationCodeExpiredTime",
        "authorization_code_expired_time",
    ),
    ("AuthorizerAppid", "authorizer_appid"),
    ("Avatar", "avatar"),
    ("BatchJob", "batch_job"),
    ("BizMail", "biz_mail"),
    ("CanReprint", "can_reprint"),
    ("CardCode", "card_code"),
    ("CardId", "card_id"),
    ("ChangeType", "change_type"),
    ("ChatId", "chat_id"),
    ("CheckState", "check_state"),
    ("CheckType", "check_type"),
    ("City", "city"),
    ("ComponentVerifyTicket", "component_verify_ticket"),
    ("ConsumeSource", "consume_source"),
    ("Content", "content"),
    ("CopyrightCheckResult", "copyright_check_result"),
    ("CorpId", "corp_id"),
    ("Count", "count"),
    ("Country", "country"),
    ("CreateTime", "create_time"),
    ("CurMemVer", "cur_mem_ver"),
    ("DelPartyItems", "del_party_items"),
    ("DelUserItems", "del_user_items"),
    ("Department", "department"),
    ("Description", "description"),
    ("Details", "details"),
    ("DeviceID", "device_id"),
    ("DeviceType", "device_type"),
    ("DirectLeader", "direct_leader"),
    ("Email", "email"),
    ("Encrypt", "encrypt"),
    ("ErrCode", "err_code"),
    ("ErrMsg", "err_msg"),
    ("ErrorCode", "error_code"),
    ("ErrorCount", "error_count"),
    ("ErrorStatus", "error_status"),
    ("Event", "event"),
    ("EventKey", "event_key"),
    ("ExpiredTime", "expired_time"),
    ("ExtAttr", "ext_attr"),
    ("ExtInfo", "ext_info"),
    ("ExternalUserID", "external_user_id"),
    ("ExternalUserId", "external_user_id"),
    ("FailReason", "fail_reason"),
    ("FailTime", "fail_time"),
    ("Fee", "fee"),
    ("FilterCount", "filter_count"),
    ("FinishTime", "finish_time"),
    ("Format", "format"),
    ("FriendUserName", "friend_user_name"),
    ("FromKfAccount", "from_kf_account"),
    ("FromUserName", "from_user_name"),
    ("Gender", "gender"),
    ("HQMusicUrl", "hq_music_url"),
    ("HeadImgUrl", "head_img_url"),
    ("Id", "id"),
    ("Idx", "idx"),
    ("InfoType", "info_type"),
    ("IsGiveByFriend", "is_give_by_friend"),
    ("IsLeader", "is_leader"),
    ("IsLeaderInDept", "is_leader_in_dept"),
    ("IsRecommendByFriend", "is_recommend_by_friend"),
    ("IsRestoreMemberCard", "is_restore_member_card"),
    ("Item", "item"),
    ("ItemImage", "item_image"),
    ("ItemName", "item_name"),
    ("ItemOpTime", "item_op_time"),
    ("ItemSpeech", "item_speech"),
    ("ItemStatus", "item_status"),
    ("ItemUserId", "item_user_id"),
    ("Items", "items"),
    ("JobId", "job_id"),
    ("JobType", "job_type"),
    ("JoinScene", "join_scene"),
    ("KeyStandard", "key_standard"),
    ("KeyStr", "key_str"),
    ("KfAccount", "kf_account"),
    ("Label", "label"),
    ("LastMemVer", "last_mem_ver"),
    ("Latitude", "latitude"),
    ("List", "list"),
    ("LocationId", "location_id"),
    ("LocationName", "location_name"),
    ("Location_X", "location_x"),
    ("Location_Y", "location_y"),
    ("Longitude", "longitude"),
    ("MainDepartment", "main_department"),
    ("MediaId", "media_id"),
    ("MediaId16K", "media_id16k"),
    ("MemChangeCnt", "mem_change_cnt"),
    ("MemChangeList", "mem_change_list"),
    ("MenuId", "menu_id"),
    ("Mobile", "mobile"),
    ("Msg", "msg"),
    ("MsgDataID", "msg_data_id"),
    ("MsgDataId", "msg_data_id"),
    ("MsgID", "msg_id"),
    ("MsgId", "msg_id"),
    ("MsgType", "msg_type"),
    ("MusicUrl", "music_url"),
    ("Name", "name"),
    ("NeedReplaceContent", "need_replace_content"),
    ("NeedShowReprintSource", "need_show_reprint_source"),
    ("NewUserID", "new_user_id"),
    ("Nickname", "nickname"),
    ("NodeAttr", "node_attr"),
    ("NodeStatus", "node_status"),
    ("NodeType", "node_type"),
    ("NotifyNode", "notify_node"),
    ("NotifyNodes", "notify_nodes"),
    ("Notifyer", "notifyer"),
    ("OldUserCardCode", "old_user_card_code"),
    ("OpenID", "open_id"),
    ("OpenKfId", "open_kf_id"),
    ("OpenSpName", "open_sp_name"),
    ("OpenSpStatus", "open_sp_status"),
    ("OpenTemplateId", "open_template_id"),
    ("Order", "order"),
    ("OrderId", "order_id"),
    ("OrderStatus", "order_status"),
    ("OriginalArticleType", "original_article_type"),
    ("OriginalArticleUrl", "original_article_url"),
    ("OriginalFee", "original_fee"),
    ("OuterId", "outer_id"),
    ("OuterStr", "outer_str"),
    ("PagePath", "page_path"),
    ("ParentId", "parent_id"),
    ("Party", "party"),
    ("PicList", "pic_list"),
    ("PicMd5Sum", "pic_md5_sum"),
    ("PicUrl", "pic_url"),
    ("PoiId", "poi_id"),
    ("Poiname", "poiname"),
    ("PopupScene", "popup_scene"),
    ("Position", "position"),
    ("PreAuthCode", "pre_auth_code"),
    ("Precision", "precision"),
    ("ProductId", "product_id"),
    ("Province", "province"),
    ("PublishEventInfo", "publish_event_info"),
    ("PublishId", "publish_id"),
    ("PublishStatus", "publish_status"),
    ("QuitScene", "quit_scene"),
    ("Reason", "reason"),
    ("Recognition", "recognition"),
    ("Remark", "remark"),
    ("Result", "result"),
    ("ResultList", "result_list"),
    ("Scale", "scale"),
    ("ScanCodeInfo", "scan_code_info"),
    ("ScanResult", "scan_result"),
    ("ScanType", "scan_type"),
    ("Scene", "scene"),
    ("SendLocationInfo", "send_location_info"),
    ("SendPicsInfo", "send_pics_info"),
    ("SentCount", "sent_count"),
    ("SessionFrom", "session_from"),
    ("Sex", "sex"),
    ("SkuInfo", "sku_info"),
    ("SourceScene", "source_scene"),
    ("SpName", "sp_name"),
    ("SpNo", "sp_no"),
    ("SpRecord", "sp_record"),
    ("SpStatus", "sp_status"),
    ("SpTime", "sp_time"),
    ("Speech", "speech"),
    ("StaffOpenId", "staff_open_id"),
    ("State", "state"),
    ("StatuChangeEvent", "statu_change_event"),
    ("Status", "status"),
    ("SubscribeMsgChangeEvent", "subscribe_msg_change_event"),
    ("SubscribeMsgPopupEvent", "subscribe_msg_popup_event"),
    ("SubscribeMsgSentEvent", "subscribe_msg_sent_event"),
    ("SubscribeScene", "subscribe_scene"),
    ("SubscribeStatusString", "subscribe_status_string"),
    ("SuiteId", "suite_id"),
    ("SuiteTicket", "suite_ticket"),
    ("TagId", "tag_id"),
    ("Telephone", "telephone"),
    ("TemplateId", "template_id"),
    ("ThirdNo", "third_no"),
    ("ThumbMediaId", "thumb_media_id"),
    ("ThumbUrl", "thumb_url"),
    ("Ticket", "ticket"),
    ("Title", "title"),
    ("ToKfAccount", "to_kf_account"),
    ("ToUserName", "to_user_name"),
    ("Token", "token"),
    ("TotalCount", "total_count"),
    ("TraceId", "trace_id"),
    ("TransId", "trans_id"),
    ("TransInfo", "trans_info"),
    ("Type", "type"),
    ("UnionId", "union_id"),
    ("UniqId", "uniq_id"),
    ("UpdateDetail", "update_detail"),
    ("Url", "url"),
    ("UserCardCode", "user_card_code"),
    ("UserDeclareState", "user_declare_state"),
    ("UserID", "user_id"),
    ("UserId", "user_id"),
    ("UserName", "user_name"),
    ("VerifyCode", "verify_code"),
    ("WelcomeCode", "welcome_code"),
];

/// The snake_case form of a documented element name.
pub fn snake_name(name: &str) -> Option<&'static str> {
    KNOWN_NAMES
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .and_then(|i| KNOWN_NAMES.get(i))
        .map(|(_, snake)| *snake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        for (from, to) in [
            ("Location_X", "location_x"),
            ("MsgID", "msg_id"),
            ("MsgId", "msg_id"),
            ("HQMusicUrl", "hq_music_url"),
            ("PicMd5Sum", "pic_md5_sum"),
            ("publish_id", "publish_id"),
            ("ScanCodeInfo", "scan_code_info"),
            ("AgentID", "agent_id"),
            ("bizmsgmenuid", "bizmsgmenuid"),
            ("SubscribeMsgPopupEvent", "subscribe_msg_popup_event"),
            ("URL", "url"),
            ("OpenID", "open_id"),
            ("Fee", "fee"),
            ("MediaId16K", "media_id16k"),
            ("Md5", "md5"),
            // Not ASCII (no WeChat name is): the same rule over chars.
            ("ÉtatID", "État_id"),
            ("名字Name", "名字name"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
        }
    }

    #[test]
    fn names_are_borrowed_tabled_or_computed() {
        assert!(matches!(key_of("publish_id"), Cow::Borrowed("publish_id")));
        assert!(matches!(key_of("MsgId"), Cow::Borrowed("msg_id")));
        assert!(
            matches!(key_of("SomeUndocumentedName"), Cow::Owned(ref k) if k == "some_undocumented_name")
        );
    }

    #[test]
    fn known_names_are_sorted_and_follow_the_rule() {
        for pair in KNOWN_NAMES.windows(2) {
            if let [(a, _), (b, _)] = pair {
                assert!(a < b, "{a} before {b}");
            }
        }
        for (name, snake) in KNOWN_NAMES {
            assert_eq!(snake_case(name), *snake, "{name}");
            assert_eq!(snake_name(name), Some(*snake));
        }
        assert_eq!(snake_name("NotAWeChatName"), None);
    }
}
