//! The whole inbound pipeline per callback: verify msg_signature, decrypt, parse, normalize,
//! serialize and sign the webhook. `cargo bench -p wechat-relay-core`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wechat_relay_core::callback::reply::seal;
use wechat_relay_core::callback::{open_callback, Query};
use wechat_relay_core::config::Config;
use wechat_relay_core::delivery::webhook::WebhookSecret;
use wechat_relay_core::wire::crypto::AesKey;

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

fn bench(c: &mut Criterion) {
    let config = Config::load(|k| match k {
        "WECHAT_TOKEN" => Some(TOKEN.into()),
        "WECHAT_ENCODING_AES_KEY" => Some(KEY.into()),
        "WECHAT_APP_ID" => Some(APP_ID.into()),
        _ => None,
    });
    let key = AesKey::from_encoding_aes_key(KEY).unwrap_or_else(|e| panic!("{e}"));
    let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let chinese = "微信公众平台消息中转服务测试。".repeat(16 * 1024 / 45);
    let inputs = [
        ("text_small", text("hello")),
        ("masssendjobfinish_2k", mass_send_2k()),
        ("text_chinese_16k", text(&chinese)),
    ];
    let mut group = c.benchmark_group("pipeline_safe_mode");
    for (name, xml) in &inputs {
        let ts = NOW.to_string();
        let env = seal(&key, TOKEN, APP_ID, [7; 16], &ts, "nonce", xml.as_bytes());
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
            env.encrypt
        );
        let query = Query::from_pairs([
            ("timestamp", ts.clone()),
            ("nonce", "nonce".to_owned()),
            ("encrypt_type", "aes".to_owned()),
            ("msg_signature", env.msg_signature.clone()),
        ]);
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
                    secret.sign(&inbound.event.id, NOW, &json)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
