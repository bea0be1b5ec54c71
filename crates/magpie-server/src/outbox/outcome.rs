//! What a send's answer means for each message it carried. Pure.
//!
//! - Delivered: every message is delivered (alone, or folded into the digest).
//! - Refused for rate (the robot is shared with another sender — Magpie's own limiter never
//!   causes this): the connection pauses for the platform's penalty and the messages wait at the
//!   head of the queue; no attempt is used up.
//! - A retryable failure (timeout, unreachable, 5xx, "system busy"): each message counts a failed
//!   attempt and waits its backoff, unless its attempts or its maximum age are spent — then it is
//!   a dead letter.
//! - A permanent failure (bad key, keyword, signature): a dead letter. A digest refused as a bad
//!   request is not its messages' fault: they go again, alone.

use std::time::Duration;

use magpie_connectors::Failure;
use magpie_core::config::Platform;
use magpie_core::{FailureKind, Retry};
use magpie_store::{MessageUpdate, QueuedMessage, SendOutcome};

/// The consequences of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The send's outcome.
    pub outcome: SendOutcome,
    /// Each message's fate.
    pub updates: Vec<(i64, MessageUpdate)>,
    /// Pause the connection until then, for this reason.
    pub pause: Option<(i64, String)>,
}

/// How long a connection pauses after a rate-limit answer: the connection's own `penalty`, else
/// the platform's hint, else the platform's documented penalty.
pub fn pause_for(platform: Platform, penalty: Option<Duration>, hint: Option<Duration>) -> Duration {
    penalty.or(hint).unwrap_or_else(|| platform.rate_penalty())
}

/// Decides what `failure` (or success, when `None`) means for `messages`.
pub fn decide(
    platform: Platform,
    penalty: Option<Duration>,
    failure: Option<&Failure>,
    messages: &[&QueuedMessage],
    digest: bool,
    now: i64,
) -> Decision {
    let all = |u: MessageUpdate| messages.iter().map(|m| (m.id, u.clone())).collect::<Vec<_>>();
    let Some(f) = failure else {
        return Decision { outcome: SendOutcome::Delivered, updates: all(MessageUpdate::Delivered), pause: None };
    };
    let error_type = magpie_connectors::error_type(platform, f.kind).to_string();
    let reason = match f.code {
        Some(c) => format!("{c} {}", f.message),
        None => f.message.clone(),
    };
    if f.kind == FailureKind::RateLimited {
        let until = now + pause_for(platform, penalty, f.retry_after).as_millis() as i64;
        let wait = MessageUpdate::Requeue { not_before: now, count_attempt: false, solo: false };
        return Decision {
            outcome: SendOutcome::RateLimited,
            updates: all(wait),
            pause: Some((until, format!("{error_type}: {reason}"))),
        };
    }
    let fail = MessageUpdate::Fail { error_type: error_type.clone(), error: reason.clone() };
    let updates = match f.retry {
        Retry::No if digest && f.kind == FailureKind::BadRequest => {
            all(MessageUpdate::Requeue { not_before: now, count_attempt: false, solo: true })
        }
        Retry::No => all(fail),
        Retry::Yes | Retry::Once => messages
            .iter()
            .map(|m| {
                let failed = m.attempts + 1;
                let allowed = if f.retry == Retry::Once { m.policy.attempts.min(2) } else { m.policy.attempts };
                let next = now + m.policy.backoff_after(failed, f.retry_after, m.id as u64).as_millis() as i64;
                if failed >= allowed {
                    (
                        m.id,
                        MessageUpdate::Fail {
                            error_type: error_type.clone(),
                            error: format!("{reason} (after {failed} attempts)"),
                        },
                    )
                } else if next >= m.deadline {
                    (
                        m.id,
                        MessageUpdate::Fail {
                            error_type: error_type.clone(),
                            error: format!(
                                "{reason} (no retry left within max_age {})",
                                humantime::format_duration(m.policy.max_age)
                            ),
                        },
                    )
                } else {
                    (m.id, MessageUpdate::Requeue { not_before: next, count_attempt: true, solo: false })
                }
            })
            .collect(),
    };
    Decision { outcome: SendOutcome::Failed, updates, pause: None }
}

