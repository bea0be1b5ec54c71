use std::sync::Mutex;

use magpie_core::ErrorType;
use magpie_core::config::{FlowSpec, LogLevel};
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
        if a.is_empty() { SendResult::Delivered { digest: None } } else { a.remove(0) }
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
    SendResult::Failed(FlowError::new(ErrorType::new("WECOM", "RATE_LIMITED"), "api freq out of limit"))
}

#[tokio::test]
async fn the_seed_flow_sends_the_seed_message() {
    let fx = Fake::default();
    let out = Runner::run(&seed_flow(), event(), &fx, None).await;
    let RunOutcome::Completed { message: msg, undelivered } = out else { panic!("{out:?}") };
    assert_eq!(undelivered, 0);
    assert_eq!(msg.vars["body"]["subject"], "ins-abcd1234");
    let sent = fx.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].retry.attempts, 3, "the step's retry policy goes with the message");
    let content = sent[0].message.content.as_str().unwrap();
    assert!(content.contains("> 实例 ID:<font color=\"comment\">ins-abcd1234</font>"), "{content}");
    assert!(fx.logs.lock().unwrap().is_empty());
    let kinds: Vec<_> = fx.records.lock().unwrap().iter().map(|r| (r.kind.clone(), r.status)).collect();
    assert_eq!(
        kinds,
        [("set-variable".into(), StepStatus::Ok), ("robot".into(), StepStatus::Ok), ("try".into(), StepStatus::Ok)]
    );
}

#[tokio::test]
async fn a_queued_send_parks_the_run_until_its_outcome_is_known() {
    let flow = seed_flow();
    let fx = Fake::answering(vec![SendResult::Queued]);
    let out = Runner::run(&flow, event(), &fx, None).await;
    assert_eq!(out, RunOutcome::Parked);
    let recorded: Vec<u32> = fx.records.lock().unwrap().iter().map(|r| r.ordinal).collect();
    assert_eq!(recorded, [0], "only the set-variable finished; the try and the robot wait");
    let mut cp = Checkpoint { recorded: recorded.into_iter().collect(), ..Default::default() };
    // Still queued: parks again without sending twice.
    cp.sends.insert(2, SendState::Queued); // ordinals: set-variable 0, try 1, robot 2
    assert_eq!(Runner::run(&flow, event(), &fx, Some(cp.clone())).await, RunOutcome::Parked);
    // Folded into a digest: the run completes and the step says so.
    cp.sends.insert(2, SendState::Delivered { digest: Some("dg-1".into()) });
    let out = Runner::run(&flow, event(), &fx, Some(cp)).await;
    assert!(matches!(out, RunOutcome::Completed { undelivered: 0, .. }), "{out:?}");
    assert_eq!(fx.sent.lock().unwrap().len(), 1, "the message was handed over once");
    let recs = fx.records.lock().unwrap();
    let robot = recs.iter().find(|r| r.kind == "robot").unwrap();
    assert_eq!(robot.detail["delivery"], "folded");
    assert_eq!(robot.detail["digest_id"], "dg-1");
    assert_eq!(recs.iter().filter(|r| r.kind == "set-variable").count(), 1, "replays do not re-record");
}

#[tokio::test]
async fn a_failed_send_reaches_the_catch_once_and_counts_as_undelivered() {
    let flow = seed_flow();
    let fx = Fake::answering(vec![rate_limited()]);
    let out = Runner::run(&flow, event(), &fx, None).await;
    assert!(matches!(out, RunOutcome::Completed { undelivered: 1, .. }), "{out:?}");
    let logs = fx.logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].0, logs[0].1.as_str()), (LogLevel::Error, "ebtest"));
    assert!(logs[0].2.contains("WECOM:RATE_LIMITED"), "{}", logs[0].2);
    let recs = fx.records.lock().unwrap().clone();
    assert!(recs.iter().any(|r| r.kind == "try" && r.status == StepStatus::Caught));
    // A replay of the finished run (e.g. after a crash before it ended) neither sends nor logs again.
    let cp = Checkpoint {
        sends: [(2, SendState::Failed(FlowError::new(ErrorType::new("WECOM", "AUTH"), "x")))].into(),
        recorded: recs.iter().map(|r| r.ordinal).collect(),
    };
    let out = Runner::run(&flow, event(), &fx, Some(cp)).await;
    assert!(matches!(out, RunOutcome::Completed { undelivered: 1, .. }));
    assert_eq!(fx.sent.lock().unwrap().len(), 1);
    assert_eq!(fx.logs.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn uncaught_errors_fail_the_run_at_their_step_and_catches_match_by_type() {
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
    let RunOutcome::Failed { error, message, at } = out else { panic!("{out:?}") };
    assert_eq!(error.error_type.to_string(), "APP:BOOM");
    assert_eq!(message.vars["seen"], "APP:VALIDATION");
    assert_eq!(at.map(|a| a.path).as_deref(), Some("steps[1].choice.when[0].steps[0].raise-error"));
    assert!(fx.logs.lock().unwrap().is_empty(), "the WECOM catch does not match");
}
