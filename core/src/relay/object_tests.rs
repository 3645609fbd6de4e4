//! Credentials at the account's object, end to end: several isolates (each its own memory and
//! KV view) sharing one object, as locations do; refused tokens, the budget, eviction, an
//! unreachable object, the cron.

use futures_util::future::join_all;

use super::*;
use crate::coordinator::Request;

type TestRelay =
    Relay<FakeClock, MemoryStore, LocalCoordinator, FakeHttp, FakeQueue, SoftwareCipher>;

/// Another isolate in another location: its own memory and its own KV view, the same objects.
fn isolate(t: &T) -> TestRelay {
    Relay {
        memory: Rc::default(),
        store: MemoryStore::new(&t.clock),
        ..t.relay.clone()
    }
}

/// The Worker's store over `t`'s objects (with `coordinator` in front of them), the named
/// platforms' records and every dead letter at their objects, a KV of its own.
fn shared_store<K>(
    t: &T,
    coordinator: K,
    platforms: &[&str],
) -> crate::coordinator::SharedStore<FakeClock, K, MemoryStore> {
    crate::coordinator::SharedStore {
        clock: t.clock.clone(),
        coordinator,
        local: MemoryStore::new(&t.clock),
        platforms: Rc::new(platforms.iter().map(|p| (*p).to_owned()).collect()),
        objects: true,
    }
}

fn token_calls(t: &T) -> Vec<Seen> {
    t.http
        .requests()
        .into_iter()
        .filter(|s| s.path().ends_with("token"))
        .collect()
}

fn token_of(t: &T, relay: &TestRelay) -> Result<serde_json::Value, Error> {
    t.clock.run(relay.token("default", None))
}

