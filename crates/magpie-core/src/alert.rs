//! The alert lifecycle: an event whose `status` is `"1"` fires an alert, `"0"` resolves it.
//!
//! An alert is identified per rule by a key (by default the event's `source`, `type`, `subject`
//! and `fingerprint` attribute). [`advance`] is the whole state machine, a pure function the
//! store calls inside the transaction that routes the event: a firing alert already firing is
//! told again only after the rule's repeat interval (it is counted meanwhile), a recovery pairs
//! with its open alert, a silenced event changes the state but tells no one. [`Alert::view`] is
//! what flows see as `msg.vars.alert`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How long a firing alert is not told again, unless a rule sets its own (Alertmanager's
/// `repeat_interval` default).
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A rule's alert settings (`alert:` in a rule).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// The alert key: text and `{{ payload.field }}` lookups over the event. Default: source,
    /// type, subject and the `fingerprint` attribute, joined by `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How long a firing alert that fires again is not told again (default 4h; `0s` tells every
    /// time).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Duration>,
}

impl AlertSpec {
    /// The repeat interval in force, in ms.
    pub fn repeat_ms(&self) -> i64 {
        self.repeat_interval.unwrap_or(DEFAULT_REPEAT_INTERVAL).as_millis().min(i64::MAX as u128) as i64
    }
}

/// What an event says of its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `status: "1"`: abnormal.
    Firing,
    /// `status: "0"`: recovered.
    Resolved,
}

impl Signal {
    /// The signal of an event's `status` (`"1"` or `"0"`); other statuses are not alerts.
    pub fn of_status(status: &str) -> Option<Signal> {
        match status {
            "1" => Some(Signal::Firing),
            "0" => Some(Signal::Resolved),
            _ => None,
        }
    }

    /// The event status it stands for.
    pub fn status(self) -> &'static str {
        match self {
            Signal::Firing => "1",
            Signal::Resolved => "0",
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Fired and not resolved.
    Firing,
    /// Resolved (or a recovery arrived for it without a firing one).
    Resolved,
}

impl AlertState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// Why a flow is told of an alert (`msg.vars.alert.notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// It fired (first time, or again after it had resolved).
    Firing,
    /// It is still firing and the repeat interval has passed since it was last told.
    Repeat,
    /// It resolved, paired with its firing alert.
    Resolved,
    /// A recovery with no open alert.
    Unpaired,
    /// It is still firing when the silence that kept it quiet ended.
    SilenceEnded,
}

impl Notice {
    /// The name flows see.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Firing => "firing",
            Notice::Repeat => "repeat",
            Notice::Resolved => "resolved",
            Notice::Unpaired => "unpaired",
            Notice::SilenceEnded => "silence_ended",
        }
    }
}

/// One alert of one rule, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The key.
    pub key: String,
    /// Where it stands.
    pub state: AlertState,
    /// When the episode began (event time, ms); `None` for a recovery that paired with nothing.
    pub first_fired_at: Option<i64>,
    /// When it last fired (event time, ms).
    pub last_fired_at: Option<i64>,
    /// How many firing events the episode has had.
    pub fired_count: i64,
    /// When a flow was last told of it (server time, ms); `None` while it was never told.
    pub last_told_at: Option<i64>,
    /// When it resolved (event time, ms).
    pub resolved_at: Option<i64>,
    /// The silence that kept its last event quiet, while it fires.
    pub silenced_by: Option<String>,
}

/// What to do with one event of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Run the rule's flows, telling them this.
    Told(Notice),
    /// Already firing and told within the repeat interval: counted, not told.
    Deduplicated,
    /// A silence matched the event: the state changed, no one is told.
    Silenced(String),
}

/// One event of an alert, as the router sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    /// Firing or resolved.
    pub signal: Signal,
    /// The event's time, ms.
    pub at: i64,
    /// The server's time, ms.
    pub now: i64,
    /// The rule's repeat interval, ms.
    pub repeat_ms: i64,
    /// The active silence matching the event, if any.
    pub silence: Option<String>,
}

