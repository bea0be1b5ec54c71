//! Telemetry: every observable happening is one typed event that writes its log line and updates
//! its metrics together (so a log line and its counter cannot drift apart). Metrics go through the
//! `metrics` facade to a Prometheus recorder, rendered at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds buckets of the event → robot latency histogram.
const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use (one per process: servers in one
/// process, as in tests, share it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("magpie_event_to_robot_seconds".into()), LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus exposition of every metric.
pub fn render() -> String {
    match handle() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// Something that happened, with its log line and its metrics.
pub trait InternalEvent {
    /// Logs and counts it.
    fn emit(self);
}

/// Events accepted by ingest on a bus.
pub struct EventsAccepted<'a> {
    /// The bus.
    pub bus: &'a str,
    /// How many.
    pub count: u64,
}

impl InternalEvent for EventsAccepted<'_> {
    fn emit(self) {
        tracing::debug!(bus = self.bus, count = self.count, "events accepted");
        counter!("magpie_events_accepted_total", "bus" => self.bus.to_string()).increment(self.count);
    }
}

/// An event refused by ingest.
pub struct EventRejected<'a> {
    /// The bus.
    pub bus: &'a str,
    /// The error code (`MissingField`, …).
    pub code: &'static str,
}

impl InternalEvent for EventRejected<'_> {
    fn emit(self) {
        tracing::debug!(bus = self.bus, code = self.code, "event refused");
        counter!("magpie_events_rejected_total", "bus" => self.bus.to_string(), "code" => self.code).increment(1);
    }
}

/// The router processed events and created jobs.
pub struct EventsRouted {
    /// Events.
    pub events: u64,
    /// Jobs created.
    pub jobs: u64,
}

impl InternalEvent for EventsRouted {
    fn emit(self) {
        tracing::debug!(events = self.events, jobs = self.jobs, "events routed");
        counter!("magpie_events_routed_total").increment(self.events);
        counter!("magpie_jobs_created_total").increment(self.jobs);
    }
}

/// The router found events a silence keeps quiet: routed and traced, no flow told.
pub struct EventsSilenced {
    /// Events.
    pub events: u64,
}

impl InternalEvent for EventsSilenced {
    fn emit(self) {
        tracing::debug!(events = self.events, "events silenced");
        counter!("magpie_events_silenced_total").increment(self.events);
    }
}

/// A silence ended and the alerts it kept quiet were released.
pub struct SilenceReleased<'a> {
    /// The silence.
    pub silence: &'a str,
    /// Alerts still firing when it ended.
    pub alerts: usize,
    /// Flow runs created to tell them.
    pub jobs: usize,
}

impl InternalEvent for SilenceReleased<'_> {
    fn emit(self) {
        tracing::info!(silence = self.silence, alerts = self.alerts, jobs = self.jobs, "silence ended");
        counter!("magpie_silences_ended_total").increment(1);
        counter!("magpie_jobs_created_total").increment(self.jobs as u64);
    }
}

/// A source adapter turned a sender's request into events.
pub struct SourceAccepted<'a> {
    /// The adapter (`alertmanager`, `grafana`, `tencent-monitor`).
    pub source: &'a str,
    /// The bus.
    pub bus: &'a str,
    /// Alerts stored (duplicates included).
    pub alerts: u64,
}

impl InternalEvent for SourceAccepted<'_> {
    fn emit(self) {
        tracing::debug!(source = self.source, bus = self.bus, alerts = self.alerts, "source request accepted");
        counter!("magpie_source_alerts_total", "source" => self.source.to_string()).increment(self.alerts);
    }
}

/// How a flow run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Completed, every message delivered.
    Done,
    /// Completed, but a message could not be delivered (a dead letter).
    DeliveryFailed,
    /// An uncaught error (a dead letter).
    Failed,
}

impl RunEnd {
    fn as_str(self) -> &'static str {
        match self {
            RunEnd::Done => "done",
            RunEnd::DeliveryFailed => "delivery_failed",
            RunEnd::Failed => "failed",
        }
    }
}

/// A flow run ended.
pub struct FlowRunEnded<'a> {
    /// The job.
    pub job: i64,
    /// The event.
    pub event_id: &'a str,
    /// The rule.
    pub rule: &'a str,
    /// The flow.
    pub flow: &'a str,
    /// How.
    pub end: RunEnd,
    /// The error, when it failed.
    pub error: Option<&'a str>,
}

impl InternalEvent for FlowRunEnded<'_> {
    fn emit(self) {
        let (job, event_id, rule, flow) = (self.job, self.event_id, self.rule, self.flow);
        match self.end {
            RunEnd::Done => tracing::info!(job, event_id, rule, flow, "flow run completed"),
            RunEnd::DeliveryFailed => {
                tracing::warn!(
                    job,
                    event_id,
                    rule,
                    flow,
                    "flow run completed, but a message was not delivered (dead letter)"
                )
            }
            RunEnd::Failed => {
                tracing::warn!(job, event_id, flow, error = self.error.unwrap_or(""), "flow run failed: dead-lettered")
            }
        }
        counter!("magpie_flow_runs_total", "flow" => flow.to_string(), "outcome" => self.end.as_str()).increment(1);
    }
}

/// A send to a robot ended.
pub struct SendEnded<'a> {
    /// The connection.
    pub connection: &'a str,
    /// Its platform.
    pub platform: &'a str,
    /// Delivered, rate-limited or failed.
    pub outcome: magpie_store::SendOutcome,
    /// Messages it carried (more than one: a digest).
    pub messages: usize,
    /// The error, when it failed.
    pub error: Option<&'a str>,
}

