//! The Cloudflare Worker shell around `wechat-relay-core`: routing, bindings, the Cache API
//! dedup marks and outbound fetches. Protocol logic lives in the core; this crate only does I/O.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod body;
mod credentials;
mod dedup;
mod forward;
mod log;
mod respond;
mod settings;
mod token_api;
mod upstream;
mod webcrypto;

use wechat_relay_core::callback::{self, Query, MAX_BODY_BYTES};
use wechat_relay_core::config::DEFAULT_ACCOUNT;
use wechat_relay_core::Error as CoreError;
use worker::{
    event, Context, Date, Env, Method, Request, Response, ScheduleContext, ScheduledEvent,
};

use respond::Failure;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let path = req.path();
    let result = route(req, &env, &ctx).await;
    respond::finish(&path, result)
}

async fn route(req: Request, env: &Env, ctx: &Context) -> Result<Response, Failure> {
    match (req.path().as_str(), req.method()) {
        ("/healthz", Method::Get | Method::Head) => Ok(Response::ok("ok")?),
        ("/healthz", _) => Err(Failure::method_not_allowed("GET, HEAD")),
        ("/wechat", Method::Get) => verify_url(&req, env),
        ("/wechat", Method::Post) => receive_callback(req, env, ctx).await,
        ("/wechat", _) => Err(Failure::method_not_allowed("GET, POST")),
        ("/token", Method::Get) => token_api::get_token(req, env).await,
        // With TOKEN_API_KEY unset the token routes do not exist, whatever the method.
        ("/token" | "/token/refresh" | "/jsapi/signature", _) if !token_api::enabled(env) => {
            Err(CoreError::NotFound.into())
        }
        ("/token", _) => Err(Failure::method_not_allowed("GET")),
        ("/token/refresh", Method::Post) => token_api::refresh_token(req, env).await,
        ("/token/refresh", _) => Err(Failure::method_not_allowed("POST")),
        ("/jsapi/signature", Method::Get) => token_api::jsapi_signature(req, env).await,
        ("/jsapi/signature", _) => Err(Failure::method_not_allowed("GET")),
        (path, _) if path.starts_with("/api/") => token_api::pass_through(req, env).await,
        _ => Err(CoreError::NotFound.into()),
    }
}

/// The cron trigger: renew the access token (and the JS-SDK ticket, if in use) before expiry,
/// so backends never wait for WeChat.
#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = settings::load(&env);
    if let Err(e) = config.app_secret() {
        log::info("scheduled refresh skipped", &[("reason", &e.to_string())]);
        return;
    }
    credentials::Credentials::new(&env, config)
        .refresh_ahead()
        .await;
}

pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
}

fn query_of(req: &Request) -> Result<Query, Failure> {
    let url = req.url()?;
    Ok(Query::from_pairs(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    ))
}

/// `GET /wechat`: the check WeChat makes when the server URL is saved.
fn verify_url(req: &Request, env: &Env) -> Result<Response, Failure> {
    let config = settings::load(env);
    let echostr = callback::verify_url(&config, &query_of(req)?, now_ms() / 1000)?;
    Ok(respond::text(200, echostr)?)
}

/// `POST /wechat`: verify, decrypt, normalize, answer `success`, forward after the answer.
async fn receive_callback(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, Failure> {
    let query = query_of(&req)?;
    let body = body::read_limited(&mut req, MAX_BODY_BYTES).await?;
    let config = settings::load(env);
    let inbound = match callback::begin_callback(&config, &query, &body, now_ms(), DEFAULT_ACCOUNT)?
    {
        callback::Begun::Opened(inbound) => inbound,
        callback::Begun::Sealed(mut sealed) => {
            let ciphertext = std::mem::take(&mut sealed.ciphertext);
            let plain = webcrypto::cbc_decrypt(&sealed.key, ciphertext)
                .await
                .map_err(|_| CoreError::Decryption)?;
            sealed.finish(&plain)?
        }
    };
    let targets = config.forward_urls()?.to_vec();
    let secret = config.forward_secret()?.cloned();
    let event = inbound.event;

    if dedup::seen_before(&event.id).await {
        log::info(
            "duplicate callback, not forwarded",
            &[("event_id", &event.id)],
        );
    } else {
        let delivery = forward::Delivery {
            id: event.id.clone(),
            body: event.to_json(),
            targets,
            secret,
        };
        ctx.wait_until(async move { forward::deliver(delivery).await });
    }
    Ok(respond::text(200, "success".to_owned())?)
}
