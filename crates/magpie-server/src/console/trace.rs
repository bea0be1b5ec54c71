//! The trace of one event as a timeline: rules matched → flow runs → steps → messages → delivery
//! attempts with the robot's answer. The runs part refreshes itself (htmx) until every run ended.

use askama::Template;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::i18n::Text;
use super::pages::when;
use super::{Lang, S, render};

pub(super) struct Step {
    pub path: String,
    pub kind: String,
    pub status: String,
    pub detail: String,
}

pub(super) struct Delivery {
    pub connection: String,
    pub status: String,
    pub digest: String,
    pub error: String,
}

pub(super) struct Attempt {
    /// The message as the robot shows it (HTML: escaped text, WeCom's colours as spans).
    pub preview: String,
    pub connection: String,
    pub platform: String,
    pub outcome: String,
    pub status_code: String,
    pub request: String,
    pub response: String,
    pub error: String,
}

pub(super) struct Run {
    pub job_id: String,
    pub rule: String,
    pub flow: String,
    pub version: String,
    pub status: String,
    pub last_error: String,
    pub steps: Vec<Step>,
    pub deliveries: Vec<Delivery>,
    pub attempts: Vec<Attempt>,
}

#[derive(Template)]
#[template(path = "console/trace.html")]
struct TracePage {
    t: &'static Text,
    lang: Lang,
    title: String,
    active: &'static str,
    id: String,
    event: String,
    rules: String,
    silenced: String,
    runs: Runs,
}