impl InternalEvent for SendEnded<'_> {
    fn emit(self) {
        let (connection, platform, messages) = (self.connection, self.platform, self.messages);
        match self.error {
            Some(error) => {
                tracing::warn!(connection, platform, messages, outcome = self.outcome.as_str(), error, "send failed")
            }
            None => tracing::debug!(connection, platform, messages, "sent"),
        }
        counter!("magpie_sends_total", "connection" => connection.to_string(), "platform" => platform.to_string(),
            "outcome" => self.outcome.as_str())
        .increment(1);
        if self.outcome == magpie_store::SendOutcome::Delivered && messages > 1 {
            tracing::info!(connection, alerts = messages, "digest delivered (storm folded)");
            counter!("magpie_digests_total", "connection" => connection.to_string()).increment(1);
            counter!("magpie_folded_alerts_total", "connection" => connection.to_string()).increment(messages as u64);
        }
    }
}

/// A message reached its robot (alone or folded): from the event's arrival to the answer.
pub struct MessageDelivered<'a> {
    /// The connection.
    pub connection: &'a str,
    /// Event received → delivered.
    pub latency: Duration,
}

impl InternalEvent for MessageDelivered<'_> {
    fn emit(self) {
        histogram!("magpie_event_to_robot_seconds", "connection" => self.connection.to_string())
            .record(self.latency.as_secs_f64());
    }
}

/// A connection paused after the platform refused a send for rate.
pub struct ConnectionPaused<'a> {
    /// The connection.
    pub connection: &'a str,
    /// For how long.
    pub pause: Duration,
    /// The platform's answer.
    pub reason: &'a str,
}

impl InternalEvent for ConnectionPaused<'_> {
    fn emit(self) {
        tracing::warn!(
            connection = self.connection,
            pause_s = self.pause.as_secs_f64(),
            reason = self.reason,
            "the platform refused a send for rate (another sender shares this robot?): connection paused"
        );
        counter!("magpie_connection_pauses_total", "connection" => self.connection.to_string()).increment(1);
        gauge!("magpie_connection_paused", "connection" => self.connection.to_string()).set(1.0);
    }
}

/// A connection's outbox after a round: depth and whether it is paused.
pub struct OutboxObserved<'a> {
    /// The connection.
    pub connection: &'a str,
    /// Messages waiting.
    pub depth: usize,
    /// Whether it is paused now.
    pub paused: bool,
}

impl InternalEvent for OutboxObserved<'_> {
    fn emit(self) {
        gauge!("magpie_outbox_depth", "connection" => self.connection.to_string()).set(self.depth as f64);
        gauge!("magpie_connection_paused", "connection" => self.connection.to_string()).set(if self.paused {
            1.0
        } else {
            0.0
        });
    }
}

/// A message could not be delivered: it is a dead letter.
pub struct MessageDeadLettered<'a> {
    /// The connection.
    pub connection: &'a str,
    /// The flow.
    pub flow: &'a str,
    /// The event.
    pub event_id: &'a str,
    /// `NS:KIND`.
    pub error_type: &'a str,
    /// Description.
    pub error: &'a str,
}

impl InternalEvent for MessageDeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            connection = self.connection,
            flow = self.flow,
            event_id = self.event_id,
            error_type = self.error_type,
            error = self.error,
            "message not delivered: dead letter"
        );
        counter!("magpie_dead_letters_total", "flow" => self.flow.to_string(), "error_type" => self.error_type.to_string())
            .increment(1);
    }
}

/// A run's uncaught error made a dead letter.
pub struct RunDeadLettered<'a> {
    /// The flow.
    pub flow: &'a str,
    /// `NS:KIND`.
    pub error_type: &'a str,
}

impl InternalEvent for RunDeadLettered<'_> {
    fn emit(self) {
        counter!("magpie_dead_letters_total", "flow" => self.flow.to_string(), "error_type" => self.error_type.to_string())
            .increment(1);
    }
}

/// Dead letters were redriven.
pub struct LettersRedriven {
    /// How many.
    pub count: usize,
}

impl InternalEvent for LettersRedriven {
    fn emit(self) {
        tracing::info!(letters = self.count, "dead letters redriven");
        counter!("magpie_redrives_total").increment(self.count as u64);
    }
}

/// Archived events were routed again.
pub struct EventsReplayed<'a> {
    /// The replay.
    pub replay: &'a str,
    /// Events read.
    pub events: usize,
    /// Jobs created.
    pub jobs: usize,
}

impl InternalEvent for EventsReplayed<'_> {
    fn emit(self) {
        tracing::info!(replay = self.replay, events = self.events, jobs = self.jobs, "events replayed");
        counter!("magpie_replayed_events_total").increment(self.events as u64);
        counter!("magpie_jobs_created_total").increment(self.jobs as u64);
    }
}

/// The retention sweep removed events.
pub struct EventsSwept<'a> {
    /// The bus.
    pub bus: &'a str,
    /// How many.
    pub count: usize,
}

impl InternalEvent for EventsSwept<'_> {
    fn emit(self) {
        tracing::info!(bus = self.bus, events = self.count, "archive retention: old events removed");
        counter!("magpie_swept_events_total", "bus" => self.bus.to_string()).increment(self.count as u64);
    }
}
