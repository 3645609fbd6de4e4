//! A third-party platform on the in-memory ports, against a fake component API: ticket pushes,
//! the component token, authorization in either order (exchanged once), authorizer tokens with
//! rotated refresh tokens, revocation, the official vector, the release check, hostile pushes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::{json, Value};

use super::*;
use crate::callback::Query;
use crate::ports::SoftwareCipher;
use crate::relay::{Relay, Verdict};
use crate::testing::LocalCoordinator;
use crate::testing::{
    self, callback, config, FakeAnswer, FakeClock, FakeHttp, FakeQueue, MemoryStore, Seen, Sent,
};
use crate::token::Memory;

const NOW: u64 = 1_800_000_000;
const TOKEN: &str = "AAAAA";
const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const COMPONENT: &str = "wx134c8103faa5a59e";
const MERCHANT: &str = "wxba5fad812f8e6fb9";

/// The component API: tickets it accepts, codes it exchanges once, refresh tokens it rotates.
#[derive(Default)]
struct Api {
    tokens_issued: Cell<u32>,
    component_token: RefCell<Option<String>>,
    codes: RefCell<BTreeMap<String, String>>,
    used_codes: RefCell<Vec<String>>,
    /// authorizer -> (access token, refresh token)
    authorizers: RefCell<BTreeMap<String, (String, String)>>,
    rotations: Cell<u32>,
    errors: RefCell<BTreeMap<String, i64>>,
    custom_sent: RefCell<Vec<(Option<String>, Value)>>,
}

