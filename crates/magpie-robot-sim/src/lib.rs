//! A local stand-in for the WeCom, DingTalk and Feishu/Lark robot platforms.
//!
//! It serves the platforms' own paths and enforces their documented rules: body schemas, size
//! limits, DingTalk 加签 and Feishu signatures with their time windows, keywords, and per-robot
//! rate limits (WeCom 20/min; DingTalk 20/min with a 10-minute penalty; Feishu/Lark 5/s and
//! 100/min). It answers with the platforms' real error codes and shapes — HTTP 200 with an error
//! body where the platform does that.
//!
//! Tests may give a robot small windows (`"limits": [{"count": 5, "per": "2s"}]`, or `[]` for
//! none) so storms play out in seconds; robots registered from a configuration keep the real
//! limits.
//!
//! Robots must be registered (from a Magpie config's connections, or `POST /_sim/robots`);
//! unknown tokens get the platform's invalid-token answer. `GET /_sim/messages` lists accepted
//! messages; `POST /_sim/faults` scripts the next answers of a robot for failure tests.

mod platforms;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, body::Bytes};
use magpie_core::RateLimit;
use magpie_core::config::Platform;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A robot the simulator knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Robot {
    /// Platform.
    pub platform: Platform,
    /// WeCom key, DingTalk access token, or Feishu/Lark hook token.
    pub token: String,
    /// Signing secret (DingTalk 加签, Feishu/Lark signature), if the robot requires signing.
    #[serde(default)]
    pub secret: Option<String>,
    /// Custom keywords: each message must contain one.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The robot's rate limits, for tests with small windows: absent = the platform's documented
    /// limits, `[]` = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<SimLimit>>,
    /// How long the robot refuses everything after a send over its limit. Absent: DingTalk's
    /// 10 minutes, none on the other platforms.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub penalty: Option<Duration>,
}

impl Robot {
    /// A robot of `platform` with `token`, unsigned, no keywords, the platform's limits.
    pub fn new(platform: Platform, token: impl Into<String>) -> Robot {
        Robot { platform, token: token.into(), secret: None, keywords: Vec::new(), limits: None, penalty: None }
    }

    /// The limits in force.
    pub fn rate_limits(&self) -> Vec<RateLimit> {
        match &self.limits {
            Some(l) => l.iter().map(|l| RateLimit::new(l.count, l.per)).collect(),
            None => self.platform.rate_limits().to_vec(),
        }
    }

    /// How long an excess is punished.
    pub fn penalty(&self) -> Option<Duration> {
        self.penalty.or((self.platform == Platform::Dingtalk).then_some(Duration::from_secs(600)))
    }
}

/// One limit of a simulated robot: `{"count": 5, "per": "2s"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimLimit {
    /// Messages per window.
    pub count: u32,
    /// The window.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

/// A message the simulator accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// Platform.
    pub platform: Platform,
    /// The robot's token.
    pub token: String,
    /// `msgtype` / `msg_type`.
    pub msgtype: String,
    /// The JSON body as sent.
    pub body: Value,
    /// The query string as sent (signatures included).
    pub query: String,
    /// When, ms since the epoch.
    pub received_at: i64,
}

/// Any request the simulator answered, accepted or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    /// Platform.
    pub platform: Platform,
    /// The robot's token.
    pub token: String,
    /// HTTP status answered.
    pub status: u16,
    /// Body answered.
    pub answer: Value,
    /// When, ms since the epoch.
    pub at: i64,
}

/// A scripted answer, for failure tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The platform's rate-limit answer.
    RateLimited,
    /// The platform's "system busy" answer.
    Busy,
    /// HTTP 500 with no body.
    Http500,
    /// The platform's invalid-token answer.
    Auth,
    /// No answer for 30 seconds (the sender should time out).
    Timeout,
}

#[derive(Default)]
struct RobotState {
    recent: VecDeque<Instant>,
    penalty_until: Option<Instant>,
    faults: VecDeque<Fault>,
}

