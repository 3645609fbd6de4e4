//! The whole inbound pipeline per callback: verify msg_signature, decrypt, parse, normalize,
//! serialize and sign the webhook; each of those stages alone (group `stages`); and a callback
//! in a 1-account and a 50-account deployment (group `accounts`).
//! `cargo bench -p wechat-relay-core [-- <group>]`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wechat_relay_core::callback::reply::seal;
use wechat_relay_core::callback::{open_callback, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::delivery::webhook::WebhookSecret;
use wechat_relay_core::event::{self, Context};
use wechat_relay_core::wire::crypto::{self, AesKey};
use wechat_relay_core::wire::{signature, xml};

const TOKEN: &str = "benchtoken";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wxbench000000000";
const NOW: u64 = 1_700_000_000;

fn text(content: &str) -> String {
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_user]]></FromUserName><CreateTime>{NOW}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>6054768590064713728</MsgId></xml>")
}

fn mass_send_2k() -> String {
    let mut items = String::new();
    for i in 1..=6 {
        items.push_str(&format!("<item><ArticleIdx>{i}</ArticleIdx><UserDeclareState>0</UserDeclareState><AuditState>2</AuditState><OriginalArticleUrl><![CDATA[https://mp.weixin.qq.com/s/original-{i}]]></OriginalArticleUrl><OriginalArticleType>1</OriginalArticleType><CanReprint>1</CanReprint><NeedReplaceContent>1</NeedReplaceContent><NeedShowReprintSource>1</NeedShowReprintSource></item>"));
    }
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_user]]></FromUserName><CreateTime>{NOW}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>1000001625</MsgID><Status><![CDATA[err(30003)]]></Status><TotalCount>0</TotalCount><FilterCount>0</FilterCount><SentCount>0</SentCount><ErrorCount>0</ErrorCount><CopyrightCheckResult><Count>6</Count><ResultList>{items}</ResultList><CheckState>2</CheckState></CopyrightCheckResult></xml>")
}

/// A safe-mode callback of `xml`, as WeChat sends it: its query and its body.
fn sealed(key: &AesKey, token: &str, app_id: &str, xml: &str) -> (Query, String) {
    let ts = NOW.to_string();
    let env = seal(key, token, app_id, [7; 16], &ts, "nonce", xml.as_bytes());
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        env.encrypt
    );
    let query = Query::from_pairs([
        ("timestamp", ts),
        ("nonce", "nonce".to_owned()),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", env.msg_signature),
    ]);
    (query, body)
}

/// The three messages of the performance issue's table: a small text, a 2.6 KB mass-send
/// result, 16 KB of Chinese text.
fn inputs() -> [(&'static str, String); 3] {
    let chinese = "微信公众平台消息中转服务测试。".repeat(16 * 1024 / 45);
    [
        ("text_small", text("hello")),
        ("masssendjobfinish_2k", mass_send_2k()),
        ("text_chinese_16k", text(&chinese)),
    ]
}

fn webhook_secret() -> WebhookSecret {
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let config = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some(TOKEN.into()),
        "WECHAT_ENCODING_AES_KEY" => Some(KEY.into()),
        "WECHAT_APP_ID" => Some(APP_ID.into()),
        _ => None,
    });
    let key = AesKey::from_encoding_aes_key(KEY).unwrap_or_else(|e| panic!("{e}"));
    let secret = webhook_secret();
    let inputs = inputs();
    // `pipeline_safe_mode`: verify, decrypt, parse, normalize and serialize, the steps the
    // issue's peers were measured on; `signed_forward`: the same plus the webhook signature.
    for (group_name, sign) in [("pipeline_safe_mode", false), ("signed_forward", true)] {
        let mut group = c.benchmark_group(group_name);
        for (name, xml) in &inputs {
            let (query, body) = sealed(&key, TOKEN, APP_ID, xml);
            group.throughput(Throughput::Bytes(xml.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{name} ({} B)", xml.len())),
                &body,
                |b, body| {
                    b.iter(|| {
                        let inbound =
                            open_callback(&config, "default", &query, body.as_bytes(), NOW * 1000)
                                .unwrap_or_else(|e| panic!("{e}"));
                        let json = inbound.event.to_json();
                        sign.then(|| secret.sign(&inbound.event.id, NOW, &json))
                    })
                },
            );
        }
        group.finish();
    }
}

