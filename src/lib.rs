//! The Cloudflare Worker shell around `wechat-relay-core`: the event handlers, the trait
//! implementations over Workers ([`platform`]), and the routes, each of which hands the request
//! to a core flow and turns its answer into a `Response`. Every decision is the core's.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod body;
mod dedup;
mod logging;
mod platform;
mod respond;
mod webcrypto;

use serde_json::json;
use wechat_relay_core::callback::{self, Query, MAX_BODY_BYTES};
use wechat_relay_core::delivery::{self, Delivery};
use wechat_relay_core::passthrough::{self, Call, Passed};
use wechat_relay_core::{
    dispatch, Clock, Config, Credentials, Destination, Error, Incoming, Route,
};
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

use platform::{Kv, WorkerClock, WorkerHttp};
use respond::Failure;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    logging::install();
    let path = req.path();
    let config = platform::settings(&env);
    let authorization = req.headers().get("authorization").ok().flatten();
    let method = req.method();
    let routed = dispatch(
        &Incoming {
            method: method.as_ref(),
            path: &path,
            authorization: authorization.as_deref(),
        },
        &config,
    );
    let result = match routed.route {
        Ok(route) => run(route, req, &env, &ctx, &config).await,
        Err(e) => Err(e.into()),
    };
    respond::finish(&path, routed.format, result)
}

/// The cron trigger: every account's token (and JS-SDK ticket, if in use) renewed before
/// expiry, so backends never wait for WeChat.
#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    logging::install();
    let config = platform::settings(&env);
    let (kv, http, memory) = (Kv::new(&env), WorkerHttp::new(&env), platform::memory());
    for account in config.accounts() {
        let creds = Credentials {
            clock: &WorkerClock,
            store: &kv,
            http: &http,
            memory: &memory,
            account,
        };
        creds.refresh_ahead().await;
    }
}

async fn run(
    route: Route,
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
) -> Result<Response, Failure> {
    match route {
        Route::Health => respond::text(200, "ok"),
        Route::VerifyUrl { account } => {
            let echostr =
                callback::verify_url(config, &account, &query_of(&req)?, WorkerClock.now_secs())?;
            respond::text(200, echostr)
        }
        Route::Callback { account } => receive_callback(req, env, ctx, config, &account).await,
        Route::Token | Route::TokenRefresh | Route::JsapiSignature => {
            let (kv, http, memory) = (Kv::new(env), WorkerHttp::new(env), platform::memory());
            let creds = Credentials {
                clock: &WorkerClock,
                store: &kv,
                http: &http,
                memory: &memory,
                account: config.default_account(),
            };
            match route {
                Route::Token => {
                    let token = creds.access_token().await?;
                    respond::json(
                        &json!({ "access_token": token.value, "expires_at": token.expires_at }),
                    )
                }
                Route::TokenRefresh => {
                    let r = creds.force_refresh().await?;
                    respond::json(&json!({
                        "access_token": r.credential.value,
                        "expires_at": r.credential.expires_at,
                        "refreshed": r.refreshed,
                    }))
                }
                _ => {
                    let url = req.url()?;
                    let page = url
                        .query_pairs()
                        .find(|(k, _)| k == "url")
                        .map(|(_, v)| v.into_owned());
                    let config = creds.jsapi_config(page.as_deref(), random16()?).await?;
                    respond::json(&config)
                }
            }
        }
        Route::PassThrough {
            method,
            wechat_path,
        } => {
            let call = Call {
                method,
                wechat_path,
                query: req
                    .url()?
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
                content_type: req.headers().get("content-type")?,
                body: if method.is_bodiless() {
                    None
                } else {
                    Some(body::read_limited(&mut req, passthrough::MAX_BODY_BYTES).await?)
                },
            };
            let (kv, http, memory) = (Kv::new(env), WorkerHttp::new(env), platform::memory());
            let creds = Credentials {
                clock: &WorkerClock,
                store: &kv,
                http: &http,
                memory: &memory,
                account: config.default_account(),
            };
            match passthrough::pass_through(&creds, call).await? {
                Passed::Streamed(answer) => Ok(answer.0),
                Passed::Read {
                    status,
                    content_type,
                    body,
                } => respond::bytes(status, content_type.as_deref(), body),
            }
        }
    }
}

fn random16() -> Result<[u8; 16], Failure> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(random)
}

fn query_of(req: &Request) -> Result<Query, Failure> {
    let url = req.url()?;
    Ok(Query::from_pairs(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    ))
}

/// `POST /wechat`: verify, decrypt, normalize, answer `success`, forward after the answer.
async fn receive_callback(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    account: &str,
) -> Result<Response, Failure> {
    let query = query_of(&req)?;
    let body = body::read_limited(&mut req, MAX_BODY_BYTES).await?;
    let now_ms = WorkerClock.now_ms();
    let inbound = match callback::begin_callback(config, account, &query, &body, now_ms)? {
        callback::Begun::Opened(inbound) => inbound,
        callback::Begun::Sealed(mut sealed) => {
            let ciphertext = std::mem::take(&mut sealed.ciphertext);
            let plain = webcrypto::cbc_decrypt(&sealed.key, ciphertext)
                .await
                .map_err(|_| Error::Decryption)?;
            sealed.finish(&plain)?
        }
    };
    let targets: Vec<Destination> = config
        .forward_urls()?
        .iter()
        .map(|u| Destination::Url(u.clone()))
        .collect();
    let secret = config.forward_secret()?.cloned();
    let event = inbound.event;

    if dedup::seen_before(&event.id).await {
        log::info!(event_id = event.id.as_str(); "duplicate callback, not forwarded");
    } else {
        let delivery = Delivery {
            event_id: event.id.clone(),
            body: event.to_json(),
            targets,
            secret,
        };
        let http = WorkerHttp::new(env);
        ctx.wait_until(async move {
            delivery::deliver_inline(&WorkerClock, &http, &delivery).await;
        });
    }
    respond::text(200, "success")
}