impl Api {
    fn answer(&self, seen: &Seen) -> FakeAnswer {
        let path = seen.path();
        let body = seen.json();
        if let Some(errcode) = self.errors.borrow_mut().remove(&path) {
            return FakeAnswer::json(json!({"errcode": errcode, "errmsg": "fake"}));
        }
        let needs_component_token = path.starts_with("/cgi-bin/component/")
            && path != "/cgi-bin/component/api_component_token"
            && path != "/cgi-bin/component/api_start_push_ticket";
        if needs_component_token
            && seen.query("component_access_token") != *self.component_token.borrow()
        {
            return FakeAnswer::json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
        }
        match path.as_str() {
            "/cgi-bin/component/api_component_token" => {
                if body["component_verify_ticket"] != "ticket@@@newest" {
                    return FakeAnswer::json(
                        json!({"errcode": 61006, "errmsg": "component ticket is invalid"}),
                    );
                }
                self.tokens_issued.set(self.tokens_issued.get() + 1);
                let t = format!("COMPONENT_{}_{}", self.tokens_issued.get(), "c".repeat(30));
                *self.component_token.borrow_mut() = Some(t.clone());
                FakeAnswer::json(json!({"component_access_token": t, "expires_in": 7200}))
            }
            "/cgi-bin/component/api_start_push_ticket" => {
                FakeAnswer::json(json!({"errcode": 0, "errmsg": "ok"}))
            }
            "/cgi-bin/component/api_create_preauthcode" => FakeAnswer::json(
                json!({"pre_auth_code": "preauthcode@@@x+y/z", "expires_in": 1800}),
            ),
            "/cgi-bin/component/api_query_auth" => {
                let code = body["authorization_code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if self.used_codes.borrow().contains(&code) {
                    return FakeAnswer::json(
                        json!({"errcode": 61009, "errmsg": "code is invalid"}),
                    );
                }
                let Some(app) = self.codes.borrow().get(&code).cloned() else {
                    return FakeAnswer::json(
                        json!({"errcode": 61010, "errmsg": "code is expired"}),
                    );
                };
                self.used_codes.borrow_mut().push(code);
                let access = format!("AUTHORIZER_ACCESS_{app}_0");
                let refresh = format!("refreshtoken@@@{app}_0");
                self.authorizers
                    .borrow_mut()
                    .insert(app.clone(), (access.clone(), refresh.clone()));
                FakeAnswer::json(json!({"authorization_info": {
                    "authorizer_appid": app, "authorizer_access_token": access, "expires_in": 7200,
                    "authorizer_refresh_token": refresh, "func_info": [{"funcscope_category": {"id": 1}}]
                }}))
            }
            "/cgi-bin/component/api_authorizer_token" => {
                let app = body["authorizer_appid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let mut authorizers = self.authorizers.borrow_mut();
                let Some((_, refresh)) = authorizers.get(&app).cloned() else {
                    return FakeAnswer::json(json!({"errcode": 61003, "errmsg": "not authorized"}));
                };
                if body["authorizer_refresh_token"] != refresh.as_str() {
                    return FakeAnswer::json(
                        json!({"errcode": 61023, "errmsg": "refresh_token is invalid"}),
                    );
                }
                self.rotations.set(self.rotations.get() + 1);
                let n = self.rotations.get();
                let (access, rotated) = (
                    format!("AUTHORIZER_ACCESS_{app}_{n}"),
                    format!("refreshtoken@@@{app}_{n}"),
                );
                authorizers.insert(app, (access.clone(), rotated.clone()));
                FakeAnswer::json(
                    json!({"authorizer_access_token": access, "expires_in": 7200, "authorizer_refresh_token": rotated}),
                )
            }
            "/cgi-bin/component/api_get_authorizer_list" => {
                let offset = body["offset"].as_u64().unwrap_or(0) as usize;
                let count = (body["count"].as_u64().unwrap_or(500) as usize).min(500);
                let all = self.authorizers.borrow();
                let list: Vec<Value> = all.iter().skip(offset).take(count).map(|(app, (_, refresh))| json!({"authorizer_appid": app, "refresh_token": refresh, "auth_time": 1_700_000_000})).collect();
                FakeAnswer::json(json!({"total_count": all.len(), "list": list}))
            }
            "/cgi-bin/message/custom/send" => {
                let token = seen.query("access_token");
                let valid = self
                    .authorizers
                    .borrow()
                    .values()
                    .any(|(a, _)| Some(a) == token.as_ref());
                self.custom_sent.borrow_mut().push((token, body));
                FakeAnswer::json(if valid {
                    json!({"errcode": 0, "errmsg": "ok"})
                } else {
                    json!({"errcode": 40001, "errmsg": "invalid credential"})
                })
            }
            _ => FakeAnswer::json(json!({"errcode": 404, "errmsg": "fake: no such api"})),
        }
    }
}

struct P {
    clock: FakeClock,
    store: MemoryStore,
    http: FakeHttp,
    queue: FakeQueue,
    api: Rc<Api>,
    relay: Relay<FakeClock, MemoryStore, LocalCoordinator, FakeHttp, FakeQueue, SoftwareCipher>,
}

fn platform(extra: &[(&str, &str)]) -> P {
    let clock = FakeClock::at(NOW * 1000);
    let mut pairs = vec![
        (
            "WECHAT_ACCOUNTS",
            r#"{"platform": {"kind": "component", "app_id": "wx134c8103faa5a59e"}}"#,
        ),
        ("WECHAT_PLATFORM_TOKEN", TOKEN),
        ("WECHAT_PLATFORM_ENCODING_AES_KEY", KEY),
        ("WECHAT_PLATFORM_APP_SECRET", "component-secret"),
        ("WECHAT_API_BASE", "http://wechat.test"),
        ("FORWARD_URLS", "http://hooks.test/a"),
    ];
    pairs.extend_from_slice(extra);
    let api = Rc::new(Api::default());
    let a = api.clone();
    let http = FakeHttp::new(&clock, move |seen| {
        if seen
            .request
            .url()
            .is_some_and(|u| u.starts_with("http://wechat.test/"))
        {
            Ok(a.answer(seen))
        } else {
            Ok(FakeAnswer::status(200))
        }
    });
    let store = MemoryStore::new(&clock);
    let queue = FakeQueue::new(&clock);
    let relay = Relay {
        clock: clock.clone(),
        store: store.clone(),
        coordinator: LocalCoordinator::new(&clock),
        http: http.clone(),
        queue: Some(queue.clone()),
        cipher: SoftwareCipher,
        memory: Rc::new(Memory::default()),
        config: Rc::new(config(&pairs)),
    };
    P {
        clock,
        store,
        http,
        queue,
        api,
        relay,
    }
}

impl P {
    fn platform(&self) -> Platform<'_, FakeClock, MemoryStore, FakeHttp> {
        Platform::new(
            self.relay
                .credentials(self.relay.config.account("platform").unwrap()),
        )
        .unwrap()
    }

    /// A push to the authorization-event URL, as WeChat sends it.
    fn push(&self, xml: &str) -> Result<String, crate::error::Error> {
        let envelope_xml = xml.to_owned();
        let (q, b) = callback(
            TOKEN,
            KEY,
            COMPONENT,
            &envelope_xml,
            Sent::Safe,
            self.clock.now_secs(),
            "31337",
        );
        let body = String::from_utf8(b).unwrap().replace(
            "<ToUserName><![CDATA[gh_test]]></ToUserName>",
            &format!("<AppId><![CDATA[{COMPONENT}]]></AppId>"),
        );
        let answer =
            self.clock
                .run(self.relay.receive("platform", &q, body.as_bytes(), [7; 32]))?;
        if let Some(bg) = answer.background {
            self.clock.run(bg);
        }
        Ok(answer.body)
    }

