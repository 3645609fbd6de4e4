//! The token service's routes, all behind `Authorization: Bearer <TOKEN_API_KEY>`:
//! `GET /token`, `POST /token/refresh`, `GET /jsapi/signature?url=`, `ANY /api/<path>`.
//! With TOKEN_API_KEY unset every one of them is 404: off, never open.

use serde_json::json;
use wechat_relay_core::api_error::{errcode_of, is_token_invalid, ApiError};
use wechat_relay_core::config::Config;
use wechat_relay_core::signature::constant_time_eq;
use wechat_relay_core::{jssdk, passthrough, Error};
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::credentials::Credentials;
use crate::respond::Failure;
use crate::{now_ms, settings, upstream};

/// Largest request body the pass-through accepts (WeChat's media uploads are at most 10 MB).
const MAX_PASSTHROUGH_BODY: usize = 20 << 20;
/// Answers up to this size are read to look for token errors; larger ones stream through.
const MAX_INSPECTED_ANSWER: u64 = 1 << 20;

/// Whether the token service is on (TOKEN_API_KEY is set).
pub fn enabled(env: &Env) -> bool {
    settings::load(env).token_api_key().is_some()
}

/// Checks the bearer key and returns the credentials store.
fn authorize(req: &Request, env: &Env) -> Result<Credentials, Failure> {
    let config: Config = settings::load(env);
    let Some(expected) = config.token_api_key() else {
        return Err(Error::NotFound.into());
    };
    let given = req.headers().get("authorization")?.unwrap_or_default();
    let key = given
        .strip_prefix("Bearer ")
        .or_else(|| given.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if !constant_time_eq(key.as_bytes(), expected.as_bytes()) {
        return Err(Error::Unauthorized.into());
    }
    Ok(Credentials::new(env, config))
}

fn json_response(value: &serde_json::Value) -> Result<Response, Failure> {
    let mut resp = Response::from_json(value)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// `GET /token`
pub async fn get_token(req: Request, env: &Env) -> Result<Response, Failure> {
    let creds = authorize(&req, env)?;
    let token = creds.access_token().await?;
    json_response(&json!({ "access_token": token.value, "expires_at": token.expires_at }))
}

/// `POST /token/refresh`
pub async fn refresh_token(req: Request, env: &Env) -> Result<Response, Failure> {
    let creds = authorize(&req, env)?;
    let refreshed = creds.force_refresh().await?;
    json_response(&json!({
        "access_token": refreshed.credential.value,
        "expires_at": refreshed.credential.expires_at,
        "refreshed": refreshed.refreshed,
    }))
}

/// `GET /jsapi/signature?url=...`
pub async fn jsapi_signature(req: Request, env: &Env) -> Result<Response, Failure> {
    let creds = authorize(&req, env)?;
    let url = req
        .url()?
        .query_pairs()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .ok_or(Error::MissingParameter("url"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::MalformedParameter("url").into());
    }
    let app_id = creds.config().require_app_id()?.to_owned();
    let ticket = creds.jsapi_ticket().await?;
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random)
        .map_err(|e| worker::Error::RustError(format!("randomness: {e}")))?;
    let config = jssdk::config(&app_id, &ticket.value, &url, now_ms() / 1000, random);
    json_response(
        &serde_json::to_value(config).map_err(|e| worker::Error::RustError(e.to_string()))?,
    )
}

/// `ANY /api/<path>`: forwards to `{WECHAT_API_BASE}/<path>` with the access token added;
/// after 40001/42001/40014 refreshes the token once and retries once.
pub async fn pass_through(mut req: Request, env: &Env) -> Result<Response, Failure> {
    let creds = authorize(&req, env)?;
    let path = req.path();
    let wechat_path = passthrough::wechat_path(&path)
        .ok_or(Error::NotFound)?
        .to_owned();
    let api_base = creds.config().api_base()?.to_owned();
    let method = req.method();
    let content_type = req.headers().get("content-type")?;
    let query: Vec<(String, String)> = req
        .url()?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body = match method {
        Method::Get | Method::Head => None,
        _ => Some(crate::body::read_limited(&mut req, MAX_PASSTHROUGH_BODY).await?),
    };

    let mut token = creds.access_token().await?;
    let mut retried = false;
    loop {
        let url = passthrough::upstream_url(&api_base, &wechat_path, query.clone(), &token.value);
        let headers = Headers::new();
        if let Some(ct) = &content_type {
            headers.set("content-type", ct)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method.clone()).with_headers(headers);
        if let Some(bytes) = &body {
            init.with_body(Some(js_sys::Uint8Array::from(bytes.as_slice()).into()));
        }
        let mut answer = upstream::send(Request::new_with_init(&url, &init)?).await?;

        if !inspectable(&answer)? {
            return Ok(answer);
        }
        let status = answer.status_code();
        let answer_type = answer.headers().get("content-type")?;
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(format!("reading the answer: {e}")))?;
        if let Some(ApiError::WeChat { errcode, .. }) = errcode_of(&bytes) {
            if is_token_invalid(errcode) && !retried {
                retried = true;
                let refreshed = creds.force_refresh().await?;
                // Rate-limited to the same token that just failed: retrying cannot help.
                if refreshed.credential.value != token.value {
                    token = refreshed.credential;
                    continue;
                }
            }
        }
        let mut resp = Response::from_bytes(bytes)?.with_status(status);
        if let Some(ct) = answer_type {
            resp.headers_mut().set("content-type", &ct)?;
        }
        return Ok(resp);
    }
}

/// Whether an answer is small JSON-ish text worth reading for an errcode (WeChat sends its
/// errors as application/json or text/plain); media and other large answers stream through.
fn inspectable(answer: &Response) -> worker::Result<bool> {
    let ct = answer
        .headers()
        .get("content-type")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let textual = ct.is_empty() || ct.contains("json") || ct.starts_with("text/");
    let small = answer
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_none_or(|n| n <= MAX_INSPECTED_ANSWER);
    Ok(textual && small)
}