/// The simulator's state.
#[derive(Default)]
pub struct Simulator {
    robots: Mutex<HashMap<String, (Robot, RobotState)>>,
    messages: Mutex<Vec<Received>>,
    answered: Mutex<Vec<Answered>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(platform: Platform, token: &str) -> String {
    let family = match platform {
        Platform::Feishu | Platform::Lark => "feishu",
        Platform::Wecom => "wecom",
        Platform::Dingtalk => "dingtalk",
    };
    format!("{family}/{token}")
}

/// Extracts the robot token from a webhook URL of the given platform.
pub fn token_of(platform: Platform, webhook: &str) -> Option<String> {
    let url = url_parts(webhook)?;
    match platform {
        Platform::Wecom => url.1.get("key").cloned(),
        Platform::Dingtalk => url.1.get("access_token").cloned(),
        Platform::Feishu | Platform::Lark => {
            url.0.rsplit_once("/hook/").map(|(_, t)| t.to_string()).filter(|t| !t.is_empty())
        }
    }
}

fn url_parts(u: &str) -> Option<(String, HashMap<String, String>)> {
    let rest = u.split_once("://")?.1;
    let path_start = rest.find('/').unwrap_or(rest.len());
    let path_q = &rest[path_start..];
    let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
    let q: HashMap<String, String> = serde_urlencoded::from_str(query).ok()?;
    Some((path.to_string(), q))
}

impl Simulator {
    /// An empty simulator.
    pub fn new() -> Arc<Simulator> {
        Arc::new(Simulator::default())
    }

    /// Registers (or replaces) a robot.
    pub fn register(&self, robot: Robot) {
        lock(&self.robots).insert(key(robot.platform, &robot.token), (robot, RobotState::default()));
    }

    /// Registered robots.
    pub fn robots(&self) -> Vec<Robot> {
        let mut v: Vec<Robot> = lock(&self.robots).values().map(|(r, _)| r.clone()).collect();
        v.sort_by(|a, b| a.token.cmp(&b.token));
        v
    }

    /// Accepted messages, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        lock(&self.messages).clone()
    }

    /// Every answer given, oldest first.
    pub fn answered(&self) -> Vec<Answered> {
        lock(&self.answered).clone()
    }

    /// Forgets accepted messages and answers.
    pub fn clear(&self) {
        lock(&self.messages).clear();
        lock(&self.answered).clear();
    }

    /// Queues scripted answers for a robot.
    pub fn script(&self, platform: Platform, token: &str, faults: &[Fault]) -> bool {
        match lock(&self.robots).get_mut(&key(platform, token)) {
            Some((_, state)) => {
                state.faults.extend(faults);
                true
            }
            None => false,
        }
    }

    fn robot(&self, platform: Platform, token: &str) -> Option<Robot> {
        lock(&self.robots).get(&key(platform, token)).map(|(r, _)| r.clone())
    }

    fn next_fault(&self, platform: Platform, token: &str) -> Option<Fault> {
        lock(&self.robots).get_mut(&key(platform, token)).and_then(|(_, s)| s.faults.pop_front())
    }

    /// Counts a send against the robot's windows; `Err` when it is over a limit.
    fn admit(&self, platform: Platform, token: &str, now: Instant) -> Result<(), ()> {
        let mut robots = lock(&self.robots);
        let Some((robot, state)) = robots.get_mut(&key(platform, token)) else { return Ok(()) };
        if state.penalty_until.is_some_and(|t| now < t) {
            return Err(());
        }
        let limits = robot.rate_limits();
        let longest = limits.iter().map(|l| l.per).max().unwrap_or(Duration::from_secs(60));
        while state.recent.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            state.recent.pop_front();
        }
        for l in &limits {
            let in_window = state.recent.iter().filter(|t| now.duration_since(**t) < l.per).count();
            if in_window >= l.count as usize {
                if let Some(p) = robot.penalty() {
                    state.penalty_until = Some(now + p);
                }
                return Err(());
            }
        }
        state.recent.push_back(now);
        Ok(())
    }

    fn answer(&self, platform: Platform, token: &str, status: StatusCode, body: Value) -> Response {
        lock(&self.answered).push(Answered {
            platform,
            token: token.to_string(),
            status: status.as_u16(),
            answer: body.clone(),
            at: magpie_core::now_ms(),
        });
        (status, Json(body)).into_response()
    }
}

