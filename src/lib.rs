//! The Cloudflare Worker shell around `wechat-relay-core`: the event handlers (fetch, queue,
//! cron), the trait implementations over Workers ([`runtime`]), and the routes, each of which
//! hands the request to a core flow and turns its answer into a `Response`. Every decision is
//! the core's.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod body;
mod consumer;
mod coordinator;
mod logging;
mod respond;
mod runtime;
mod webcrypto;

use wechat_relay_core::callback::{Query, MAX_BODY_BYTES};
use wechat_relay_core::component;
use wechat_relay_core::token::passthrough::{self, Call, Passed};
use wechat_relay_core::{callback, dispatch, Clock, DeadLetterQuery, Error, Incoming, Route};
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

use respond::Failure;
use runtime::{WorkerClock, WorkerRelay};

pub use consumer::queue;
pub use coordinator::AccountObject;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    logging::install();
    let path = req.path();
    let config = runtime::settings(&env);
    let authorization = req.headers().get("authorization").ok().flatten();
    let method = req.method();
    let url = req.url()?;
    let routed = dispatch(
        &Incoming {
            method: method.as_ref(),
            path: &path,
            query: url.query().unwrap_or(""),
            authorization: authorization.as_deref(),
        },
        &config,
    );
    let relay = runtime::relay(&env, config);
    let result = match routed.route {
        Ok(route) => run(route, req, &ctx, &relay).await,
        Err(e) => Err(e.into()),
    };
    respond::finish(&path, routed.format, routed.headers, result)
}

/// The cron trigger: every account's token (and JS-SDK ticket, if in use) renewed before
/// expiry, so backends never wait for WeChat.
#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    logging::install();
    let relay = runtime::relay(&env, runtime::settings(&env));
    for account in relay.config.accounts() {
        relay.refresh_ahead(account).await;
    }
}

async fn run(
    route: Route,
    mut req: Request,
    ctx: &Context,
    relay: &WorkerRelay,
) -> Result<Response, Failure> {
    let config = relay.config.clone();
    match route {
        Route::Health => respond::text(200, "ok"),
        Route::VerifyUrl { account } => {
            let echostr =
                callback::verify_url(&config, &account, &query_of(&req)?, WorkerClock.now_secs())?;
            respond::text(200, echostr)
        }
        Route::Callback { account } => {
            let query = query_of(&req)?;
            let body = body::read_limited(&mut req, MAX_BODY_BYTES).await?;
            let answer = relay.receive(&account, &query, &body, random()?).await?;
            answered(ctx, answer)
        }
        Route::AuthorizerCallback {
            account,
            authorizer,
        } => {
            let query = query_of(&req)?;
            let body = body::read_limited(&mut req, MAX_BODY_BYTES).await?;
            let answer = relay
                .receive_for_authorizer(&account, &authorizer, &query, &body, random()?)
                .await?;
            answered(ctx, answer)
        }
        Route::Token {
            account,
            authorizer,
        } => respond::json(&relay.token(&account, authorizer.as_deref()).await?),
        Route::TokenRefresh {
            account,
            authorizer,
        } => {
            let body =
                body::read_limited(&mut req, wechat_relay_core::token::MAX_REFRESH_BODY_BYTES)
                    .await?;
            respond::json(
                &relay
                    .refresh_token(&account, authorizer.as_deref(), &body)
                    .await?,
            )
        }
        Route::JsapiSignature { account } => {
            let page = query_param(&req, "url")?;
            let mut nonce = [0u8; 16];
            nonce.copy_from_slice(random()?.get(..16).unwrap_or(&[0; 16]));
            let signed = relay.jsapi_config(&account, page.as_deref(), nonce).await?;
            respond::json(&signed)
        }
        Route::PassThrough {
            account,
            authorizer,
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
            let passed = relay
                .pass_through(&account, authorizer.as_deref(), call)
                .await?;
            match passed {
                Passed::Streamed(answer) => Ok(answer.0),
                Passed::Read {
                    status,
                    content_type,
                    body,
                } => respond::bytes(status, content_type.as_deref(), body),
            }
        }
        Route::AuthorizeUrl { account } => {
            let platform = relay.platform(&account)?;
            let (redirect, auth_type, biz) = (
                query_param(&req, "redirect_uri")?,
                query_param(&req, "auth_type")?,
                query_param(&req, "biz_appid")?,
            );
            let links = platform
                .authorize_url(redirect.as_deref(), auth_type.as_deref(), biz.as_deref())
                .await?;
            respond::json(&links)
        }
        Route::Authorizations { account } => {
            let platform = relay.platform(&account)?;
            let body = body::read_limited(&mut req, 64 * 1024).await?;
            let code = component::auth_code_of(&body)?;
            respond::json(&platform.exchange(&code).await?)
        }
        Route::Authorizers { account } => {
            let platform = relay.platform(&account)?;
            let (limit, cursor) = (query_param(&req, "limit")?, query_param(&req, "cursor")?);
            respond::json(
                &platform
                    .authorizers(limit.as_deref(), cursor.as_deref())
                    .await?,
            )
        }
        Route::SyncAuthorizers { account } => {
            let platform = relay.platform(&account)?;
            let offset = query_param(&req, "offset")?;
            respond::json(&platform.sync(offset.as_deref()).await?)
        }
        Route::Console(asset) => respond::typed(200, asset.content_type, asset.body.to_owned()),
        Route::Status => {
            let url = req.url()?;
            let origin = url.origin().ascii_serialization();
            respond::json(&relay.status(&origin).await)
        }
        Route::DeadLetters | Route::Replay => {
            let [id, account, target, limit, cursor] =
                ["id", "account", "target", "limit", "cursor"].map(|name| query_param(&req, name));
            let (id, account, target, limit, cursor) = (id?, account?, target?, limit?, cursor?);
            let query = DeadLetterQuery {
                id: id.as_deref(),
                account: account.as_deref(),
                target: target.as_deref(),
                limit: limit.as_deref(),
                cursor: cursor.as_deref(),
            };
            if matches!(route, Route::Replay) {
                respond::json(&relay.replay(&query).await?)
            } else {
                respond::json(&relay.dead_letters(&query).await?)
            }
        }
    }
}

/// WeChat's answer; the work that follows it continues in `waitUntil`.
fn answered(ctx: &Context, answer: wechat_relay_core::Answer) -> Result<Response, Failure> {
    if let Some(background) = answer.background {
        ctx.wait_until(background);
    }
    respond::typed(200, answer.content_type, answer.body)
}

fn random() -> Result<[u8; 32], Failure> {
    let mut random = [0u8; 32];
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

fn query_param(req: &Request, name: &str) -> Result<Option<String>, Failure> {
    Ok(req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}
