//! Who is calling and whether they may: the API's tokens (from `--token`, `magpie.yaml`'s
//! `auth.tokens` and `POST /v1/tokens`), their roles, the route → role table ([`routes`]) and
//! each token's ingest rate ([`limit`]).
//!
//! A server with no token at all is open (the default: it listens on loopback). Once any token
//! exists every route but the public ones asks for one: 401 without a valid token, 403 when its
//! role may not. The caller found is put in the request's extensions ([`Caller`]) for the audit
//! log. It knows tokens and routes, nothing of what the routes do.

mod limit;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use magpie_core::auth::{Need, Role, TokenSpec, hash_token};
use magpie_store::Store;

use crate::AppState;
use crate::error::ApiError;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`anonymous` on a server without tokens).
    pub name: String,
    /// Its role (a server without tokens lets everyone be admin).
    pub role: Role,
}

impl Caller {
    /// Everyone, on a server without tokens.
    pub fn anonymous() -> Caller {
        Caller { name: "anonymous".into(), role: Role::Admin }
    }
}

/// Where a token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--token` / `MAGPIE_TOKEN`: an admin named `admin`.
    Flag,
    /// `auth.tokens` in `magpie.yaml`.
    File,
    /// `POST /v1/tokens` (kept in the store).
    Api,
}

struct Holder {
    caller: Caller,
    source: Source,
    limiter: limit::Limiter,
}

/// The tokens in force, by hash.
pub struct Tokens {
    fixed: Vec<(String, Arc<Holder>)>,
    by_hash: RwLock<HashMap<String, Arc<Holder>>>,
}

/// The name the `--token` token goes by.
pub const FLAG_TOKEN_NAME: &str = "admin";

impl Tokens {
    /// The tokens of `--token` and the configuration file; those of the store are added by
    /// [`Tokens::reload`].
    pub fn new(flag: Option<&str>, file: &[TokenSpec]) -> Result<Tokens, String> {
        let mut fixed = Vec::new();
        if let Some(t) = flag {
            let caller = Caller { name: FLAG_TOKEN_NAME.into(), role: Role::Admin };
            fixed.push((
                hash_token(t),
                Arc::new(Holder { caller, source: Source::Flag, limiter: limit::Limiter::new(None)? }),
            ));
        }
        for t in file {
            let caller = Caller { name: t.name.clone(), role: t.role };
            let limiter = limit::Limiter::new(t.rate.as_ref())?;
            fixed.push((t.hash.to_ascii_lowercase(), Arc::new(Holder { caller, source: Source::File, limiter })));
        }
        let by_hash = fixed.iter().cloned().collect();
        Ok(Tokens { fixed, by_hash: RwLock::new(by_hash) })
    }

    /// Reads the tokens created through the API again (after one is created or removed).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), ApiError> {
        let stored = store.tokens().await?;
        let mut map: HashMap<String, Arc<Holder>> = self.fixed.iter().cloned().collect();
        let old = self.by_hash.read().unwrap_or_else(|p| p.into_inner()).clone();
        for t in stored {
            // A token keeps its limiter's state across reloads.
            let holder = match old.get(&t.hash) {
                Some(h) if h.source == Source::Api && h.caller.name == t.name => h.clone(),
                _ => {
                    let caller = Caller { name: t.name, role: t.role };
                    Arc::new(Holder {
                        caller,
                        source: Source::Api,
                        limiter: limit::Limiter::new(None).map_err(ApiError::internal)?,
                    })
                }
            };
            map.entry(t.hash).or_insert(holder);
        }
        *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    /// Whether any token exists (else the server is open).
    pub fn enabled(&self) -> bool {
        !self.by_hash.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// The tokens of `--token` and the file: name, role, where from.
    pub fn fixed(&self) -> Vec<(String, Role, &'static str)> {
        self.fixed
            .iter()
            .map(|(_, h)| {
                let from = if h.source == Source::Flag { "--token" } else { "magpie.yaml" };
                (h.caller.name.clone(), h.caller.role, from)
            })
            .collect()
    }

    /// Whether a name is taken by a token of `--token` or the file.
    pub fn fixed_name(&self, name: &str) -> bool {
        self.fixed.iter().any(|(_, h)| h.caller.name == name)
    }

    fn holder(&self, token: &str) -> Option<Arc<Holder>> {
        self.by_hash.read().unwrap_or_else(|p| p.into_inner()).get(&hash_token(token)).cloned()
    }

    /// The caller a token belongs to.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.holder(token).map(|h| h.caller.clone())
    }
}

/// The token a request presents: `Authorization: Bearer`, and where `weak` (source adapters and
/// listen paths, for senders that can do no better) also HTTP basic auth (the password, or the
/// user name when there is none) or a `token` query parameter.
fn presented(headers: &HeaderMap, query: Option<&str>, weak: bool) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(t) = auth.and_then(|a| a.strip_prefix("Bearer ")) {
        return Some(t.trim().to_string());
    }
    if !weak {
        return None;
    }
    if let Some(b) = auth.and_then(|a| a.strip_prefix("Basic ")) {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
        return Some(if pass.is_empty() { user } else { pass }.to_string());
    }
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
}

/// Routes whose senders may present the token the weaker ways.
fn weak_route(path: &str) -> bool {
    path.starts_with("/hooks/") || path == "/v1/buses/{bus}/sources/{source}"
}

/// The API's gate: finds the caller, refuses what its role may not do, holds ingest to the
/// token's rate.
pub async fn guard(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let need = routes::need(req.method(), &route);
    if !state.tokens.enabled() {
        req.extensions_mut().insert(Caller::anonymous());
        return next.run(req).await;
    }
    if need == Need::Public {
        return next.run(req).await;
    }
    let Some(given) = presented(req.headers(), req.uri().query(), weak_route(&route)) else {
        return ApiError::unauthorized().into_response();
    };
    let Some(holder) = state.tokens.holder(&given) else {
        return ApiError::with_status(StatusCode::UNAUTHORIZED, "this token is not valid (unknown or revoked)")
            .into_response();
    };
    let caller = holder.caller.clone();
    if !caller.role.may(need) {
        return forbidden(&caller, need, req.method().as_str(), &route).into_response();
    }
    if need == Need::Ingest
        && let Err(wait) = holder.limiter.check()
    {
        return limit::too_many(&caller.name, wait);
    }
    req.extensions_mut().insert(caller);
    if weak_route(&route) {
        strip_query_token(&mut req);
    }
    next.run(req).await
}

/// The `token` query parameter goes no further than the gate (no handler, trace or log sees it).
fn strip_query_token(req: &mut Request) {
    let Some(q) = req.uri().query() else { return };
    if !q.split('&').any(|kv| kv == "token" || kv.starts_with("token=")) {
        return;
    }
    let kept: Vec<&str> = q.split('&').filter(|kv| *kv != "token" && !kv.starts_with("token=")).collect();
    let path = req.uri().path();
    let pq = if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// 403, naming the token, its role and the roles that may.
pub fn forbidden(caller: &Caller, need: Need, method: &str, route: &str) -> ApiError {
    ApiError::with_status(
        StatusCode::FORBIDDEN,
        format!(
            "token {:?} has role {}; {method} {route} needs {}",
            caller.name,
            caller.role,
            routes::roles_text(need)
        ),
    )
}
