//! The queue consumer: the delivery queue's messages and the dead-letter queue's, each handed
//! to the core, which says whether to acknowledge it or retry it after a delay.
//!
//! Exported by hand rather than with `#[event(queue)]`: the core's schedule needs each message's
//! `attempts`, which workers-rs 0.8 does not expose, and a handler must never throw (the whole
//! batch would be retried).

use js_sys::{Array, Date, Function, Object, Reflect};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wechat_relay_core::relay::QueueMessage;
use wechat_relay_core::Verdict;
use worker::Env;

use crate::{logging, runtime};

fn get(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// Calls `object.name(...args)`; failures are logged.
fn call(object: &JsValue, name: &str, args: &Array) {
    let result = get(object, name)
        .dyn_into::<Function>()
        .map_err(|_| JsValue::from_str("not a function"))
        .and_then(|f| Reflect::apply(&f, object, args));
    if let Err(e) = result {
        log::error!(method = name, error = format!("{e:?}"); "queue message call failed");
    }
}

/// A message's body as text (the relay sends text; anything else is serialized for the core
/// to refuse).
fn body_text(message: &JsValue) -> String {
    let body = get(message, "body");
    body.as_string().unwrap_or_else(|| {
        js_sys::JSON::stringify(&body)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default()
    })
}

/// The `queue` handler: `(batch, env, ctx)`. Every message gets its own verdict from the core,
/// which runs at most six attempts at once.
#[wasm_bindgen]
pub async fn queue(batch: JsValue, env: Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
    logging::install();
    let config = runtime::settings(&env);
    let dead_letter_queue =
        get(&batch, "queue").as_string().unwrap_or_default() == config.dead_letter_queue();
    let relay = runtime::relay(&env, config);
    let messages: Vec<JsValue> = get(&batch, "messages")
        .dyn_into::<Array>()
        .unwrap_or_default()
        .iter()
        .collect();
    let read: Vec<QueueMessage> = messages
        .iter()
        .map(|message| QueueMessage {
            text: body_text(message),
            attempts: get(message, "attempts")
                .as_f64()
                .map_or(1, |n| n as u32)
                .max(1),
            enqueued_ms: get(message, "timestamp")
                .dyn_into::<Date>()
                .map(|d| d.get_time() as u64)
                .unwrap_or_else(|_| Date::now() as u64),
        })
        .collect();
    let settle = |i: usize, verdict: Verdict| {
        let Some(message) = messages.get(i) else {
            return;
        };
        match verdict {
            Verdict::Ack => call(message, "ack", &Array::new()),
            Verdict::Retry { delay_secs } => {
                let options = Object::new();
                let _ = Reflect::set(&options, &"delaySeconds".into(), &JsValue::from(delay_secs));
                call(message, "retry", &Array::of1(&options));
            }
        }
    };
    relay.consume_batch(read, dead_letter_queue, settle).await;
    Ok(JsValue::UNDEFINED)
}