#[derive(Template)]
#[template(path = "console/runs.html")]
pub(super) struct Runs {
    t: &'static Text,
    id: String,
    settled: bool,
    runs: Vec<Run>,
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn runs_of(t: &'static Text, id: &str, trace: &Value) -> Runs {
    let list = trace.get("runs").and_then(Value::as_array).cloned().unwrap_or_default();
    let ended =
        |r: &Value| matches!(r.get("status").and_then(Value::as_str), Some("done" | "failed" | "delivery_failed"));
    let settled = trace.get("routed") == Some(&Value::Bool(true)) && list.iter().all(ended);
    let items = |r: &Value, k: &str| r.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let runs = list
        .iter()
        .map(|r| Run {
            job_id: s(r, "job_id"),
            rule: s(r, "rule"),
            flow: s(r, "flow"),
            version: r.get("flow_version").and_then(Value::as_i64).map(|v| format!("v{v}")).unwrap_or_default(),
            status: s(r, "status"),
            last_error: s(r, "last_error"),
            steps: items(r, "steps")
                .iter()
                .map(|x| Step {
                    path: s(x, "path"),
                    kind: s(x, "kind"),
                    status: s(x, "status"),
                    detail: x.get("detail").map(|d| short(&d.to_string(), 240)).unwrap_or_default(),
                })
                .collect(),
            deliveries: items(r, "deliveries")
                .iter()
                .map(|x| Delivery {
                    connection: s(x, "connection"),
                    status: s(x, "status"),
                    digest: s(x, "digest_id"),
                    error: s(x, "error"),
                })
                .collect(),
            attempts: items(r, "attempts")
                .iter()
                .map(|x| Attempt {
                    preview: preview(x.get("request").unwrap_or(&Value::Null)),
                    connection: s(x, "connection"),
                    platform: s(x, "platform"),
                    outcome: s(x, "outcome"),
                    status_code: s(x, "status_code"),
                    request: x
                        .get("request")
                        .map(|q| serde_json::to_string_pretty(q).unwrap_or_default())
                        .unwrap_or_default(),
                    response: s(x, "response"),
                    error: s(x, "error"),
                })
                .collect(),
        })
        .collect();
    Runs { t, id: id.to_string(), settled, runs }
}

async fn load(state: &crate::AppState, id: &str) -> Result<Value, Response> {
    match state.store.trace(id).await {
        Ok(Some(t)) => Ok(serde_json::to_value(t).unwrap_or(Value::Null)),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no event with id {id:?}")).into_response()),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()),
    }
}

/// `GET /console/events/{id}`.
pub(super) async fn page(axum::extract::State(state): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let lang = Lang::of(&headers);
    let t = lang.text();
    let trace = match load(&state, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let event = trace.get("event").cloned().unwrap_or(Value::Null);
    let received = event.get("received_at").and_then(Value::as_i64).map(when).unwrap_or_default();
    let body = event.get("body").cloned().unwrap_or(Value::Null);
    let rules = trace
        .get("rules_matched")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    render(&TracePage {
        t,
        lang,
        title: format!("{} · {}", t.trace, received),
        active: "events",
        id: id.clone(),
        event: serde_json::to_string_pretty(&body).unwrap_or_default(),
        rules: if rules.is_empty() { t.none.to_string() } else { rules },
        silenced: s(&trace, "silenced_by"),
        runs: runs_of(t, &id, &trace),
    })
}

/// `GET /console/events/{id}/runs`: the runs part alone (what the page refreshes).
pub(super) async fn runs(axum::extract::State(state): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let t = Lang::of(&headers).text();
    match load(&state, &id).await {
        Ok(trace) => render(&runs_of(t, &id, &trace)),
        Err(r) => r,
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { text.chars().take(max).collect::<String>() + "…" }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// WeCom markdown's three font colours, as the WeCom client shows them.
const WECOM_COLOURS: [(&str, &str); 3] = [("info", "#2ea043"), ("comment", "#8c959f"), ("warning", "#d29922")];

/// A request body as the robot shows its text: WeCom `markdown.content` / `text.content`,
/// DingTalk `markdown.text`, Feishu/Lark `content.text` or a post's lines. The text is escaped;
/// only WeCom's `<font color>` becomes coloured spans again.
pub(super) fn preview(request: &Value) -> String {
    let at = |p: &[&str]| p.iter().try_fold(request, |v, k| v.get(*k)).and_then(Value::as_str).map(str::to_string);
    let text = at(&["markdown", "content"])
        .or_else(|| at(&["text", "content"]))
        .or_else(|| at(&["markdown", "text"]))
        .or_else(|| at(&["content", "text"]))
        .or_else(|| {
            let post = request.pointer("/content/post")?.as_object()?.values().next()?.clone();
            let title = post.get("title").and_then(Value::as_str).unwrap_or_default().to_string();
            let lines: Vec<String> = post
                .get("content")?
                .as_array()?
                .iter()
                .map(|line| {
                    line.as_array()
                        .map(|parts| {
                            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<String>()
                        })
                        .unwrap_or_default()
                })
                .collect();
            Some(format!("{title}\n{}", lines.join("\n")))
        });
    let Some(text) = text else { return String::new() };
    let html = colour_fonts(&escape(&text));
    html.split('\n').map(markdown_line).collect::<Vec<_>>().join("<br>")
}

/// The markdown the robots render, on one escaped line: `#` headings, `> ` quotes, `**bold**`.
fn markdown_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let (open, close, body) = if let Some(rest) = trimmed.strip_prefix("#### ").or_else(|| trimmed.strip_prefix("### "))
    {
        ("<strong>", "</strong>", rest)
    } else if let Some(rest) = trimmed.strip_prefix("## ").or_else(|| trimmed.strip_prefix("# ")) {
        ("<strong style=\"font-size:1.15em\">", "</strong>", rest)
    } else if let Some(rest) = trimmed.strip_prefix("&gt; ") {
        ("<span style=\"border-left:3px solid #d0d7de;padding-left:6px;color:#57606a\">", "</span>", rest)
    } else {
        ("", "", line)
    };
    let mut out = String::from(open);
    let mut bold = false;
    for (i, part) in body.split("**").enumerate() {
        if i > 0 {
            out.push_str(if bold { "</b>" } else { "<b>" });
            bold = !bold;
        }
        out.push_str(part);
    }
    if bold {
        out.push_str("</b>");
    }
    out.push_str(close);
    out
}

/// Turns escaped WeCom `<font color="info|comment|warning">…</font>` back into coloured spans;
/// other fonts stay as escaped text, and only the closers of converted fonts become `</span>`.
fn colour_fonts(html: &str) -> String {
    const CLOSE: &str = "&lt;/font&gt;";
    let mut out = String::with_capacity(html.len());
    let mut open: Vec<bool> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("&lt;") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix(CLOSE) {
            out.push_str(if open.pop().unwrap_or(false) { "</span>" } else { CLOSE });
            rest = after;
            continue;
        }
        let opener = WECOM_COLOURS.iter().find_map(|(name, colour)| {
            [format!("&lt;font color=&quot;{name}&quot;&gt;"), format!("&lt;font color=\\&quot;{name}\\&quot;&gt;")]
                .into_iter()
                .find(|tag| rest.starts_with(tag.as_str()))
                .map(|tag| (tag.len(), *colour))
        });
        match opener {
            Some((len, colour)) => {
                out.push_str(&format!("<span style=\"color:{colour}\">"));
                open.push(true);
                rest = &rest[len..];
            }
            None => {
                if rest.starts_with("&lt;font") {
                    open.push(false);
                }
                out.push_str("&lt;");
                rest = &rest[4..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::preview;

    #[test]
    fn wecom_colours_are_shown_and_everything_else_is_escaped() {
        let r = json!({"msgtype": "markdown", "markdown": {"content": "<font color=\"warning\">告警</font>\n<b>x</b> & <font color=\"red\">y</font>"}});
        assert_eq!(
            preview(&r),
            "<span style=\"color:#d29922\">告警</span><br>&lt;b&gt;x&lt;/b&gt; &amp; &lt;font color=&quot;red&quot;&gt;y&lt;/font&gt;"
        );
        let post = json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "a"}]]}}}});
        assert_eq!(preview(&post), "T<br>a");
        let ding = json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "#### 告警\n> 实例: **ins-1**"}});
        assert_eq!(
            preview(&ding),
            "<strong>告警</strong><br><span style=\"border-left:3px solid #d0d7de;padding-left:6px;color:#57606a\">实例: <b>ins-1</b></span>"
        );
    }
}
