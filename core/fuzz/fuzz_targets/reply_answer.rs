//! Arbitrary reply receiver answers: a reply, no reply or an error, never a panic; any reply
//! renders as XML, JSON and a customer-service message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_relay_core::callback::reply::Reply;

fuzz_target!(|body: &[u8]| {
    if let Ok(Some(reply)) = Reply::from_answer(body) {
        let _ = reply.to_xml("o_user", "gh_1", 1);
        let _ = reply.to_json("o_user", "gh_1", 1);
        let _ = reply.custom_message("o_user");
    }
});
