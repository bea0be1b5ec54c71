//! Each token's ingest rate (`auth.tokens[].rate`, default 100 requests a second): one
//! `governor` limiter per limit of the token, every one of which must let a request through.
//! A request over the rate is answered 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use magpie_core::RateSpec;
use magpie_core::auth::DEFAULT_INGEST_RATE;

use crate::error::ApiError;

/// The limiters of one token (none when unlimited).
pub(super) struct Limiter(Vec<DefaultDirectRateLimiter>);

impl Limiter {
    /// The limiters of a rate (the default when `None`).
    pub(super) fn new(rate: Option<&RateSpec>) -> Result<Limiter, String> {
        let default;
        let limits = match rate {
            Some(r) => r.limits(),
            None => {
                default = [magpie_core::RateLimit::parse(DEFAULT_INGEST_RATE)?];
                &default[..]
            }
        };
        let mut out = Vec::new();
        for l in limits {
            let burst = NonZeroU32::new(l.count).ok_or("a rate's count must be at least 1")?;
            let quota = Quota::with_period(l.per / l.count)
                .ok_or_else(|| format!("rate {l}: too fine a period"))?
                .allow_burst(burst);
            out.push(RateLimiter::direct(quota));
        }
        Ok(Limiter(out))
    }

    /// Takes one request, or tells how long until one would be let through.
    pub(super) fn check(&self) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        for l in &self.0 {
            if let Err(not_until) = l.check() {
                return Err(not_until.wait_time_from(clock.now()));
            }
        }
        Ok(())
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub(super) fn too_many(token: &str, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = ApiError::with_status(
        StatusCode::TOO_MANY_REQUESTS,
        format!("token {token:?} is over its ingest rate; retry in {secs}s (auth.tokens[].rate)"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}
