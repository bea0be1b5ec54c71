//! Flows: the list with live and draft versions; one flow's steps as a tree (the seed's canvas,
//! read only), its YAML to edit and save as a draft, the draft against live, and publishing
//! (步骤7：发布集成流).

use askama::Template;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use magpie_core::config::{ConfigDocument, FlowSpec};
use serde_json::Value;

use super::i18n::Text;
use super::pages::{enc, field, form, when};
use super::{Lang, S, render};
use crate::runtime::{self, FlowWrite};

pub(super) struct FlowRow {
    pub name: String,
    pub live: String,
    pub draft: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "console/flows.html")]
struct FlowsPage {
    t: &'static Text,
    lang: Lang,
    title: &'static str,
    active: &'static str,
    flows: Vec<FlowRow>,
    error: Option<String>,
}

fn v(n: Option<i64>) -> String {
    n.map(|n| format!("v{n}")).unwrap_or_else(|| "—".into())
}

pub(super) async fn list(axum::extract::State(state): S, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.text();
    let (flows, error) = match state.store.flow_heads().await {
        Ok(h) => (
            h.into_iter()
                .map(|h| FlowRow { name: h.name, live: v(h.live), draft: v(h.draft), updated: when(h.updated_at) })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    render(&FlowsPage { t, lang, title: t.flows, active: "flows", flows, error })
}

/// One line of the steps tree.
pub(super) struct Node {
    pub depth: usize,
    pub kind: String,
    pub summary: String,
}

/// The steps as a tree: each step's kind and what it is about; try/catch and branches nest.
fn tree(steps: &Value, depth: usize, out: &mut Vec<Node>) {
    for step in steps.as_array().into_iter().flatten() {
        let Some((kind, body)) = step.as_object().and_then(|o| o.iter().next()) else { continue };
        let pick = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let summary = pick("connection")
            .map(|c| format!("→ {c}"))
            .or_else(|| pick("name"))
            .or_else(|| pick("category"))
            .or_else(|| pick("message").map(|m| m.lines().next().unwrap_or_default().to_string()))
            .unwrap_or_default();
        out.push(Node { depth, kind: kind.clone(), summary });
        if let Some(inner) = body.get("steps") {
            tree(inner, depth + 1, out);
        }
        for c in body.get("catch").and_then(Value::as_array).into_iter().flatten() {
            let errors = c.get("errors").map(|e| e.to_string()).unwrap_or_default();
            out.push(Node { depth: depth + 1, kind: "catch".into(), summary: errors });
            if let Some(inner) = c.get("steps") {
                tree(inner, depth + 2, out);
            }
        }
    }
}

#[derive(Template)]
#[template(path = "console/flow.html")]
struct FlowPage {
    t: &'static Text,
    lang: Lang,
    title: String,
    active: &'static str,
    name: String,
    live: String,
    draft: String,
    has_draft: bool,
    nodes: Vec<Node>,
    yaml: String,
    diff: Vec<(char, String)>,
    error: Option<String>,
    notice: Option<String>,
    templates: Vec<(&'static str, &'static str)>,
    dry: Option<super::dry_run::DryRun>,
}

async fn flow_page(
    state: &crate::AppState,
    lang: Lang,
    name: &str,
    edited: Option<String>,
    error: Option<String>,
    notice: Option<String>,
) -> Result<FlowPage, Response> {
    let heads =
        state.store.flow_heads().await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())?;
    let Some(h) = heads.into_iter().find(|h| h.name == name) else {
        return Err((StatusCode::NOT_FOUND, format!("no flow {name:?}")).into_response());
    };
    let body = |ver: Option<i64>| async move {
        match ver {
            Some(v) => state.store.flow_version(name, v).await.ok().flatten().map(|x| x.body),
            None => None,
        }
    };
    let (live, draft) = (body(h.live).await, body(h.draft).await);
    let shown = draft.clone().or_else(|| live.clone()).unwrap_or(Value::Null);
    let mut nodes = Vec::new();
    tree(shown.get("steps").unwrap_or(&Value::Null), 0, &mut nodes);
    let yaml = |x: &Option<Value>| x.as_ref().map(magpie_core::config::to_yaml).unwrap_or_default();
    let diff = match (&live, &draft) {
        (Some(_), Some(_)) => similar::TextDiff::from_lines(yaml(&live).as_str(), yaml(&draft).as_str())
            .iter_all_changes()
            .map(|c| {
                let sign = match c.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                (sign, c.value().trim_end_matches('\n').to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    let t = lang.text();
    Ok(FlowPage {
        t,
        lang,
        title: format!("{} · {name}", t.flows),
        active: "flows",
        name: name.to_string(),
        live: v(h.live),
        draft: v(h.draft),
        has_draft: h.draft.is_some(),
        nodes,
        yaml: edited.unwrap_or_else(|| magpie_core::config::to_yaml(&shown)),
        diff,
        error,
        notice,
        templates: magpie_core::templates::all().iter().map(|t| (t.name, t.label)).collect(),
        dry: None,
    })
}

pub(super) async fn page(axum::extract::State(state): S, headers: HeaderMap, Path(name): Path<String>) -> Response {
    match flow_page(&state, Lang::of(&headers), &name, None, None, None).await {
        Ok(p) => render(&p),
        Err(r) => r,
    }
}

/// `POST /console/flows/{name}`: saves the edited YAML as the flow's draft.
pub(super) async fn save(
    axum::extract::State(state): S,
    axum::Extension(who): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let lang = Lang::of(&headers);
    let f = form(&body);
    let text = field(&f, "yaml").unwrap_or_default().to_string();
    let parsed: Result<FlowSpec, String> = magpie_core::config::parse_yaml::<Value>(&text)
        .and_then(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.entry("name").or_insert_with(|| Value::String(name.clone()));
            }
            magpie_core::config::from_value(v)
        })
        .map_err(|e| e.to_string());
    let result = match parsed {
        Ok(spec) if spec.name != name => Err(format!("name: {:?} does not match the flow's {name:?}", spec.name)),
        Ok(spec) => {
            let doc = ConfigDocument { flows: vec![spec], ..Default::default() };
            super::apply(&state, &who, doc, FlowWrite::Draft).await.map_err(|e| e.message.replacen("flows[0].", "", 1))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/console/flows/{}", enc(&name))).into_response(),
        Err(e) => match flow_page(&state, lang, &name, Some(text), Some(e), None).await {
            Ok(p) => render(&p),
            Err(r) => r,
        },
    }
}

/// `POST /console/flows/{name}/publish`: the draft becomes live.
pub(super) async fn publish(
    axum::extract::State(state): S,
    axum::Extension(who): axum::Extension<crate::auth::Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let lang = Lang::of(&headers);
    let done = async {
        let heads = state.store.flow_heads().await.map_err(|e| e.to_string())?;
        let h = heads.into_iter().find(|h| h.name == name).ok_or_else(|| format!("no flow {name:?}"))?;
        let d = h.draft.ok_or_else(|| format!("flow {name:?} has no draft to publish"))?;
        runtime::make_live(&state.runtime, state.store.as_ref(), &name, d, state.env.as_ref(), &who.name)
            .await
            .map_err(|e| e.message)?;
        Ok::<i64, String>(d)
    };
    let (error, notice) = match done.await {
        Ok(d) => (None, Some(format!("v{d} · {}", lang.text().live))),
        Err(e) => (Some(e), None),
    };
    match flow_page(&state, lang, &name, None, error, notice).await {
        Ok(p) => render(&p),
        Err(r) => r,
    }
}

/// `POST /console/flows/{name}/dry-run`: runs the draft (or the live version) over a template and
/// previews each message as the robot will show it; sends nothing.
pub(super) async fn dry_run(
    axum::extract::State(state): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let lang = Lang::of(&headers);
    let f = form(&body);
    let mut page = match flow_page(&state, lang, &name, None, None, None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(tpl) = field(&f, "template").and_then(magpie_core::templates::find) else {
        page.error = Some("choose a template".into());
        return render(&page);
    };
    // The version shown on the page: the draft if there is one, else live.
    let spec: Result<FlowSpec, String> = magpie_core::config::parse_yaml::<Value>(&page.yaml)
        .and_then(magpie_core::config::from_value)
        .map_err(|e| e.to_string());
    let flow = spec.and_then(|s| magpie_flow::Flow::compile(&s).map_err(|e| format!("{}: {}", e.path, e.reason)));
    match flow {
        Ok(flow) => {
            let event = tpl.instantiate(&format!("dry-run-{}", uuid::Uuid::new_v4()), magpie_core::now_ms());
            page.dry = Some(super::dry_run::run(&state, &name, &flow, event).await);
        }
        Err(e) => page.error = Some(e),
    }
    render(&page)
}
