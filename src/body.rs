//! Reading request bodies with a size limit, so an oversized body is refused as soon as it
//! passes the limit, before the isolate's 128 MB of memory are at risk.

use futures_util::StreamExt;
use wechat_relay_core::Error;
use worker::Request;

use crate::respond::Failure;

/// The body, or `413` as soon as `Content-Length` or the bytes read exceed `limit`.
pub async fn read_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, Failure> {
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge { limit }.into());
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(Error::BodyTooLarge { limit }.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