#[cfg(test)]
mod tests {
    use magpie_core::config::{MessageKind, RetryPolicy};
    use serde_json::json;

    use super::*;

    fn msg(id: i64, attempts: u32) -> QueuedMessage {
        QueuedMessage {
            id,
            job_id: id,
            event_id: "e".into(),
            flow: "f".into(),
            event_type: "t".into(),
            event_status: None,
            kind: MessageKind::Markdown,
            message: json!({}),
            policy: RetryPolicy { attempts: 3, ..RetryPolicy::default() },
            attempts,
            not_before: 0,
            deadline: 100_000,
            enqueued_at: 0,
            received_at: 0,
            solo: false,
            hops: 0,
        }
    }

    fn failure(kind: FailureKind, retry: Retry) -> Failure {
        Failure::new(kind, retry, Some(1), "x")
    }

    #[test]
    fn rate_limits_pause_without_using_attempts() {
        let (a, b) = (msg(1, 2), msg(2, 0));
        let f = failure(FailureKind::RateLimited, Retry::Yes);
        let d = decide(Platform::Dingtalk, None, Some(&f), &[&a, &b], true, 1_000);
        assert_eq!(d.outcome, SendOutcome::RateLimited);
        assert_eq!(d.pause.as_ref().map(|p| p.0), Some(601_000), "DingTalk throttles for 10 minutes");
        assert!(d.updates.iter().all(|(_, u)| matches!(u, MessageUpdate::Requeue { count_attempt: false, .. })));
        let d = decide(Platform::Wecom, Some(Duration::from_secs(2)), Some(&f), &[&a], false, 1_000);
        assert_eq!(d.pause.map(|p| p.0), Some(3_000), "the connection's penalty wins");
    }

    #[test]
    fn retryable_failures_back_off_until_attempts_or_age_run_out() {
        let f = failure(FailureKind::Timeout, Retry::Yes);
        let (fresh, last, old) = (msg(1, 0), msg(2, 2), QueuedMessage { deadline: 1_100, ..msg(3, 0) });
        let d = decide(Platform::Wecom, None, Some(&f), &[&fresh, &last, &old], true, 1_000);
        assert_eq!(d.outcome, SendOutcome::Failed);
        assert!(
            matches!(d.updates[0].1, MessageUpdate::Requeue { not_before, count_attempt: true, .. } if not_before > 1_000)
        );
        assert!(
            matches!(&d.updates[1].1, MessageUpdate::Fail { error_type, error } if error_type == "WECOM:TIMEOUT" && error.contains("after 3 attempts"))
        );
        assert!(matches!(&d.updates[2].1, MessageUpdate::Fail { error, .. } if error.contains("max_age")));
        let once = failure(FailureKind::Auth, Retry::Once);
        let d = decide(Platform::Feishu, None, Some(&once), &[&msg(4, 1)], false, 0);
        assert!(matches!(d.updates[0].1, MessageUpdate::Fail { .. }), "re-signed once already");
    }

    #[test]
    fn permanent_failures_are_dead_letters_but_a_bad_digest_is_unfolded() {
        let (a, b) = (msg(1, 0), msg(2, 0));
        let auth = failure(FailureKind::Auth, Retry::No);
        let d = decide(Platform::Wecom, None, Some(&auth), &[&a, &b], true, 0);
        assert!(d.updates.iter().all(|(_, u)| matches!(u, MessageUpdate::Fail { .. })));
        let bad = failure(FailureKind::BadRequest, Retry::No);
        let d = decide(Platform::Wecom, None, Some(&bad), &[&a, &b], true, 0);
        assert!(
            d.updates.iter().all(|(_, u)| matches!(u, MessageUpdate::Requeue { solo: true, count_attempt: false, .. }))
        );
        let d = decide(Platform::Wecom, None, Some(&bad), &[&a], false, 0);
        assert!(matches!(d.updates[0].1, MessageUpdate::Fail { .. }));
        let ok = decide(Platform::Wecom, None, None, &[&a], false, 0);
        assert_eq!(ok.updates, [(1, MessageUpdate::Delivered)]);
    }
}