/// Each stage of the pipeline alone, on the same three messages: where a callback's time goes.
fn stages(c: &mut Criterion) {
    let key = AesKey::from_encoding_aes_key(KEY).unwrap_or_else(|e| panic!("{e}"));
    let secret = webhook_secret();
    let mut group = c.benchmark_group("stages");
    for (name, xml) in &inputs() {
        let ts = NOW.to_string();
        let env = seal(&key, TOKEN, APP_ID, [7; 16], &ts, "nonce", xml.as_bytes());
        let ctx = Context {
            account: "default",
            app_id: Some(APP_ID),
            merchant: None,
            message: xml.as_bytes(),
            received_at_ms: NOW * 1000,
        };
        let root = xml::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let normalized = event::normalize(&root, &ctx).unwrap_or_else(|e| panic!("{e}"));
        let json = normalized.to_json();
        let size = format!("{name} ({} B)", xml.len());
        group.throughput(Throughput::Bytes(xml.len() as u64));
        group.bench_function(BenchmarkId::new("1_verify_msg_signature", &size), |b| {
            b.iter(|| signature::verify(&env.msg_signature, &[TOKEN, &ts, "nonce", &env.encrypt]))
        });
        group.bench_function(BenchmarkId::new("2_decrypt", &size), |b| {
            b.iter(|| crypto::decrypt(&key, &env.encrypt, APP_ID))
        });
        group.bench_function(BenchmarkId::new("3_parse_xml", &size), |b| {
            b.iter(|| xml::parse(xml.as_bytes()))
        });
        group.bench_function(BenchmarkId::new("4_normalize_with_id", &size), |b| {
            b.iter(|| event::normalize(&root, &ctx))
        });
        group.bench_function(BenchmarkId::new("5_event_json", &size), |b| {
            b.iter(|| normalized.to_json())
        });
        group.bench_function(BenchmarkId::new("6_webhook_signature", &size), |b| {
            b.iter(|| secret.sign(&normalized.id, NOW, &json))
        });
    }
    group.finish();
}

/// The settings of a deployment with `n` accounts: `default` and `shop1`…`shop<n-1>`, each with
/// its own secrets.
fn settings_of(n: usize) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("WECHAT_TOKEN".to_owned(), TOKEN.to_owned()),
        ("WECHAT_ENCODING_AES_KEY".to_owned(), KEY.to_owned()),
        ("WECHAT_APP_ID".to_owned(), APP_ID.to_owned()),
        (
            "FORWARD_URLS".to_owned(),
            "https://hooks.example.com/wechat".to_owned(),
        ),
    ];
    let entries: Vec<String> = (1..n)
        .map(|i| format!(r#""shop{i}": {{"kind": "official", "app_id": "wxshop{i:011}"}}"#))
        .collect();
    if n > 1 {
        pairs.push((
            "WECHAT_ACCOUNTS".to_owned(),
            format!("{{{}}}", entries.join(", ")),
        ));
    }
    for i in 1..n {
        pairs.push((format!("WECHAT_SHOP{i}_TOKEN"), format!("token{i}")));
        pairs.push((format!("WECHAT_SHOP{i}_ENCODING_AES_KEY"), KEY.to_owned()));
        pairs.push((format!("WECHAT_SHOP{i}_APP_SECRET"), format!("secret{i}")));
    }
    pairs
}

/// A callback of one account in a 1-account and a 50-account deployment, with the settings
/// parsed once (as the Worker does, once per isolate), and what parsing them costs.
fn accounts(c: &mut Criterion) {
    let mut group = c.benchmark_group("accounts");
    let xml = text("hello");
    for n in [1usize, 50] {
        let pairs = settings_of(n);
        let load = || {
            Config::load(|k| {
                pairs
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            })
        };
        let config = load();
        let (account, token, app_id) = if n == 1 {
            ("default".to_owned(), TOKEN.to_owned(), APP_ID.to_owned())
        } else {
            let i = n - 1;
            (
                format!("shop{i}"),
                format!("token{i}"),
                format!("wxshop{i:011}"),
            )
        };
        let key = AesKey::from_encoding_aes_key(KEY).unwrap_or_else(|e| panic!("{e}"));
        let (query, body) = sealed(&key, &token, &app_id, &xml);
        group.bench_function(BenchmarkId::new("callback", format!("{n} accounts")), |b| {
            b.iter(|| {
                let inbound = open_callback(&config, &account, &query, body.as_bytes(), NOW * 1000)
                    .unwrap_or_else(|e| panic!("{e}"));
                inbound.event.to_json()
            })
        });
        group.bench_function(
            BenchmarkId::new("settings_parsed", format!("{n} accounts")),
            |b| b.iter(load),
        );
    }
    group.finish();
}

criterion_group!(benches, bench, stages, accounts);
criterion_main!(benches);