    fn ticket(&self, ticket: &str, create_time: u64) -> Result<String, crate::error::Error> {
        self.push(&format!("<xml><AppId><![CDATA[{COMPONENT}]]></AppId><CreateTime>{create_time}</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"))
    }

    fn authorized(&self, app: &str, code: &str) -> Result<String, crate::error::Error> {
        self.api
            .codes
            .borrow_mut()
            .insert(code.to_owned(), app.to_owned());
        self.push(&format!("<xml><AppId><![CDATA[{COMPONENT}]]></AppId><CreateTime>{}</CreateTime><InfoType><![CDATA[authorized]]></InfoType><AuthorizerAppid><![CDATA[{app}]]></AuthorizerAppid><AuthorizationCode><![CDATA[{code}]]></AuthorizationCode><AuthorizationCodeExpiredTime>{}</AuthorizationCodeExpiredTime><PreAuthCode><![CDATA[preauthcode@@@x]]></PreAuthCode></xml>", self.clock.now_secs(), self.clock.now_secs() + 600))
    }

    fn count(&self, path: &str) -> usize {
        self.http.count(path)
    }

    fn forwarded(&self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(mut m) = self.queue.take_next() {
            m.attempts += 1;
            assert_eq!(
                self.clock
                    .run(self.relay.consume(&m.text, m.attempts, m.enqueued_ms)),
                Verdict::Ack
            );
        }
        for s in self.http.requests() {
            if s.path() == "/a" {
                out.push(serde_json::from_slice(s.request.body.as_deref().unwrap()).unwrap());
            }
        }
        out
    }
}

#[test]
fn the_verify_ticket_is_stored_newest_wins_and_never_forwarded() {
    let p = platform(&[]);
    assert_eq!(p.ticket("ticket@@@older", NOW - 600).unwrap(), "success");
    assert_eq!(p.ticket("ticket@@@newest", NOW).unwrap(), "success");
    assert_eq!(p.ticket("ticket@@@stale", NOW - 1200).unwrap(), "success");
    let stored: Ticket =
        serde_json::from_str(&p.store.peek(&ticket_key("platform")).unwrap()).unwrap();
    assert_eq!(stored.ticket, "ticket@@@newest");
    assert!(p.store.expiry_of(&ticket_key("platform")).unwrap() >= (NOW + 12 * 3600) * 1000);
    assert!(p.forwarded().is_empty());
}

#[test]
fn the_component_token_needs_a_ticket_and_asks_for_the_push_once_an_hour() {
    let p = platform(&[]);
    let creds = p
        .relay
        .credentials(p.relay.config.account("platform").unwrap());
    let e = p.clock.run(creds.access_token()).unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "no_verify_ticket"));
    assert!(e.to_string().contains("component_verify_ticket"));
    let _ = p.clock.run(creds.access_token());
    assert_eq!(
        p.count("/cgi-bin/component/api_start_push_ticket"),
        1,
        "once an hour"
    );
    let asked = p
        .http
        .requests()
        .into_iter()
        .find(|s| s.path() == "/cgi-bin/component/api_start_push_ticket")
        .unwrap();
    assert_eq!(
        asked.json(),
        json!({"component_appid": COMPONENT, "component_secret": "component-secret"})
    );
    p.clock.advance(3_601_000);
    let _ = p.clock.run(creds.access_token());
    assert_eq!(p.count("/cgi-bin/component/api_start_push_ticket"), 2);

    p.ticket("ticket@@@newest", p.clock.now_secs()).unwrap();
    let t = p.clock.run(creds.access_token()).unwrap();
    assert_eq!(Some(t.value.clone()), *p.api.component_token.borrow());
    let asked = p
        .http
        .requests()
        .into_iter()
        .find(|s| s.path() == "/cgi-bin/component/api_component_token")
        .unwrap();
    assert_eq!(
        asked.json(),
        json!({"component_appid": COMPONENT, "component_appsecret": "component-secret", "component_verify_ticket": "ticket@@@newest"})
    );
    // Stored and served; refreshed ahead by the cron.
    assert_eq!(p.clock.run(creds.access_token()).unwrap().value, t.value);
    p.clock.advance((7200 - 600) * 1000);
    p.clock.run(creds.refresh_ahead());
    assert_ne!(p.clock.run(creds.access_token()).unwrap().value, t.value);
}