/// The state machine: the alert after `touch`, and what to do.
pub fn advance(prev: Option<Alert>, key: &str, touch: &Touch) -> (Alert, Outcome) {
    let open = prev.filter(|a| a.state == AlertState::Firing);
    match (touch.signal, open) {
        (Signal::Firing, None) => {
            let mut a = Alert {
                key: key.to_string(),
                state: AlertState::Firing,
                first_fired_at: Some(touch.at),
                last_fired_at: Some(touch.at),
                fired_count: 1,
                last_told_at: None,
                resolved_at: None,
                silenced_by: None,
            };
            let outcome = tell_or_silence(&mut a, touch, Notice::Firing);
            (a, outcome)
        }
        (Signal::Firing, Some(mut a)) => {
            a.fired_count += 1;
            a.last_fired_at = Some(a.last_fired_at.map_or(touch.at, |t| t.max(touch.at)));
            let outcome = match (&touch.silence, a.last_told_at) {
                (Some(_), _) => tell_or_silence(&mut a, touch, Notice::Repeat),
                (None, None) => tell_or_silence(&mut a, touch, Notice::Firing),
                (None, Some(told)) if touch.now.saturating_sub(told) >= touch.repeat_ms => {
                    tell_or_silence(&mut a, touch, Notice::Repeat)
                }
                (None, Some(_)) => Outcome::Deduplicated,
            };
            (a, outcome)
        }
        (Signal::Resolved, Some(mut a)) => {
            a.state = AlertState::Resolved;
            a.resolved_at = Some(touch.at);
            let outcome = tell_or_silence(&mut a, touch, Notice::Resolved);
            a.silenced_by = None;
            (a, outcome)
        }
        (Signal::Resolved, None) => {
            let mut a = Alert {
                key: key.to_string(),
                state: AlertState::Resolved,
                first_fired_at: None,
                last_fired_at: None,
                fired_count: 0,
                last_told_at: None,
                resolved_at: Some(touch.at),
                silenced_by: None,
            };
            let outcome = tell_or_silence(&mut a, touch, Notice::Unpaired);
            a.silenced_by = None;
            (a, outcome)
        }
    }
}

fn tell_or_silence(a: &mut Alert, touch: &Touch, notice: Notice) -> Outcome {
    match &touch.silence {
        Some(s) => {
            a.silenced_by = Some(s.clone());
            Outcome::Silenced(s.clone())
        }
        None => {
            a.silenced_by = None;
            a.last_told_at = Some(touch.now);
            Outcome::Told(notice)
        }
    }
}

impl Alert {
    /// What flows see as `msg.vars.alert` when told `notice`: `key`, `state`, `notice`,
    /// `paired`, `first_fired_at`, `fired_count`, `resolved_at` (ms) and `duration_s` (from the
    /// first firing to the recovery, or to the last firing while it fires).
    pub fn view(&self, notice: Notice) -> Value {
        let end = match self.state {
            AlertState::Resolved => self.resolved_at,
            AlertState::Firing => self.last_fired_at,
        };
        let duration_s = match (self.first_fired_at, end) {
            (Some(a), Some(b)) => json!(b.saturating_sub(a).max(0) / 1000),
            _ => Value::Null,
        };
        json!({
            "key": self.key,
            "state": self.state.as_str(),
            "notice": notice.as_str(),
            "paired": notice != Notice::Unpaired,
            "first_fired_at": self.first_fired_at,
            "fired_count": self.fired_count,
            "resolved_at": self.resolved_at,
            "duration_s": duration_s,
        })
    }
}

/// The default alert key of an event: `source/type/subject[/fingerprint]`.
pub fn default_key(source: &str, ty: &str, subject: &str, fingerprint: Option<&str>) -> String {
    let mut k = format!("{source}/{ty}/{subject}");
    if let Some(f) = fingerprint.filter(|f| !f.is_empty()) {
        k.push('/');
        k.push_str(f);
    }
    k
}

