//! Buses and rules (with the pattern editor), templates (发送事件 > 默认模板), events,
//! connections, dead letters and alerts.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use magpie_core::config::{BusSpec, ConfigDocument, RuleSpec, TargetSpec};
use magpie_pattern::Pattern;
use magpie_store::{AlertFilter, EventFilter, LetterFilter};
use serde_json::Value;

use super::i18n::{LANG_COOKIE, Text};
use super::{Lang, S, render};
use crate::runtime::{FlowWrite, redacted_connection};

/// Percent-encodes a path segment or query value.
pub(super) fn enc(v: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(v, SEGMENT).to_string()
}

/// The fields of an `application/x-www-form-urlencoded` body (repeated names kept).
pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

pub(super) fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An epoch-ms time as RFC 3339 (UTC, seconds).
pub(super) fn when(ms: i64) -> String {
    // RFC 3339 has four-digit years: later times (a silence "until forever") are shown as ms.
    const YEAR_10000_MS: i64 = 253_402_300_800_000;
    if !(0..YEAR_10000_MS).contains(&ms) {
        return format!("{ms} ms");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn times_out_of_rfc3339_range_do_not_panic() {
        assert_eq!(when(0), "1970-01-01T00:00:00Z");
        assert_eq!(when(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(when(-5), "-5 ms");
    }
}

/// A field of a JSON row as table text: strings as they are, `-` for none, other values as JSON.
fn cell(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub(super) async fn home() -> Redirect {
    Redirect::to("/console/buses")
}

/// `GET /console/lang/{code}`: remembers the language and goes back.
pub(super) async fn set_lang(Path(code): Path<String>, headers: HeaderMap) -> Response {
    let code = if code == "zh" { "zh" } else { "en" };
    let back = headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/console").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/console".into());
    let mut r = Redirect::to(&back).into_response();
    if let Ok(v) = format!("{LANG_COOKIE}={code}; Path=/console; SameSite=Strict; Max-Age=31536000").parse() {
        r.headers_mut().insert(axum::http::header::SET_COOKIE, v);
    }
    r
}

// ---- buses and rules ----------------------------------------------------------------------

pub(super) struct RuleRow {
    pub bus: String,
    pub name: String,
    pub enabled: bool,
    pub targets: String,
    pub pattern: String,
}

pub(super) struct BusRow {
    pub name: String,
    pub description: String,
    pub rules: Vec<RuleRow>,
}

#[derive(Template)]
#[template(path = "console/buses.html")]
struct BusesPage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    buses: Vec<BusRow>,
    error: Option<String>,
}

pub(super) async fn buses(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    render(&buses_page(&state, Lang::of(&headers), None))
}

fn buses_page(state: &crate::AppState, lang: Lang, error: Option<String>) -> BusesPage {
    let rt = state.runtime.get();
    let buses = rt
        .buses
        .values()
        .map(|b| BusRow {
            name: b.name.clone(),
            description: b.description.clone(),
            rules: rt
                .rules
                .get(&b.name)
                .map(|m| {
                    m.values()
                        .map(|r| RuleRow {
                            bus: r.bus.clone(),
                            name: r.name.clone(),
                            enabled: r.enabled,
                            targets: r.targets.iter().map(|t| t.flow.as_str()).collect::<Vec<_>>().join(", "),
                            pattern: r.pattern.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let t = lang.text();
    BusesPage { t, lang, title: t.buses, active: "buses", buses, error }
}

/// `POST /console/buses`: creates a bus, or changes its description (name, description).
pub(super) async fn save_bus(
    axum::extract::State(state): S,
    axum::Extension(who): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::of(&headers);
    let f = form(&body);
    let name = field(&f, "name").unwrap_or_default().trim().to_string();
    let mut bus = state.runtime.get().buses.get(&name).cloned().unwrap_or_else(|| BusSpec::new(&name, ""));
    bus.description = field(&f, "description").unwrap_or_default().to_string();
    let doc = ConfigDocument { buses: vec![bus], ..Default::default() };
    match super::apply(&state, &who, doc, FlowWrite::Publish).await {
        Ok(()) => Redirect::to("/console/buses").into_response(),
        Err(e) => render(&buses_page(&state, lang, Some(e.message.replacen("buses[0].", "", 1)))),
    }
}

/// `POST /console/rules/{bus}/{rule}/toggle`: enables or disables a rule.
pub(super) async fn toggle_rule(
    axum::extract::State(state): S,
    axum::Extension(who): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    Path((bus, rule)): Path<(String, String)>,
) -> Response {
    let lang = Lang::of(&headers);
    let Some(mut r) = state.runtime.get().rules.get(&bus).and_then(|m| m.get(&rule)).cloned() else {
        return render(&buses_page(&state, lang, Some(format!("no rule {rule:?} on bus {bus:?}"))));
    };
    r.enabled = !r.enabled;
    let doc = ConfigDocument { rules: vec![r], ..Default::default() };
    match super::apply(&state, &who, doc, FlowWrite::Publish).await {
        Ok(()) => Redirect::to("/console/buses").into_response(),
        Err(e) => render(&buses_page(&state, lang, Some(e.message))),
    }
}

pub(super) struct Target {
    pub flow: String,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "console/rule.html")]
struct RulePage {
    t: &'static Text,
    lang: Lang,
    title: String,
    active: &'static str,
    bus: String,
    name: String,
    is_new: bool,
    description: String,
    pattern: String,
    enabled: bool,
    targets: Vec<Target>,
    templates: Vec<(&'static str, &'static str)>,
    error: Option<String>,
    saved: bool,
}

fn rule_page(
    state: &crate::AppState,
    lang: Lang,
    bus: &str,
    rule: Option<&RuleSpec>,
    error: Option<String>,
    saved: bool,
) -> RulePage {
    let rt = state.runtime.get();
    let chosen: Vec<&str> = rule.map(|r| r.targets.iter().map(|t| t.flow.as_str()).collect()).unwrap_or_default();
    // Only published (live) flows can be targets.
    let targets = rt.flows.keys().map(|f| Target { flow: f.clone(), on: chosen.contains(&f.as_str()) }).collect();
    let t = lang.text();
    RulePage {
        t,
        lang,
        title: format!("{} · {}", t.rules, rule.map_or(t.new_rule, |r| r.name.as_str())),
        active: "buses",
        bus: bus.to_string(),
        name: rule.map(|r| r.name.clone()).unwrap_or_default(),
        is_new: rule.is_none(),
        description: rule.map(|r| r.description.clone()).unwrap_or_default(),
        pattern: rule
            .map(|r| serde_json::to_string_pretty(&r.pattern).unwrap_or_default())
            .unwrap_or_else(|| "{\n  \"source\": [\"cvm.cloud.tencent\"]\n}".into()),
        enabled: rule.is_none_or(|r| r.enabled),
        targets,
        templates: magpie_core::templates::all().iter().map(|t| (t.name, t.label)).collect(),
        error,
        saved,
    }
}

/// `GET /console/rules/{bus}/{rule}` (`new` for a new rule).
pub(super) async fn rule(
    axum::extract::State(state): S,
    headers: HeaderMap,
    Path((bus, rule)): Path<(String, String)>,
) -> Response {
    let lang = Lang::of(&headers);
    let rt = state.runtime.get();
    if !rt.buses.contains_key(&bus) {
        return (axum::http::StatusCode::NOT_FOUND, format!("no bus {bus:?}")).into_response();
    }
    let spec = rt.rules.get(&bus).and_then(|m| m.get(&rule)).cloned();
    if spec.is_none() && rule != "new" {
        return (axum::http::StatusCode::NOT_FOUND, format!("no rule {rule:?} on bus {bus:?}")).into_response();
    }
    render(&rule_page(&state, lang, &bus, spec.as_ref(), None, false))
}

/// `POST /console/rules/{bus}/{rule}`: saves the rule through the same checks as the API.
pub(super) async fn save_rule(
    axum::extract::State(state): S,
    axum::Extension(who): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    Path((bus, _)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let lang = Lang::of(&headers);
    let f = form(&body);
    let name = field(&f, "name").unwrap_or_default().trim().to_string();
    let pattern_text = field(&f, "pattern").unwrap_or_default();
    let targets: Vec<TargetSpec> =
        f.iter().filter(|(k, _)| k == "targets").map(|(_, v)| TargetSpec { flow: v.clone() }).collect();
    let mut draft = RuleSpec {
        name: name.clone(),
        bus: bus.clone(),
        description: field(&f, "description").unwrap_or_default().to_string(),
        pattern: Value::Object(Default::default()),
        enabled: field(&f, "enabled").is_some(),
        targets,
        alert: state.runtime.get().rules.get(&bus).and_then(|m| m.get(&name)).and_then(|r| r.alert.clone()),
    };
    let fail = |draft: &RuleSpec, e: String| {
        let mut p = rule_page(&state, lang, &bus, Some(draft), Some(e), false);
        p.pattern = pattern_text.to_string();
        p.is_new = field(&f, "is_new").is_some();
        render(&p)
    };
    match magpie_core::json::parse(pattern_text.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|p| p.into_clean().map_err(|e| format!("{}: {}", e.path_text(), e.reason)))
    {
        Ok(v) => draft.pattern = v,
        Err(e) => return fail(&draft, format!("pattern: {e}")),
    }
    let doc = ConfigDocument { rules: vec![draft.clone()], ..Default::default() };
    let applied = super::apply(&state, &who, doc, FlowWrite::Publish);
    match applied.await {
        Ok(()) => {
            let mut p = rule_page(&state, lang, &bus, Some(&draft), None, true);
            p.is_new = false;
            render(&p)
        }
        Err(e) => {
            let at = e.path.as_deref().map(|p| p.trim_start_matches("rules[0].").to_string());
            let msg = e.message.replacen("rules[0].", "", 1);
            fail(
                &draft,
                at.map_or(msg.clone(), |a| if msg.starts_with(&a) { msg.clone() } else { format!("{a}: {msg}") }),
            )
        }
    }
}

/// `POST /console/patterns/check`: the pattern editor's answer as you type (an htmx fragment):
/// valid, or the error with its path; and with a template, whether it matches.
pub(super) async fn check_pattern(headers: HeaderMap, body: Bytes) -> Html<String> {
    let t = Lang::of(&headers).text();
    let f = form(&body);
    let text = field(&f, "pattern").unwrap_or_default();
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let value = match magpie_core::json::parse(text.as_bytes()) {
        Err(e) => {
            return Html(format!(
                "<span class=\"err\" id=\"pattern-error\">{}: {}</span>",
                t.error,
                esc(&e.to_string())
            ));
        }
        Ok(p) => match p.into_clean() {
            Ok(v) => v,
            Err(e) => {
                return Html(format!(
                    "<span class=\"err\" id=\"pattern-error\">{}: {}</span>",
                    esc(&e.path_text()),
                    esc(&e.reason)
                ));
            }
        },
    };
    match Pattern::parse(&value) {
        Err(e) => {
            let path = if e.path.is_empty() { "pattern".to_string() } else { e.path.clone() };
            Html(format!("<span class=\"err\" id=\"pattern-error\">{}: {}</span>", esc(&path), esc(&e.reason)))
        }
        Ok(p) => {
            let mut out = format!("<span class=\"ok\" id=\"pattern-ok\">{}</span>", t.pattern_ok);
            let pasted = field(&f, "event").filter(|e| !e.trim().is_empty());
            if let Some(text) = pasted {
                // A pasted event is read as strictly as ingest reads one.
                match magpie_core::json::parse(text.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|p| p.into_clean().map_err(|e| format!("{}: {}", e.path_text(), e.reason)))
                {
                    Ok(ev) if ev.is_object() => {
                        let (cls, word) = if p.matches(&ev) { ("ok", t.matched) } else { ("err", t.not_matched) };
                        out.push_str(&format!(
                            " · <span class=\"{cls}\" id=\"pattern-match\">{} {word}</span>",
                            t.events
                        ));
                    }
                    Ok(_) => {
                        out.push_str(" · <span class=\"err\" id=\"event-error\">event: must be a JSON object</span>")
                    }
                    Err(e) => {
                        out.push_str(&format!(" · <span class=\"err\" id=\"event-error\">event: {}</span>", esc(&e)))
                    }
                }
            } else if let Some(tpl) =
                field(&f, "template").filter(|n| !n.is_empty()).and_then(magpie_core::templates::find)
            {
                let ev = tpl.instantiate("test", magpie_core::now_ms());
                let (cls, word) = if p.matches(&ev) { ("ok", t.matched) } else { ("err", t.not_matched) };
                out.push_str(&format!(" · <span class=\"{cls}\" id=\"pattern-match\">{} {word}</span>", esc(tpl.name)));
            }
            Html(out)
        }
    }
}

// ---- templates ----------------------------------------------------------------------------

pub(super) struct TemplateRow {
    pub name: &'static str,
    pub slug: String,
    pub label: &'static str,
    pub description: &'static str,
    pub event: String,
}

#[derive(Template)]
#[template(path = "console/templates.html")]
struct TemplatesPage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    buses: Vec<String>,
    templates: Vec<TemplateRow>,
    error: Option<String>,
}

fn templates_page(state: &crate::AppState, lang: Lang, error: Option<String>) -> TemplatesPage {
    let t = lang.text();
    TemplatesPage {
        t,
        lang,
        title: t.templates,
        active: "templates",
        buses: state.runtime.get().buses.keys().cloned().collect(),
        templates: magpie_core::templates::all()
            .iter()
            .map(|x| TemplateRow {
                name: x.name,
                slug: x.name.replace(':', "-"),
                label: x.label,
                description: x.description,
                event: serde_json::to_string_pretty(&x.instantiate("<generated>", 0)).unwrap_or_default(),
            })
            .collect(),
        error,
    }
}

pub(super) async fn templates(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    render(&templates_page(&state, Lang::of(&headers), None))
}

/// `POST /console/templates/send`: 发送事件 > 默认模板 — stores the template's event with a fresh
/// id and time (the ingest service, as PutEvents) and shows its trace.
pub(super) async fn send_template(axum::extract::State(state): S, headers: HeaderMap, body: Bytes) -> Response {
    let lang = Lang::of(&headers);
    let f = form(&body);
    let bus = field(&f, "bus").unwrap_or(magpie_core::DEFAULT_BUS).to_string();
    let Some(tpl) = field(&f, "name").and_then(magpie_core::templates::find) else {
        return render(&templates_page(&state, lang, Some("no such template".into())));
    };
    let now = magpie_core::now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let sent = async {
        let region = crate::ingest::bus_region(&state, &bus)?;
        let event = crate::ingest::accept(&state, region.as_deref(), tpl.instantiate(&id, now), now)
            .map_err(|e| crate::error::ApiError::bad_request(e.to_string()))?;
        crate::ingest::append(&state, &bus, vec![event], 0).await
    };
    match sent.await {
        Ok(_) => Redirect::to(&format!("/console/events/{}", enc(&id))).into_response(),
        Err(e) => render(&templates_page(&state, lang, Some(e.message))),
    }
}

// ---- events -------------------------------------------------------------------------------

pub(super) struct EventRow {
    pub id: String,
    pub time: String,
    pub bus: String,
    pub type_: String,
    pub subject: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    events: Vec<EventRow>,
    type_: String,
    subject: String,
    status: String,
    since: String,
    error: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub(super) struct EventsQuery {
    #[serde(rename = "type")]
    type_: Option<String>,
    subject: Option<String>,
    status: Option<String>,
    since: Option<String>,
}

pub(super) async fn events(
    axum::extract::State(state): S,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = Lang::of(&headers);
    let q = q.map(|q| q.0).unwrap_or_default();
    let now = magpie_core::now_ms();
    let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.trim().is_empty());
    let mut error = None;
    let since = match nonempty(&q.since) {
        Some(s) => match crate::api::time_param(&s, "since", now) {
            Ok(ms) => Some(ms),
            Err(e) => {
                error = Some(e.message);
                None
            }
        },
        None => None,
    };
    let filter = EventFilter {
        since_ms: since,
        event_type: nonempty(&q.type_),
        subject: nonempty(&q.subject),
        limit: 200,
        ..EventFilter::default()
    };
    let status = nonempty(&q.status);
    let events = match state.store.list_events(filter).await {
        Ok(list) => list
            .into_iter()
            .filter(|e| status.as_deref().is_none_or(|s| e.body.get("status").and_then(Value::as_str) == Some(s)))
            .map(|e| {
                let s = |k: &str| e.body.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                EventRow {
                    id: e.id.clone(),
                    time: when(e.received_at),
                    bus: e.bus.clone(),
                    type_: s("type"),
                    subject: s("subject"),
                    status: s("status"),
                }
            })
            .collect(),
        Err(e) => {
            error = Some(e.to_string());
            Vec::new()
        }
    };
    let t = lang.text();
    render(&EventsPage {
        t,
        lang,
        title: t.events,
        active: "events",
        events,
        type_: q.type_.unwrap_or_default(),
        subject: q.subject.unwrap_or_default(),
        status: q.status.unwrap_or_default(),
        since: q.since.unwrap_or_default(),
        error,
    })
}

// ---- connections, dead letters, alerts -------------------------------------------------------

#[derive(Template)]
#[template(path = "console/table.html")]
struct TablePage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    error: Option<String>,
}

pub(super) async fn connections(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    connections_page(&state, Lang::of(&headers), None, None).await
}

#[derive(Template)]
#[template(path = "console/connections.html")]
struct ConnectionsPage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    rows: Vec<Vec<String>>,
    notice: Option<String>,
    error: Option<String>,
}

async fn connections_page(
    state: &crate::AppState,
    lang: Lang,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let t = lang.text();
    let now = magpie_core::now_ms();
    let mut rows = Vec::new();
    for c in state.runtime.get().connections.values() {
        let v = redacted_connection(c);
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        // The outbox: messages waiting, and a pause the platform asked for.
        let outbox = match state.store.outbox_status(&c.name).await {
            Ok(o) => {
                let paused = o.state.paused_until.filter(|p| *p > now).map(|p| {
                    format!(", paused until {} ({})", when(p), o.state.pause_reason.clone().unwrap_or_default())
                });
                format!(
                    "{} queued, {} sent, {} folded{}",
                    o.depth,
                    o.state.sent,
                    o.state.folded,
                    paused.unwrap_or_default()
                )
            }
            Err(e) => e.to_string(),
        };
        rows.push(vec![s("name"), s("platform"), s("webhook"), s("secret"), outbox]);
    }
    render(&ConnectionsPage { t, lang, title: t.connections, active: "connections", rows, notice, error })
}

pub(super) async fn dead_letters(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.text();
    let filter = LetterFilter { limit: 200, ..LetterFilter::default() };
    let (rows, error) = match state.store.dead_letters(filter).await {
        Ok(list) => (
            list.into_iter()
                .map(|l| {
                    let v = serde_json::to_value(&l).unwrap_or(Value::Null);
                    let s = |k: &str| cell(&v, k);
                    vec![s("id"), s("flow"), s("connection"), s("error_type"), s("error"), s("event_id")]
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    render(&TablePage {
        t,
        lang,
        title: t.dead_letters,
        active: "dead-letters",
        head: vec!["#", t.flows, t.connections, t.type_, t.error, t.events],
        rows,
        error,
    })
}

pub(super) async fn alerts(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.text();
    let filter = AlertFilter { limit: 200, ..AlertFilter::default() };
    let (rows, error) = match state.store.alerts(filter).await {
        Ok(list) => (
            list.into_iter()
                .map(|a| {
                    let v = serde_json::to_value(&a).unwrap_or(Value::Null);
                    let s = |k: &str| cell(&v, k);
                    let first = v.get("first_fired_at").and_then(Value::as_i64).map(when).unwrap_or_else(|| "-".into());
                    vec![
                        s("state"),
                        s("key"),
                        s("fired_count"),
                        first,
                        format!("{}/{}", s("bus"), s("rule")),
                        s("silenced_by"),
                    ]
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    render(&TablePage {
        t,
        lang,
        title: t.alerts,
        active: "alerts",
        head: vec![t.state, t.key, t.fired, t.time, t.rules, "silenced by"],
        rows,
        error,
    })
}

/// `GET /console/silences`: the silences that have not ended (maintenance windows).
pub(super) async fn silences(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.text();
    let now = magpie_core::now_ms();
    let (rows, error) = match state.store.silences(None).await {
        Ok(list) => (
            list.into_iter()
                .map(|x| {
                    let status = if x.active(now) {
                        "active"
                    } else if x.starts_at > now {
                        "pending"
                    } else {
                        "expired"
                    };
                    vec![
                        x.id.clone(),
                        status.to_string(),
                        x.pattern.to_string(),
                        when(x.starts_at),
                        when(x.ends_at),
                        x.comment.clone(),
                        x.created_by.clone(),
                    ]
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    render(&TablePage {
        t,
        lang,
        title: t.silences,
        active: "alerts",
        head: vec!["id", t.status, t.pattern, t.time, "→", t.description, "by"],
        rows,
        error,
    })
}

/// `POST /console/connections/{name}/test`: one text message to the robot, to check its webhook,
/// secret and keywords. Refused while the connection's outbox has messages waiting or is paused
/// (a test never jumps the queue or breaks a pause the platform asked for); the answer is shown.
pub(super) async fn test_connection(
    axum::extract::State(state): S,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let lang = Lang::of(&headers);
    let result = async {
        let rt = state.runtime.get();
        let conn = rt.connections.get(&name).ok_or_else(|| format!("no connection {name:?}"))?;
        let now = magpie_core::now_ms();
        let o = state.store.outbox_status(&name).await.map_err(|e| e.to_string())?;
        if o.depth > 0 || o.state.paused_until.is_some_and(|p| p > now) {
            return Err(format!(
                "the outbox of {name:?} is busy ({} queued{}): a test message would jump its queue; try when it is idle",
                o.depth,
                o.state
                    .paused_until
                    .filter(|p| *p > now)
                    .map(|p| format!(", paused until {}", when(p)))
                    .unwrap_or_default()
            ));
        }
        let env = |k: &str| (state.env)(k);
        let dest = crate::delivery::destination(conn, &env)?;
        let keyword = conn.keywords.first().map(|k| format!("{k} ")).unwrap_or_default();
        let msg = magpie_core::OutboundMessage {
            kind: magpie_core::config::MessageKind::Text,
            title: None,
            content: Value::String(format!("{keyword}Magpie 测试消息 · test message ({})", when(now))),
        };
        let prepared = crate::delivery::prepare(&dest, &msg, now).map_err(|f| crate::delivery::describe(&f))?;
        let timeout = conn.timeout.unwrap_or(crate::delivery::DEFAULT_TIMEOUT);
        let a = crate::delivery::send(&state.http, &state.runtime.egress, conn.platform, &prepared, timeout).await;
        let answer = format!(
            "HTTP {} {}",
            a.status_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            a.response.unwrap_or_default()
        );
        match a.failure {
            None => Ok(answer),
            Some(f) => Err(format!(
                "{}: {} ({answer})",
                f.kind.in_namespace(conn.platform.error_namespace()),
                crate::delivery::describe(&f)
            )),
        }
    };
    let (notice, error) = match result.await {
        Ok(answer) => (Some(format!("{name}: {answer}")), None),
        Err(e) => (None, Some(e)),
    };
    connections_page(&state, lang, notice, error).await
}