#[test]
fn an_authorization_is_exchanged_once_whichever_path_comes_first() {
    // The push first, then the redirect page's POST.
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    assert_eq!(
        p.authorized(MERCHANT, "queryauthcode@@@one").unwrap(),
        "success"
    );
    let done = p
        .clock
        .run(p.platform().exchange("queryauthcode@@@one"))
        .unwrap();
    assert_eq!(done.authorizer_app_id, MERCHANT);
    assert_eq!(done.func_info[0]["funcscope_category"]["id"], 1);
    assert_eq!(p.count("/cgi-bin/component/api_query_auth"), 1);
    let record: Authorizer =
        serde_json::from_str(&p.store.peek(&authorizer_key("platform", MERCHANT)).unwrap())
            .unwrap();
    assert_eq!(record.refresh_token, format!("refreshtoken@@@{MERCHANT}_0"));
    assert_eq!(
        p.store.expiry_of(&authorizer_key("platform", MERCHANT)),
        None,
        "kept without expiry"
    );
    // The event is forwarded.
    let events = p.forwarded();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["event"].as_str(),
            events[0]["app_id"].as_str()
        ),
        (Some("component"), Some("authorized"), Some(MERCHANT))
    );
    assert_eq!(
        (events[0]["from"].as_str(), events[0]["to"].as_str()),
        (Some(MERCHANT), Some(COMPONENT))
    );

    // The redirect first, then the push.
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.api
        .codes
        .borrow_mut()
        .insert("queryauthcode@@@two".into(), MERCHANT.into());
    p.clock
        .run(p.platform().exchange("queryauthcode@@@two"))
        .unwrap();
    p.authorized(MERCHANT, "queryauthcode@@@two").unwrap();
    assert_eq!(p.count("/cgi-bin/component/api_query_auth"), 1);
}

#[test]
fn a_lost_exchange_race_waits_for_the_winners_record() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.api
        .codes
        .borrow_mut()
        .insert("queryauthcode@@@race".into(), MERCHANT.into());
    // Another location exchanged the code a moment ago; its record lands 500 ms later.
    p.api
        .used_codes
        .borrow_mut()
        .push("queryauthcode@@@race".into());
    let done = Authorization {
        authorizer_app_id: MERCHANT.into(),
        func_info: json!([]),
        expires_at: NOW + 7200,
    };
    let store = p.store.clone();
    let key = code_key("platform", "queryauthcode@@@race");
    let clock = p.clock.clone();
    let writer = async move {
        clock.sleep(500).await;
        store.insert(&key, &serde_json::to_string(&done).unwrap());
    };
    let (result, ()) = p.clock.run(futures_util::future::join(
        p.platform().exchange("queryauthcode@@@race"),
        writer,
    ));
    assert_eq!(result.unwrap().authorizer_app_id, MERCHANT);
    // With nobody to wait for, the refusal stands (with its hint).
    let e = p
        .clock
        .run(p.platform().exchange("queryauthcode@@@nobody"))
        .unwrap_err();
    assert!(
        e.render(crate::error::Format::Json)
            .body
            .contains("10 minutes"),
        "{e}"
    );
}

#[test]
fn authorizer_tokens_refresh_with_rotated_refresh_tokens_kept() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.authorized(MERCHANT, "queryauthcode@@@r").unwrap();
    let platform = p.platform();
    let first = p.clock.run(platform.authorizer(MERCHANT).token()).unwrap();
    assert_eq!(first.value, format!("AUTHORIZER_ACCESS_{MERCHANT}_0"));
    assert_eq!(
        p.count("/cgi-bin/component/api_authorizer_token"),
        0,
        "fresh from the exchange"
    );
    for n in 1..=2 {
        p.clock.advance((7200 - 290) * 1000);
        let t = p.clock.run(platform.authorizer(MERCHANT).token()).unwrap();
        assert_eq!(t.value, format!("AUTHORIZER_ACCESS_{MERCHANT}_{n}"));
        let record: Authorizer =
            serde_json::from_str(&p.store.peek(&authorizer_key("platform", MERCHANT)).unwrap())
                .unwrap();
        assert_eq!(
            record.refresh_token,
            format!("refreshtoken@@@{MERCHANT}_{n}"),
            "rotation {n} kept"
        );
    }
    assert_eq!(p.count("/cgi-bin/component/api_authorizer_token"), 2);
    // Forced: at most once a minute.
    assert!(
        p.clock
            .run(platform.authorizer(MERCHANT).force_refresh(None))
            .unwrap()
            .refreshed
    );
    assert!(
        !p.clock
            .run(platform.authorizer(MERCHANT).force_refresh(None))
            .unwrap()
            .refreshed
    );
    let e = p
        .clock
        .run(platform.authorizer("wx0000000000000000").token())
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (404, "unknown_authorizer"));
}

