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
fn the_shared_store_keeps_a_platforms_state_at_its_object_and_the_rest_local() {
    use crate::coordinator::SharedStore;
    let t = world(&[], true);
    let shared = SharedStore {
        clock: t.clock.clone(),
        coordinator: t.coordinator.clone(),
        local: MemoryStore::new(&t.clock),
        platforms: Rc::new(vec!["platform".to_owned()]),
    };
    for key in [
        "authorizer:platform:wx1",
        "component:platform:ticket",
        "credential:platform:access_token",
    ] {
        t.clock.run(shared.put(key, "v", None)).unwrap();
        assert_eq!(
            t.coordinator.store_of("platform").peek(key).as_deref(),
            Some("v")
        );
        assert_eq!(shared.local.peek(key), None, "{key}");
    }
    for key in [
        "credential:default:access_token",
        "dead:evt_1",
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
}