/// What an event is as an alert: its signal and its default key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAlert {
    /// Firing or resolved.
    pub signal: Signal,
    /// The default key ([`default_key`]).
    pub key: String,
}

impl EventAlert {
    /// The alert an event envelope stands for: `None` unless its `status` is `"1"` or `"0"`.
    pub fn of(event: &Value) -> Option<EventAlert> {
        let text = |k: &str| event.get(k).and_then(Value::as_str);
        let signal = Signal::of_status(text("status")?)?;
        let key = default_key(
            text("source").unwrap_or_default(),
            text("type").unwrap_or_default(),
            text("subject").unwrap_or_default(),
            text("fingerprint"),
        );
        Some(EventAlert { signal, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(signal: Signal, at: i64, now: i64) -> Touch {
        Touch { signal, at, now, repeat_ms: 1000, silence: None }
    }

    #[test]
    fn a_firing_alert_is_told_once_per_repeat_interval_and_counted_between() {
        let (a, o) = advance(None, "k", &touch(Signal::Firing, 10, 100));
        assert_eq!(o, Outcome::Told(Notice::Firing));
        let (a, o) = advance(Some(a), "k", &touch(Signal::Firing, 20, 600));
        assert_eq!((o, a.fired_count), (Outcome::Deduplicated, 2));
        let (a, o) = advance(Some(a), "k", &touch(Signal::Firing, 30, 1100));
        assert_eq!((o, a.fired_count, a.last_told_at), (Outcome::Told(Notice::Repeat), 3, Some(1100)));
        assert_eq!(a.view(Notice::Repeat)["fired_count"], 3);
    }

    #[test]
    fn a_recovery_pairs_with_its_firing_alert_and_a_lone_one_is_unpaired() {
        let (a, _) = advance(None, "k", &touch(Signal::Firing, 60_000, 1));
        let (a, o) = advance(Some(a), "k", &touch(Signal::Resolved, 780_000, 2));
        assert_eq!(o, Outcome::Told(Notice::Resolved));
        let v = a.view(Notice::Resolved);
        assert_eq!((v["duration_s"].as_i64(), v["paired"].as_bool()), (Some(720), Some(true)));
        let (a, o) = advance(Some(a), "k", &touch(Signal::Resolved, 800_000, 3));
        assert_eq!(o, Outcome::Told(Notice::Unpaired));
        assert_eq!(a.view(Notice::Unpaired)["paired"], false);
        // It fires again after resolving: a new episode.
        let (a, o) = advance(Some(a), "k", &touch(Signal::Firing, 900_000, 4));
        assert_eq!((o, a.fired_count, a.first_fired_at), (Outcome::Told(Notice::Firing), 1, Some(900_000)));
    }

    #[test]
    fn a_silence_changes_the_state_quietly() {
        let mut t = touch(Signal::Firing, 1, 1);
        t.silence = Some("s1".into());
        let (a, o) = advance(None, "k", &t);
        assert_eq!((o, a.silenced_by.as_deref(), a.last_told_at), (Outcome::Silenced("s1".into()), Some("s1"), None));
        // The silence is over: the next firing is told as a first one.
        let (a, o) = advance(Some(a), "k", &touch(Signal::Firing, 2, 2));
        assert_eq!((o, a.silenced_by.clone()), (Outcome::Told(Notice::Firing), None));
        let mut t = touch(Signal::Resolved, 3, 3);
        t.silence = Some("s2".into());
        let (a, o) = advance(Some(a), "k", &t);
        assert_eq!((o, a.state, a.silenced_by), (Outcome::Silenced("s2".into()), AlertState::Resolved, None));
    }

    #[test]
    fn a_zero_repeat_interval_tells_every_firing() {
        let mut t = touch(Signal::Firing, 1, 1);
        t.repeat_ms = 0;
        let (a, _) = advance(None, "k", &t);
        assert_eq!(advance(Some(a), "k", &t).1, Outcome::Told(Notice::Repeat));
    }
}
