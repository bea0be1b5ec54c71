//! The web console (`/console`): server-rendered pages (askama) with htmx served from the binary
//! (no CDN, no build step, works offline), in Chinese and English.
//!
//! It owns the pages, the language choice and the console's login session; it knows nothing the
//! API does not: every page reads and changes what the API's own services do (`runtime::apply`,
//! the store, the ingest service), with the same checks and the same errors. No page shows a
//! secret (connections are shown masked).
//!
//! On a server with tokens, the console asks for one once and keeps a session (a random id in an
//! HttpOnly, SameSite=Strict cookie; the server keeps its hash and the token's name and role in
//! memory for 12 hours, until log out or restart). A viewer's session reads every page; changes
//! need an operator or admin, as in the API; an ingest token cannot log in. Forms are POSTs that
//! also must come from the console's own origin.

mod dry_run;
mod flows;
mod i18n;
mod pages;
mod trace;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

pub use i18n::Lang;

use magpie_core::auth::Need;

use crate::AppState;
use crate::auth::Caller;

type S = State<Arc<AppState>>;

/// The session cookie's name.
const COOKIE: &str = "magpie_console";

/// htmx, vendored (Zero-Clause BSD, `static/htmx.LICENSE`).
const HTMX: &[u8] = include_bytes!("../../static/htmx.min.js");

/// The console's routes.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/console", get(pages::home))
        .route("/console/buses", get(pages::buses).post(pages::save_bus))
        .route("/console/rules/{bus}/{rule}", get(pages::rule).post(pages::save_rule))
        .route("/console/rules/{bus}/{rule}/toggle", post(pages::toggle_rule))
        .route("/console/patterns/check", post(pages::check_pattern))
        .route("/console/templates", get(pages::templates))
        .route("/console/templates/send", post(pages::send_template))
        .route("/console/events", get(pages::events))
        .route("/console/events/{id}", get(trace::page))
        .route("/console/events/{id}/runs", get(trace::runs))
        .route("/console/flows", get(flows::list))
        .route("/console/flows/{name}", get(flows::page).post(flows::save))
        .route("/console/flows/{name}/publish", post(flows::publish))
        .route("/console/flows/{name}/dry-run", post(flows::dry_run))
        .route("/console/connections", get(pages::connections))
        .route("/console/connections/{name}/test", post(pages::test_connection))
        .route("/console/dead-letters", get(pages::dead_letters))
        .route("/console/alerts", get(pages::alerts))
        .route("/console/silences", get(pages::silences))
        .route("/console/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(state, guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/lang/{code}", get(pages::set_lang))
        .route("/console/static/htmx.min.js", get(htmx))
        .merge(pages)
}

async fn htmx() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=86400")], HTMX)
        .into_response()
}

/// How long a console session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The console's login sessions: random ids kept in memory (hashed), each until it expires, the
/// user logs out, or the server restarts.
#[derive(Default)]
pub struct Sessions {
    live: std::sync::Mutex<std::collections::HashMap<String, (i64, Caller)>>,
}

impl Sessions {
    fn digest(id: &str) -> String {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A new session; returns the id the cookie carries.
    fn open(&self, caller: Caller, now: i64) -> String {
        let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, (until, _)| *until > now);
        live.insert(Self::digest(&id), (now + SESSION_MS, caller));
        id
    }

    /// The caller of a live session.
    fn caller(&self, id: &str, now: i64) -> Option<Caller> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&Self::digest(id)).filter(|(until, _)| *until > now).map(|(_, c)| c.clone())
    }

    fn close(&self, id: &str) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::digest(id));
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A form POST must come from this console (CSRF): the browser's `Origin` (or `Referer`) names
/// the host the request was sent to; a form without either is refused too.
fn same_origin(headers: &HeaderMap) -> bool {
    crate::origin::same_site(headers) == Some(true) && !crate::origin::marked_cross_site(headers)
}

/// Forms that change nothing: a viewer may use them.
const READ_FORMS: [&str; 3] = ["/console/patterns/check", "/console/flows/{name}/dry-run", "/console/logout"];

/// Pages need a session when the server has tokens; changes need a role that may change
/// configuration; forms must come from the console.
async fn guard(State(state): S, mut req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "the form did not come from this console").into_response();
    }
    let caller = if state.tokens.enabled() {
        let found = cookie(req.headers(), COOKIE).and_then(|c| state.console_sessions.caller(c, magpie_core::now_ms()));
        let Some(caller) = found else {
            let to = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/console");
            return Redirect::to(&format!("/console/login?next={}", pages::enc(to))).into_response();
        };
        caller
    } else {
        Caller::anonymous()
    };
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
    let read_only = route.as_deref().is_some_and(|r| READ_FORMS.contains(&r));
    if req.method() == Method::POST && !read_only && !caller.role.may(Need::Operate) {
        let why = format!("token {:?} has role {}: changes need operator or admin", caller.name, caller.role);
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    t: &'static i18n::Text,
    lang: Lang,
    next: String,
    error: Option<&'static str>,
}

#[derive(serde::Deserialize)]
struct Next_ {
    next: Option<String>,
}

/// Only a console path may be where a login goes next.
fn next_path(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("//") && n.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "/console".into())
}

async fn login_page(headers: HeaderMap, q: axum::extract::Query<Next_>) -> Response {
    let lang = Lang::of(&headers);
    render(&LoginPage { t: lang.text(), lang, next: next_path(q.0.next), error: None })
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(state): S, headers: HeaderMap, form: axum::Form<LoginForm>) -> Response {
    let lang = Lang::of(&headers);
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "the form did not come from this console").into_response();
    }
    let next = next_path(form.0.next);
    if !state.tokens.enabled() {
        return Redirect::to(&next).into_response();
    }
    let refuse = |error, status| {
        let page = LoginPage { t: lang.text(), lang, next: next.clone(), error: Some(error) };
        let mut r = render(&page);
        *r.status_mut() = status;
        r
    };
    let Some(caller) = state.tokens.caller(form.0.token.trim()) else {
        return refuse(lang.text().bad_token, StatusCode::UNAUTHORIZED);
    };
    if !caller.role.may(Need::Read) {
        return refuse(lang.text().ingest_token, StatusCode::FORBIDDEN);
    }
    let id = state.console_sessions.open(caller, magpie_core::now_ms());
    let set = format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_MS / 1000);
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = set.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(state): S, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.console_sessions.close(id);
    }
    let mut r = Redirect::to("/console/login").into_response();
    if let Ok(v) = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0").parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Applies a change made in the console, as its session's token: the API's own service.
async fn apply(
    state: &AppState,
    who: &Caller,
    doc: magpie_core::ConfigDocument,
    mode: crate::runtime::FlowWrite,
) -> Result<(), crate::error::ApiError> {
    crate::runtime::apply(&state.runtime, state.store.as_ref(), doc, vec![], mode, state.env.as_ref(), &who.name).await
}

/// A rendered page, or a plain 500 naming the template error.
fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the page: {e}")).into_response(),
    }
}