#[test]
fn isolates_everywhere_share_one_upstream_call_and_one_token() {
    let t = world(&[], true);
    t.http
        .delay_for
        .borrow_mut()
        .insert("/cgi-bin/stable_token".into(), 400);
    let isolates: Vec<TestRelay> = (0..5).map(|_| isolate(&t)).collect();
    let all = t
        .clock
        .run(join_all(isolates.iter().map(|r| r.token("default", None))));
    let tokens: std::collections::BTreeSet<String> = all
        .into_iter()
        .map(|r| r.unwrap()["access_token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        token_calls(&t).len(),
        1,
        "one upstream call for every location"
    );
    // The token lives in the object's storage, not in KV.
    assert!(t
        .coordinator
        .store_of("default")
        .peek_json("credential:default:access_token")
        .is_some());
    assert!(isolates.iter().all(|r| r.store.keys().is_empty()));
}

#[test]
fn a_fresh_token_is_served_from_the_isolates_memory_without_a_request() {
    let t = world(&[], true);
    let first = token_of(&t, &t.relay).unwrap();
    let asked = t.coordinator.credential_requests();
    for _ in 0..5 {
        assert_eq!(token_of(&t, &t.relay).unwrap(), first);
    }
    assert_eq!(t.coordinator.credential_requests(), asked);
    // Within 5 minutes of expiry the object is asked again (and asks WeChat).
    t.clock.advance((7200 - 299) * 1000);
    token_of(&t, &t.relay).unwrap();
    assert_eq!(t.coordinator.credential_requests(), asked + 1);
    assert_eq!(token_calls(&t).len(), 2);
}

#[test]
fn two_locations_refusing_the_same_token_cause_one_forced_refresh() {
    let t = world(&[], true);
    let first = token_of(&t, &t.relay).unwrap();
    let refused = json!({"access_token": first["access_token"]}).to_string();
    t.http
        .delay_for
        .borrow_mut()
        .insert("/cgi-bin/stable_token".into(), 400);
    let (a, b) = (isolate(&t), isolate(&t));
    let both = t.clock.run(join_all([
        a.refresh_token("default", None, refused.as_bytes()),
        b.refresh_token("default", None, refused.as_bytes()),
    ]));
    let (x, y) = (both[0].clone().unwrap(), both[1].clone().unwrap());
    assert_eq!(x["access_token"], y["access_token"]);
    assert_ne!(x["access_token"], first["access_token"]);
    let forced: Vec<Seen> = token_calls(&t)
        .into_iter()
        .filter(|s| s.json()["force_refresh"] == true)
        .collect();
    assert_eq!(
        forced.len(),
        1,
        "the second waited for the first's new token"
    );
    // Each isolate now serves the new token from memory.
    assert_eq!(token_of(&t, &a).unwrap()["access_token"], x["access_token"]);
}

#[test]
fn the_daily_budget_holds_for_every_location_and_the_429_passes_through() {
    let t = world(&[], true);
    for _ in 0..crate::token::FORCED_REFRESH_DAILY_BUDGET {
        // A new isolate each time: the budget is the object's, not an isolate's.
        let r = isolate(&t);
        assert_eq!(
            t.clock.run(r.refresh_token("default", None, b"")).unwrap()["refreshed"],
            true
        );
        t.clock.advance(61_000);
    }
    let e = t
        .clock
        .run(isolate(&t).refresh_token("default", None, b""))
        .unwrap_err();
    assert_eq!(e.status(), 429);
    assert!(e.headers().iter().any(|(n, _)| *n == "retry-after"));
    let body: serde_json::Value =
        serde_json::from_str(&e.render(crate::error::Format::Json).body).unwrap();
    assert_eq!(body["error"], "refresh_budget_spent");
    assert!(
        body["access_token"].is_string(),
        "the stored token comes with it"
    );
    assert!(
        !e.to_string()
            .contains(body["access_token"].as_str().unwrap()),
        "never in a log line"
    );
}

#[test]
fn wechats_refusal_reaches_the_caller_as_the_object_rendered_it() {
    let t = world(&[], true);
    t.wechat.token_errors.borrow_mut().push(40164);
    let e = token_of(&t, &t.relay).unwrap_err();
    assert_eq!(e.status(), 502);
    let body: serde_json::Value =
        serde_json::from_str(&e.render(crate::error::Format::Json).body).unwrap();
    assert_eq!(body["errcode"], 40164);
    assert!(body["hint"].as_str().unwrap().contains("IP"), "{body}");
}

#[test]
fn an_evicted_object_serves_the_stored_token_and_an_unreachable_one_falls_back_to_kv() {
    let t = world(&[], true);
    let first = token_of(&t, &t.relay).unwrap();
    t.coordinator.evict();
    let fresh = isolate(&t);
    assert_eq!(token_of(&t, &fresh).unwrap(), first);
    assert_eq!(token_calls(&t).len(), 1);
    // The namespace is unreachable: this isolate fetches itself, over KV, and says so.
    t.coordinator.unreachable.set(true);
    testing::take_logs();
    let alone = isolate(&t);
    let got = token_of(&t, &alone).unwrap();
    assert!(got["access_token"].is_string());
    assert!(alone
        .store
        .peek_json("credential:default:access_token")
        .is_some());
    assert!(testing::take_logs()
        .iter()
        .any(|l| l.contains("did not answer a credential request")));
}

#[test]
fn the_pass_through_names_the_refused_token_so_a_looping_backend_spends_one_refresh() {
    let t = world(&[], true);
    let first = token_of(&t, &t.relay).unwrap();
    // WeChat refuses the first token once; then every call succeeds.
    let refused = first["access_token"].as_str().unwrap().to_owned();
    let w = t.wechat.clone();
    t.wechat.routes.borrow_mut().insert(
        "/cgi-bin/user/info".into(),
        Box::new(move |_, token| {
            if token.as_deref() == Some(refused.as_str()) {
                FakeAnswer::json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
            } else {
                let _ = &w;
                FakeAnswer::json(json!({"openid": "o1"}))
            }
        }),
    );
    let call = || Call {
        method: Method::Get,
        wechat_path: "cgi-bin/user/info".into(),
        query: vec![("openid".into(), "o1".into())],
        content_type: None,
        body: None,
    };
    let (a, b) = (isolate(&t), isolate(&t));
    // Both isolates still hold the first token in memory.
    token_of(&t, &a).unwrap();
    token_of(&t, &b).unwrap();
    for r in [&a, &b] {
        match t
            .clock
            .run(r.pass_through("default", None, call()))
            .unwrap()
        {
            Passed::Read { body, .. } => {
                assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["openid"],
                    "o1"
                )
            }
            Passed::Streamed(_) => panic!("streamed"),
        }
    }
    let forced = token_calls(&t)
        .iter()
        .filter(|s| s.json()["force_refresh"] == true)
        .count();
    assert_eq!(forced, 1, "the second isolate was handed the new token");
}

