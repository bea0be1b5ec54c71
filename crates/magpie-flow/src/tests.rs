use std::sync::Mutex;
use std::time::Duration;

use magpie_core::config::{FlowSpec, LogLevel};
use magpie_core::{ErrorType, Retry};
use serde_json::json;

use crate::*;

/// Effects that answer sends from a script and remember everything.
#[derive(Default)]
struct Fake {
    answers: Mutex<Vec<SendResult>>,
    sent: Mutex<Vec<SendRequest>>,
    records: Mutex<Vec<StepRecord>>,
    logs: Mutex<Vec<(LogLevel, String, String)>>,
}

impl Fake {
    fn answering(answers: Vec<SendResult>) -> Self {
        Fake { answers: Mutex::new(answers), ..Default::default() }
    }
}

impl Effects for Fake {
    async fn send(&self, req: SendRequest) -> SendResult {
        self.sent.lock().unwrap().push(req);
        let mut a = self.answers.lock().unwrap();
        if a.is_empty() { SendResult::Delivered } else { a.remove(0) }
    }
    async fn record(&self, rec: StepRecord) {
        self.records.lock().unwrap().push(rec);
    }
    fn log(&self, level: LogLevel, category: &str, message: &str) {
        self.logs.lock().unwrap().push((level, category.into(), message.into()));
    }
    fn now_ms(&self) -> i64 {
        1_000
    }
}

fn seed_flow() -> Flow {
    let yaml = format!(
        r#"
name: eb-wecom
steps:
  - set-variable:
      name: body
      value: |
        def dw_process (msg):
            return msg.payload
  - try:
      steps:
        - robot:
            connection: wecom-ops
            message: markdown
            content: {content}
            retry: {{attempts: 3, backoff: 100ms, max_backoff: 1s}}
      catch:
        - errors: [ANY]
          steps:
            - logger:
                level: ERROR
                category: ebtest
                message: |
                  def dw_process (msg):
                      return msg.error
"#,
        content = serde_json::to_string(crate::expr::tests_support::SEED_WECOM).unwrap()
    );
    let spec: FlowSpec = magpie_core::config::parse_yaml(&yaml).unwrap();
    Flow::compile(&spec).unwrap()
}

fn event() -> Message {
    Message::new(
        "ev-1",
        json!({"subject": "ins-abcd1234", "region": "ap-shanghai", "type": "cvm:ErrorEvent:GuestReboot"}),
    )
}

fn rate_limited() -> SendResult {
    SendResult::Failed {
        error_type: ErrorType::new("WECOM", "RATE_LIMITED"),
        retry: Retry::Yes,
        retry_after: Some(Duration::from_secs(60)),
        message: "api freq out of limit".into(),
    }
}

#[tokio::test]
async fn the_seed_flow_sends_the_seed_message() {
    let fx = Fake::default();
    let out = Runner::run(&seed_flow(), event(), &fx, None).await;
    let RunOutcome::Completed(msg) = out else { panic!("{out:?}") };
    assert_eq!(msg.vars["body"]["subject"], "ins-abcd1234");
    let sent = fx.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let content = sent[0].message.content.as_str().unwrap();
    assert!(content.contains("> 实例 ID:<font color=\"comment\">ins-abcd1234</font>"), "{content}");
    assert!(fx.logs.lock().unwrap().is_empty());
    let kinds: Vec<_> = fx.records.lock().unwrap().iter().map(|r| (r.kind.clone(), r.status.clone())).collect();
    assert_eq!(
        kinds,
        [("set-variable".into(), "ok".into()), ("robot".into(), "ok".into()), ("try".into(), "ok".into())]
    );
}