#[test]
fn unauthorized_deletes_the_tokens_and_is_forwarded_like_every_other_push() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.authorized(MERCHANT, "queryauthcode@@@u").unwrap();
    assert!(p
        .store
        .peek(&authorizer_key("platform", MERCHANT))
        .is_some());
    p.push(&format!("<xml><AppId><![CDATA[{COMPONENT}]]></AppId><CreateTime>{}</CreateTime><InfoType><![CDATA[unauthorized]]></InfoType><AuthorizerAppid><![CDATA[{MERCHANT}]]></AuthorizerAppid></xml>", NOW + 5)).unwrap();
    assert!(p
        .store
        .peek(&authorizer_key("platform", MERCHANT))
        .is_none());
    let e = p
        .clock
        .run(p.platform().authorizer(MERCHANT).token())
        .unwrap_err();
    assert_eq!(e.code(), "unknown_authorizer");
    p.push(&format!("<xml><AppId>{COMPONENT}</AppId><CreateTime>{}</CreateTime><InfoType>notify_third_fasteregister</InfoType><appid>wxnewmini00000000</appid><status>0</status><auth_code>c</auth_code><msg>OK</msg><info><name>n</name></info></xml>", NOW + 6)).unwrap();
    let events = p.forwarded();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["authorized", "unauthorized", "notify_third_fasteregister"]
    );
    assert_eq!(events[2]["app_id"], "wxnewmini00000000");
    assert_eq!(events[2]["data"]["info"]["name"], "n");
}