#[test]
fn the_cron_renews_at_the_object_and_skips_what_it_knows_is_fresh() {
    let t = world(&[], true);
    let account = t.relay.config.account("default").unwrap().clone();
    t.clock.run(t.relay.refresh_ahead(&account));
    assert_eq!(token_calls(&t).len(), 1);
    let asked = t.coordinator.credential_requests();
    t.clock.run(t.relay.refresh_ahead(&account));
    assert_eq!(
        t.coordinator.credential_requests(),
        asked,
        "known fresh: not asked"
    );
    // 15 minutes before expiry it is renewed, once for every location.
    t.clock.advance((7200 - 800) * 1000);
    t.clock.run(t.relay.refresh_ahead(&account));
    t.clock.run(isolate(&t).refresh_ahead(&account));
    assert_eq!(token_calls(&t).len(), 2);
    assert!(matches!(
        t.coordinator.asked.borrow().last(),
        Some((_, Request::RefreshAhead { .. }))
    ));
}

#[test]
fn a_page_of_dead_letters_is_one_request_to_its_object_with_every_record() {
    use crate::delivery::dead_letters;
    let t = world(&[], true);
    let shared = shared_store(&t, t.coordinator.clone(), &[]);
    for i in 0..150u32 {
        let key = format!("dead:default:evt_{i:032x}:aabbccdd");
        let record = if i == 7 {
            "{not json".to_owned()
        } else {
            let letter = dead_letters::DeadLetter::unreadable(&format!("message {i}"), "test", 0);
            serde_json::to_string(&letter).unwrap()
        };
        t.clock.run(shared.put(&key, &record, None)).unwrap();
    }
    let before = t.coordinator.asked.borrow().len();
    let (first, cursor) = t
        .clock
        .run(dead_letters::page(&shared, "dead:default:", None, 100))
        .unwrap();
    assert_eq!(
        t.coordinator.asked.borrow().len() - before,
        1,
        "one request"
    );
    assert_eq!(first.len(), 100);
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    // Each record as it was stored; an unreadable one listed with its key and why.
    let (key, read) = &first[7];
    assert!(key.contains(&format!("{:032x}", 7)) && read.is_err());
    let (_, read) = &first[8];
    assert_eq!(read.as_ref().unwrap().body, "message 8");
    assert_eq!(first.iter().filter(|(_, r)| r.is_ok()).count(), 99);
    let (second, end) = t
        .clock
        .run(dead_letters::page(
            &shared,
            "dead:default:",
            cursor.as_deref(),
            100,
        ))
        .unwrap();
    assert_eq!((second.len(), end), (50, None));
    assert!(first.last().unwrap().0 < second[0].0);
    // An object of the relay before this (a deploy in progress) does not know the request:
    // asked again the way it understands, a listing and a read per record.
    #[derive(Clone)]
    struct Older(crate::testing::LocalCoordinator);
    impl crate::coordinator::Coordinator for Older {
        async fn ask(
            &self,
            account: &str,
            request: &Request,
        ) -> Result<crate::coordinator::Response, crate::coordinator::CoordinationError> {
            if let Request::Store {
                record: crate::coordinator::StoreOp::ReadPage { .. },
            } = request
            {
                return Ok(crate::coordinator::Response::Failed {
                    error: crate::coordinator::NOT_UNDERSTOOD.into(),
                });
            }
            self.0.ask(account, request).await
        }
    }
    let older = shared_store(&t, Older(t.coordinator.clone()), &[]);
    let (same, _) = t
        .clock
        .run(dead_letters::page(&older, "dead:default:", None, 100))
        .unwrap();
    assert_eq!(
        same.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        first.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    // Without the objects (everything in KV), the same page through reads of each key.
    let local = MemoryStore::new(&t.clock);
    for (key, _) in first.iter().take(3) {
        t.clock.run(local.put(key, "{}", None)).unwrap();
    }
    let (kv, end) = t
        .clock
        .run(dead_letters::page(&local, "dead:default:", None, 100))
        .unwrap();
    assert_eq!((kv.len(), end), (3, None));
}

#[test]
fn the_shared_store_keeps_a_platforms_state_at_its_object_and_the_rest_local() {
    use crate::coordinator::SharedStore;
    let t = world(&[], true);
    let shared = shared_store(&t, t.coordinator.clone(), &["platform"]);
    let id = "evt_0123456789abcdef0123456789abcdef";
    for (key, object) in [
        ("authorizer:platform:wx1", "platform"),
        ("component:platform:ticket", "platform"),
        ("credential:platform:access_token", "platform"),
        (&format!("dead:default:{id}:aabbccdd"), "default"),
        (&format!("dead:shop:{id}:aabbccdd"), "shop"),
        ("dead:~relay:evt_1", "~relay"),
    ] {
        t.clock.run(shared.put(key, "v", None)).unwrap();
        assert_eq!(
            t.coordinator.store_of(object).peek(key).as_deref(),
            Some("v")
        );
        assert_eq!(shared.local.peek(key), None, "{key}");
    }
    let page = t
        .clock
        .run(shared.list_page("dead:shop:", None, 10))
        .unwrap();
    assert_eq!(page.keys.len(), 1);
    for key in [
        "credential:default:access_token",
        // What relays before the objects wrote stays where it is.
        &format!("dead:{id}:aabbccdd"),
        "dead:~unreadable:evt_1",
        "dead:Not-A-Name:x",
        "authorizer:other:wx1",
    ] {
        t.clock.run(shared.put(key, "v", None)).unwrap();
        assert_eq!(shared.local.peek(key).as_deref(), Some("v"), "{key}");
    }
    // Compare-and-set and take are exact at the object.
    assert!(!t
        .clock
        .run(shared.put_if("authorizer:platform:wx1", "w", Some("stale"), None))
        .unwrap());
    assert!(t
        .clock
        .run(shared.put_if("authorizer:platform:wx1", "w", Some("v"), None))
        .unwrap());
    assert_eq!(
        t.clock
            .run(shared.take("authorizer:platform:wx1"))
            .unwrap()
            .as_deref(),
        Some("w")
    );
    assert_eq!(
        t.clock.run(shared.take("authorizer:platform:wx1")).unwrap(),
        None
    );
    let page = t
        .clock
        .run(shared.list_page("component:platform:", None, 10))
        .unwrap();
    assert_eq!(page.keys, ["component:platform:ticket"]);
    // Unreachable: reads fall back to the local store, writes fail (the flows log them).
    t.coordinator.unreachable.set(true);
    shared.local.insert("component:platform:ticket", "from KV");
    assert_eq!(
        t.clock
            .run(shared.get("component:platform:ticket"))
            .unwrap()
            .as_deref(),
        Some("from KV")
    );
    assert!(t
        .clock
        .run(shared.put("component:platform:ticket", "x", None))
        .is_err());
    // A dead letter is only at its object: no fallback that would hide it.
    assert!(t
        .clock
        .run(shared.get(&format!("dead:default:{id}:aabbccdd")))
        .is_err());
    // A deployment without the objects keeps everything local.
    let without = SharedStore {
        objects: false,
        ..shared
    };
    t.clock
        .run(without.put("component:platform:ticket", "local", None))
        .unwrap();
    assert_eq!(
        without.local.peek("component:platform:ticket").as_deref(),
        Some("local")
    );
}

#[test]
fn the_status_shows_each_accounts_traffic_token_and_setup_without_a_secret() {
    use crate::coordinator::HEALTH_KEY;
    let t = world(
        &[(
            "WECHAT_ACCOUNTS",
            r#"{"shop": {"kind": "official", "app_id": "wxshop0000000001"}}"#,
        )],
        true,
    );
    // Two callbacks and a WeChat retry of the second: two callbacks counted.
    let (q, b, _) = t.message(Sent::Safe);
    t.receive_all(&q, &b).unwrap();
    let (q, b, _) = t.message(Sent::Safe);
    t.receive_all(&q, &b).unwrap();
    t.receive_all(&q, &b).unwrap();
    let token = token_of(&t, &t.relay).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    // A delivery that failed for good: its dead letter is stored at the account's object.
    let shared = shared_store(&t, t.coordinator.clone(), &[]);
    let id = "evt_0123456789abcdef0123456789abcdef";
    t.clock
        .run(shared.put(&format!("dead:default:{id}:aabbccdd"), "{}", None))
        .unwrap();
    // shop has no secret: asking its token is a configuration error, noted by name.
    assert!(t.clock.run(t.relay.token("shop", None)).is_err());

    let status = t.clock.run(t.relay.status("https://relay.example"));
    let text = status.to_string();
    for secret in [token.as_str(), TOKEN, KEY, "app-secret", SECRET] {
        assert!(!text.contains(secret), "{secret} in the status");
    }
    let accounts = status["accounts"].as_array().unwrap();
    let default = &accounts[0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["kind"], "official");
    assert_eq!(default["app_id"], APP_ID);
    assert_eq!(default["message_mode"], "compatible");
    assert_eq!(
        default["server_urls"][0]["url"],
        "https://relay.example/wechat"
    );
    let health = &default["health"];
    let last = health["last_callback_at"].as_u64().unwrap();
    assert!((NOW * 1000..=t.clock.now_ms()).contains(&last));
    let hours = health["hours"].as_array().unwrap();
    assert_eq!(hours.len(), crate::coordinator::HOURS_KEPT);
    assert_eq!(hours.last().unwrap()["callbacks"], 2);
    assert_eq!(hours.last().unwrap()["failures"], 1);
    assert_eq!(health["dead_letters"], 1);
    let access = &health["credentials"]["access_token"];
    assert!(access["expires_at"].as_u64().unwrap() > t.clock.now_secs() + 7000);
    assert_eq!(health["credentials"]["forced_refresh_budget"], 15);
    assert_eq!(health["credentials"]["forced_refreshes_today"], 0);
    // Every setting the account uses is present.
    assert!(
        default["setup"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "present"),
        "{}",
        default["setup"]
    );

    let shop = &accounts[1];
    assert_eq!(shop["name"], "shop");
    assert_eq!(shop["app_id"], "wxshop0000000001");
    assert_eq!(
        shop["server_urls"][0]["url"],
        "https://relay.example/wechat/shop"
    );
    let missing: Vec<&str> = shop["setup"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "missing")
        .map(|s| s["setting"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["WECHAT_SHOP_TOKEN", "WECHAT_SHOP_APP_SECRET"]);
    assert!(shop["setup"][1]["state"] == "optional" || shop["setup"][1]["state"] == "present");
    let noted = &shop["health"]["last_error"];
    assert_eq!(noted["kind"], "config");
    assert!(noted["message"]
        .as_str()
        .unwrap()
        .contains("WECHAT_SHOP_APP_SECRET"));
    assert_eq!(shop["health"]["last_callback_at"], serde_json::Value::Null);

    // The counts were written once (the first change), the rest wait for the minute.
    assert!(t.coordinator.store_of("default").peek(HEALTH_KEY).is_some());
    // An object evicted and started again shows what was written.
    t.clock.advance(61_000);
    let _ = t.clock.run(t.relay.status("https://relay.example"));
    t.coordinator.evict();
    let again = t.clock.run(t.relay.status("https://relay.example"));
    let hours = again["accounts"][0]["health"]["hours"].as_array().unwrap();
    let counted: u64 = hours.iter().map(|h| h["callbacks"].as_u64().unwrap()).sum();
    assert_eq!(counted, 2);

    // An unreachable object: the settings are still shown, the health says why it is missing.
    t.coordinator.unreachable.set(true);
    let down = t.clock.run(t.relay.status("https://relay.example"));
    assert_eq!(down["accounts"][0]["name"], "default");
    assert_eq!(down["accounts"][0]["health"], serde_json::Value::Null);
    assert!(down["accounts"][0]["health_error"]
        .as_str()
        .unwrap()
        .contains("did not answer"));
}