#[tokio::test]
async fn retryable_failures_suspend_then_exhaust_into_the_catch() {
    let flow = seed_flow();
    let fx = Fake::answering(vec![rate_limited(), rate_limited(), rate_limited()]);
    let mut cp = Checkpoint::default();
    for attempt in 1..=2u32 {
        let out = Runner::run(&flow, event(), &fx, Some(cp.clone())).await;
        let RunOutcome::Suspended { retry_at_ms, last_error } = out else { panic!("{out:?}") };
        assert!(retry_at_ms > 1_000 && retry_at_ms <= 2_000, "capped by max_backoff: {retry_at_ms}");
        assert_eq!(last_error.error_type.to_string(), "WECOM:RATE_LIMITED");
        cp.attempts.insert(2, attempt); // ordinals: set-variable 0, try 1, robot 2
        cp.recorded.extend(fx.records.lock().unwrap().iter().map(|r| r.ordinal));
    }
    let out = Runner::run(&flow, event(), &fx, Some(cp)).await;
    assert!(matches!(out, RunOutcome::Completed(_)), "{out:?}");
    let sent = fx.sent.lock().unwrap();
    assert_eq!(sent.iter().map(|s| s.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    let logs = fx.logs.lock().unwrap();
    assert_eq!(logs.len(), 1, "the catch logs once, not once per replay");
    assert_eq!(logs[0].0, LogLevel::Error);
    assert_eq!(logs[0].1, "ebtest");
    assert!(logs[0].2.contains("WECOM:RATE_LIMITED"), "{}", logs[0].2);
    let recs = fx.records.lock().unwrap();
    let set_vars = recs.iter().filter(|r| r.kind == "set-variable").count();
    assert_eq!(set_vars, 1, "replays do not re-record finished steps");
    assert!(recs.iter().any(|r| r.kind == "try" && r.status == "caught"));
}

#[tokio::test]
async fn non_retryable_errors_reach_the_catch_at_once_and_delivered_sends_are_not_repeated() {
    let flow = seed_flow();
    let fx = Fake::answering(vec![SendResult::Failed {
        error_type: ErrorType::new("WECOM", "AUTH"),
        retry: Retry::No,
        retry_after: None,
        message: "invalid webhook url".into(),
    }]);
    let out = Runner::run(&flow, event(), &fx, None).await;
    assert!(matches!(out, RunOutcome::Completed(_)));
    assert_eq!(fx.sent.lock().unwrap().len(), 1);
    assert_eq!(fx.logs.lock().unwrap().len(), 1);

    let fx = Fake::default();
    let cp = Checkpoint { delivered: [2].into(), ..Default::default() };
    let out = Runner::run(&flow, event(), &fx, Some(cp)).await;
    assert!(matches!(out, RunOutcome::Completed(_)));
    assert!(fx.sent.lock().unwrap().is_empty(), "a delivered send is not repeated");
}

#[tokio::test]
async fn uncaught_errors_fail_the_run_and_catches_match_by_type() {
    let spec: FlowSpec = magpie_core::config::parse_yaml(
        r#"
name: f1
steps:
  - try:
      steps:
        - raise-error: {type: "APP:VALIDATION", description: "bad {{ payload.x }}"}
      catch:
        - errors: ["WECOM:ANY"]
          steps: [{logger: {message: wrong}}]
        - errors: [VALIDATION]
          steps: [{set-variable: {name: seen, value: "{{ error.code }}"}}]
  - choice:
      when:
        - condition: "{{ vars.seen == 'APP:VALIDATION' }}"
          steps: [{raise-error: {type: BOOM}}]
"#,
    )
    .unwrap();
    let flow = Flow::compile(&spec).unwrap();
    let fx = Fake::default();
    let out = Runner::run(&flow, Message::new("m", json!({"x": 7})), &fx, None).await;
    let RunOutcome::Failed { error, message } = out else { panic!("{out:?}") };
    assert_eq!(error.error_type.to_string(), "APP:BOOM");
    assert_eq!(message.vars["seen"], "APP:VALIDATION");
    assert!(fx.logs.lock().unwrap().is_empty(), "the WECOM catch does not match");
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let p = magpie_core::config::RetryPolicy {
        attempts: 5,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(10),
    };
    let b1 = backoff(&p, 1, None, "x", 0);
    let b3 = backoff(&p, 3, None, "x", 0);
    assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1), "{b1:?}");
    assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4), "{b3:?}");
    assert_eq!(
        backoff(&p, 30, None, "x", 0).max(Duration::from_secs(5)),
        backoff(&p, 30, None, "x", 0).max(Duration::from_secs(5))
    );
    assert!(backoff(&p, 30, None, "x", 0) <= Duration::from_secs(10));
    assert_eq!(
        backoff(&p, 1, Some(Duration::from_secs(60)), "x", 0),
        Duration::from_secs(10),
        "hint capped by max_backoff"
    );
}