/// The simulator's HTTP routes.
pub fn app(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/cgi-bin/webhook/send", any(wecom))
        .route("/robot/send", any(dingtalk))
        .route("/open-apis/bot/v2/hook/{token}", any(feishu))
        .route("/_sim/messages", get(list_messages).delete(clear_messages))
        .route("/_sim/answers", get(list_answers))
        .route("/_sim/robots", get(list_robots).post(add_robot))
        .route("/_sim/faults", post(add_faults))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(sim)
}

/// Serves the simulator on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Simulator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(sim)).with_graceful_shutdown(shutdown).await
}

#[derive(Deserialize)]
struct MessageFilter {
    platform: Option<Platform>,
    token: Option<String>,
}

async fn list_messages(State(sim): State<Arc<Simulator>>, Query(f): Query<MessageFilter>) -> Json<Vec<Received>> {
    let family = |p: Platform| key(p, "");
    Json(
        sim.messages()
            .into_iter()
            .filter(|m| f.platform.is_none_or(|p| family(p) == family(m.platform)))
            .filter(|m| f.token.as_ref().is_none_or(|t| t == &m.token))
            .collect(),
    )
}

async fn clear_messages(State(sim): State<Arc<Simulator>>) -> StatusCode {
    sim.clear();
    StatusCode::NO_CONTENT
}

async fn list_answers(State(sim): State<Arc<Simulator>>) -> Json<Vec<Answered>> {
    Json(sim.answered())
}

async fn list_robots(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    // Secrets stay inside the simulator.
    let robots: Vec<Value> = sim
        .robots()
        .into_iter()
        .map(|r| {
            let limits: Vec<String> = r.rate_limits().iter().map(|l| l.to_string()).collect();
            json!({"platform": r.platform, "token": r.token, "signed": r.secret.is_some(), "keywords": r.keywords,
                       "limits": limits})
        })
        .collect();
    Json(Value::Array(robots))
}

async fn add_robot(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Robot>(&body) {
        Ok(r) if !r.token.is_empty() => {
            sim.register(r);
            StatusCode::CREATED.into_response()
        }
        Ok(_) => (StatusCode::BAD_REQUEST, Json(json!({"error": "token: must not be empty"}))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    platform: Platform,
    token: String,
    answers: Vec<Fault>,
}

async fn add_faults(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(f) => {
            if sim.script(f.platform, &f.token, &f.answers) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": format!("no {} robot with that token", f.platform.as_str())})),
                )
                    .into_response()
            }
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

fn query_map(raw: &Option<String>) -> HashMap<String, String> {
    raw.as_deref().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default()
}

async fn wecom(State(sim): State<Arc<Simulator>>, method: Method, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let query = query_map(&q);
    platforms::handle(
        &sim,
        Platform::Wecom,
        query.get("key").cloned().unwrap_or_default(),
        method,
        q.unwrap_or_default(),
        &query,
        body,
    )
    .await
}

async fn dingtalk(State(sim): State<Arc<Simulator>>, method: Method, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let query = query_map(&q);
    let token = query.get("access_token").cloned().unwrap_or_default();
    platforms::handle(&sim, Platform::Dingtalk, token, method, q.unwrap_or_default(), &query, body).await
}

async fn feishu(
    State(sim): State<Arc<Simulator>>,
    Path(token): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let query = query_map(&q);
    let platform = sim.robot(Platform::Feishu, &token).map(|r| r.platform).unwrap_or(Platform::Feishu);
    platforms::handle(&sim, platform, token, method, q.unwrap_or_default(), &query, body).await
}

#[cfg(test)]
mod tests;