#[test]
fn the_official_message_vector_for_an_authorizer() {
    let p = platform(&[]);
    let v = crate::testing::official_vector("Third-party platform doc message push");
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    p.clock.set_secs(s("timestamp").parse().unwrap());
    let q = Query::from_pairs([
        ("signature", s("signature")),
        ("timestamp", s("timestamp")),
        ("nonce", s("nonce")),
        ("openid", s("openid")),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", s("msg_signature")),
    ]);
    let body = format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        s("to_user_name"),
        s("encrypt")
    );
    let answer = p
        .clock
        .run(
            p.relay
                .receive_for_authorizer("platform", MERCHANT, &q, body.as_bytes(), [1; 32]),
        )
        .unwrap();
    assert_eq!(answer.body, "success");
    let events = p.forwarded();
    assert_eq!(
        (events[0]["account"].as_str(), events[0]["app_id"].as_str()),
        (Some("platform"), Some(MERCHANT))
    );
    assert_eq!(events[0]["event"], "debug_demo");
    assert_eq!(events[0]["data"]["debug_str"], "hello world");
    // Sent to the platform's own URL, or for another segment, it is refused.
    assert_eq!(
        p.clock
            .run(p.relay.receive_for_authorizer(
                "platform",
                "not-an-appid",
                &q,
                body.as_bytes(),
                [1; 32]
            ))
            .err()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        p.clock
            .run(
                p.relay
                    .receive_for_authorizer("default", MERCHANT, &q, body.as_bytes(), [1; 32])
            )
            .err()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn authorizer_messages_refuse_plaintext_other_tokens_and_other_receive_ids() {
    let p = platform(&[]);
    let xml = testing::text_message("o_user", "hi", 1, NOW);
    for (token, receive_id, mode, status) in [
        (TOKEN, MERCHANT, Sent::Safe, 401),
        ("other", COMPONENT, Sent::Safe, 401),
        (TOKEN, COMPONENT, Sent::Plain, 400),
    ] {
        let (q, b) = callback(token, KEY, receive_id, &xml, mode, NOW, "n");
        let e = p
            .clock
            .run(
                p.relay
                    .receive_for_authorizer("platform", MERCHANT, &q, &b, [1; 32]),
            )
            .err()
            .unwrap();
        assert_eq!(e.status(), status, "{token} {receive_id} {mode:?}: {e}");
    }
    let (q, b) = callback(TOKEN, KEY, COMPONENT, &xml, Sent::Safe, NOW, "n");
    assert!(p
        .clock
        .run(
            p.relay
                .receive_for_authorizer("platform", MERCHANT, &q, &b, [1; 32])
        )
        .is_ok());
    assert!(p.forwarded().len() == 1);
}

#[test]
fn authorizer_replies_are_sealed_for_the_component() {
    let p = platform(&[("REPLY_URL", "http://replies.test/reply")]);
    let api = p.api.clone();
    p.http.set_handler(move |seen| {
        Ok(if seen.path() == "/reply" {
            FakeAnswer::json(json!({"type": "text", "content": "hello merchant user"}))
        } else if seen
            .request
            .url()
            .is_some_and(|u| u.starts_with("http://wechat.test/"))
        {
            api.answer(seen)
        } else {
            FakeAnswer::status(200)
        })
    });
    let xml = testing::text_message("o_user", "hi", 2, NOW);
    let (q, b) = callback(TOKEN, KEY, COMPONENT, &xml, Sent::Safe, NOW, "n");
    let answer = p
        .clock
        .run(
            p.relay
                .receive_for_authorizer("platform", MERCHANT, &q, &b, [1; 32]),
        )
        .unwrap();
    let reply = testing::open_reply(&answer.body, TOKEN, KEY, COMPONENT);
    assert_eq!(reply.child_text("Content"), Some("hello merchant user"));
}

#[test]
fn the_release_check_passes_with_no_receiver() {
    let p = platform(&[("REPLY_URL", "http://replies.test/reply")]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    let test_account = RELEASE_TEST_ACCOUNTS[0];
    // Text: the passive reply, encrypted.
    let xml = testing::text_message("o_tester", RELEASE_TEXT, 3, NOW);
    let (q, b) = callback(TOKEN, KEY, COMPONENT, &xml, Sent::Safe, NOW, "n");
    let answer = p
        .clock
        .run(
            p.relay
                .receive_for_authorizer("platform", test_account, &q, &b, [1; 32]),
        )
        .unwrap();
    let reply = testing::open_reply(&answer.body, TOKEN, KEY, COMPONENT);
    assert_eq!(
        reply.child_text("Content"),
        Some("TESTCOMPONENT_MSG_TYPE_TEXT_callback")
    );
    assert_eq!(reply.child_text("ToUserName"), Some("o_tester"));
    // QUERY_AUTH_CODE: empty at once, then the code exchanged and the API message sent.
    p.api
        .codes
        .borrow_mut()
        .insert("queryauthcode@@@release".into(), test_account.into());
    let xml = testing::text_message(
        "o_tester",
        "QUERY_AUTH_CODE:queryauthcode@@@release",
        4,
        NOW,
    );
    let (q, b) = callback(TOKEN, KEY, COMPONENT, &xml, Sent::Safe, NOW, "n");
    let answer = p
        .clock
        .run(
            p.relay
                .receive_for_authorizer("platform", test_account, &q, &b, [1; 32]),
        )
        .unwrap();
    assert_eq!(answer.body, "");
    p.clock.run(answer.background.unwrap());
    let sent = p.api.custom_sent.borrow().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0,
        Some(format!("AUTHORIZER_ACCESS_{test_account}_0"))
    );
    assert_eq!(
        sent[0].1,
        json!({"touser": "o_tester", "msgtype": "text", "text": {"content": "queryauthcode@@@release_from_api"}})
    );
    // Neither went to the receivers or the reply receiver.
    assert!(p.forwarded().is_empty());
    assert!(p.http.requests().iter().all(|s| s.path() != "/reply"));
    // The same texts from a real merchant are ordinary messages.
    let xml = testing::text_message("o_user", RELEASE_TEXT, 5, NOW);
    let (q, b) = callback(TOKEN, KEY, COMPONENT, &xml, Sent::Safe, NOW, "n");
    p.clock
        .run(
            p.relay
                .receive_for_authorizer("platform", MERCHANT, &q, &b, [1; 32]),
        )
        .unwrap();
    assert_eq!(p.forwarded().len(), 1);
}

#[test]
fn the_authorize_url_the_authorizers_and_sync() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    let links = p
        .clock
        .run(
            p.platform()
                .authorize_url(Some("https://saas.example/wechat/done?x=1"), None, None),
        )
        .unwrap();
    assert_eq!(links["pre_auth_code"], "preauthcode@@@x+y/z");
    assert_eq!(links["expires_at"], NOW + 1800);
    let pc = links["pc_url"].as_str().unwrap();
    assert!(pc.starts_with("https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=wx134c8103faa5a59e&pre_auth_code=preauthcode%40%40%40x%2By%2Fz&redirect_uri=https%3A%2F%2Fsaas.example%2Fwechat%2Fdone%3Fx%3D1&auth_type=3"), "{pc}");
    let mobile = links["mobile_url"].as_str().unwrap();
    assert!(mobile.starts_with("https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1&component_appid="));
    assert!(mobile.ends_with("#wechat_redirect"));
    let with_biz = p
        .clock
        .run(
            p.platform()
                .authorize_url(Some("https://saas.example/"), Some("2"), Some(MERCHANT)),
        )
        .unwrap();
    assert!(with_biz["pc_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("auth_type=2&biz_appid={MERCHANT}")));
    for (r, t, b, bad) in [
        (None, None, None, "redirect_uri"),
        (Some("javascript:x"), None, None, "redirect_uri"),
        (Some("https://a.example/"), Some("9"), None, "auth_type"),
        (Some("https://a.example/"), None, Some("x"), "biz_appid"),
    ] {
        let e = p
            .clock
            .run(p.platform().authorize_url(r, t, b))
            .unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }

    p.authorized(MERCHANT, "queryauthcode@@@s").unwrap();
    let listed = p.clock.run(p.platform().authorizers(None, None)).unwrap();
    assert_eq!(listed["authorizers"][0]["app_id"], MERCHANT);
    assert!(
        listed.to_string().find("refreshtoken").is_none(),
        "no refresh token leaves the relay"
    );
    // Lose the record; WeChat still knows the authorizer: sync recovers its refresh token.
    p.store
        .insert(&authorizer_key("platform", MERCHANT), "garbage");
    p.api.authorizers.borrow_mut().insert(
        "wx1111111111111111".into(),
        ("A".into(), "refreshtoken@@@other".into()),
    );
    let s = p.clock.run(p.platform().sync(None)).unwrap();
    assert_eq!(s["total"], 2);
    let record: Authorizer = serde_json::from_str(
        &p.store
            .peek(&authorizer_key("platform", "wx1111111111111111"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record.refresh_token, "refreshtoken@@@other");
    assert_eq!(record.access_token, None);
}

#[test]
fn component_errcodes_come_back_with_hints() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.api
        .errors
        .borrow_mut()
        .insert("/cgi-bin/component/api_create_preauthcode".into(), 61004);
    let e = p
        .clock
        .run(
            p.platform()
                .authorize_url(Some("https://a.example/"), None, None),
        )
        .unwrap_err();
    let body: Value = serde_json::from_str(&e.render(crate::error::Format::Json).body).unwrap();
    assert_eq!((e.status(), body["errcode"].as_i64()), (502, Some(61004)));
    assert!(body["hint"].as_str().unwrap().contains("api_base"));
}

#[test]
fn authorization_requests() {
    assert_eq!(
        auth_code_of(br#"{"auth_code": " queryauthcode@@@x "}"#),
        Ok("queryauthcode@@@x".into())
    );
    for bad in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        br#"{"auth_code": 5}"#,
        br#"{"auth_code": ""}"#,
        b"auth_code=x",
        b"\xff",
    ] {
        assert_eq!(
            auth_code_of(bad).unwrap_err().status(),
            400,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!(r#"{{"auth_code": "{}"}}"#, "a".repeat(600));
    assert!(auth_code_of(long.as_bytes()).is_err());
}

#[test]
fn hostile_pushes_never_panic() {
    let p = platform(&[]);
    let seeds = [
        format!("<xml><AppId>{COMPONENT}</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>"),
        format!("<xml><AppId>{COMPONENT}</AppId><CreateTime>1</CreateTime><InfoType>authorized</InfoType><AuthorizerAppid>{MERCHANT}</AuthorizerAppid><AuthorizationCode>c</AuthorizationCode></xml>"),
        format!("<xml><AppId>{COMPONENT}</AppId><InfoType>unauthorized</InfoType></xml>"),
        "{\"AppId\": 1}".to_owned(),
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    for seed in &seeds {
        for _ in 0..300 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % bytes.len();
                bytes[i] = (state >> 24) as u8;
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = p.push(&text);
        }
    }
    // An authenticated push with no InfoType is a 400, never forwarded.
    let e = p
        .push(&format!(
            "<xml><AppId>{COMPONENT}</AppId><CreateTime>1</CreateTime></xml>"
        ))
        .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[test]
fn twelve_hundred_merchants_sync_and_page_within_one_invocations_operations() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    for n in 0..1_200 {
        p.api.authorizers.borrow_mut().insert(
            format!("wx{n:016}"),
            (format!("A{n}"), format!("refreshtoken@@@{n}")),
        );
    }
    // Sync window by window, resuming at next_offset; each call well under 1,000 operations.
    let mut offset: Option<String> = None;
    let (mut created, mut calls) = (0, 0);
    loop {
        p.store.reset_ops();
        let s = p.clock.run(p.platform().sync(offset.as_deref())).unwrap();
        assert!(p.store.reset_ops() < 1_000, "{s}");
        assert_eq!(s["total"], 1_200);
        created += s["created"].as_u64().unwrap();
        calls += 1;
        match s["next_offset"].as_u64() {
            Some(next) => offset = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!((created, calls), (1_200, 6));
    // A second pass changes nothing and says so.
    let again = p.clock.run(p.platform().sync(Some("1000"))).unwrap();
    assert_eq!(
        (again["unchanged"].as_u64(), again["created"].as_u64()),
        (Some(200), Some(0))
    );
    // Writes failing: counted as failed, not as saved.
    p.api.authorizers.borrow_mut().insert(
        "wx9999999999999999".into(),
        ("A".into(), "refreshtoken@@@new".into()),
    );
    p.store.fail_writes.set(true);
    // The new merchant sorts last: the window from 1,001 reaches it.
    let s = p.clock.run(p.platform().sync(Some("1001"))).unwrap();
    p.store.fail_writes.set(false);
    assert_eq!(
        (s["created"].as_u64(), s["failed"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(p.clock.run(p.platform().sync(Some("soon"))).is_err());

    // Listing: pages of at most 1,000, each reading only itself; a broken record is shown.
    p.store
        .insert(&authorizer_key("platform", "wx0000000000000007"), "garbage");
    let mut seen = 0;
    let mut broken = 0;
    let mut cursor: Option<String> = None;
    loop {
        p.store.reset_ops();
        let page = p
            .clock
            .run(p.platform().authorizers(Some("1000"), cursor.as_deref()))
            .unwrap();
        assert!(p.store.reset_ops() <= 1_001);
        for a in page["authorizers"].as_array().unwrap() {
            seen += 1;
            if a.get("error").is_some() {
                broken += 1;
                assert_eq!(a["app_id"], "wx0000000000000007");
            }
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen, broken), (1_200, 1));
}

// --- state races (the platform's object makes the store exact for every location) ----------

/// The same platform in another isolate: its own memory, the same (exact) store.
fn elsewhere(
    p: &P,
) -> Relay<FakeClock, MemoryStore, LocalCoordinator, FakeHttp, FakeQueue, SoftwareCipher> {
    Relay {
        memory: Rc::new(Memory::default()),
        ..p.relay.clone()
    }
}

#[test]
fn the_code_exchanged_from_both_sides_at_once_asks_wechat_once() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    p.api
        .codes
        .borrow_mut()
        .insert("queryauthcode@@@both".into(), MERCHANT.into());
    p.http
        .delay_for
        .borrow_mut()
        .insert("/cgi-bin/component/api_query_auth".into(), 800);
    let other = elsewhere(&p);
    let here = p.platform();
    let there = other.platform("platform").unwrap();
    let (a, b) = p.clock.run(futures_util::future::join(
        here.exchange("queryauthcode@@@both"),
        there.exchange("queryauthcode@@@both"),
    ));
    assert_eq!(
        a.unwrap(),
        b.unwrap(),
        "the second gets the first one's record"
    );
    assert_eq!(p.count("/cgi-bin/component/api_query_auth"), 1);
}

#[test]
fn a_failed_exchange_releases_its_claim_so_the_code_can_be_tried_again() {
    let p = platform(&[]);
    p.ticket("ticket@@@newest", NOW).unwrap();
    // Unknown to the fake WeChat at first: refused.
    assert!(p
        .clock
        .run(p.platform().exchange("queryauthcode@@@later"))
        .is_err());
    p.api
        .codes
        .borrow_mut()
        .insert("queryauthcode@@@later".into(), MERCHANT.into());
    let done = p
        .clock
        .run(p.platform().exchange("queryauthcode@@@later"))
        .unwrap();
    assert_eq!(done.authorizer_app_id, MERCHANT);
}

#[test]
fn a_revocation_during_a_refresh_wins_and_so_does_a_reauthorization() {
    for reauthorize in [false, true] {
        let p = platform(&[]);
        p.ticket("ticket@@@newest", NOW).unwrap();
        p.authorized(MERCHANT, "queryauthcode@@@first").unwrap();
        p.clock.advance((7200 - 290) * 1000);
        p.http
            .delay_for
            .borrow_mut()
            .insert("/cgi-bin/component/api_authorizer_token".into(), 2_000);
        let key = authorizer_key("platform", MERCHANT);
        let platform = p.platform();
        let meanwhile = async {
            p.clock.sleep(1_200).await;
            if reauthorize {
                p.api
                    .codes
                    .borrow_mut()
                    .insert("queryauthcode@@@second".into(), MERCHANT.into());
                platform
                    .exchange("queryauthcode@@@second")
                    .await
                    .map(|_| ())
            } else {
                platform.revoke(MERCHANT).await;
                Ok(())
            }
        };
        let (refreshed, done) = p.clock.run(futures_util::future::join(
            platform.authorizer(MERCHANT).token(),
            meanwhile,
        ));
        done.unwrap();
        let stored = p.store.peek(&key);
        if reauthorize {
            let record: Authorizer = serde_json::from_str(&stored.unwrap()).unwrap();
            assert_eq!(
                record.refresh_token,
                format!("refreshtoken@@@{MERCHANT}_0"),
                "the new authorization's record, not the refresh's"
            );
            assert!(refreshed.is_ok());
        } else {
            assert_eq!(stored, None, "the revoked record stays deleted");
            assert_eq!(refreshed.unwrap_err().code(), "unknown_authorizer");
        }
    }
}
