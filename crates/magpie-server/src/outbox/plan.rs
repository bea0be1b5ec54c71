//! What a connection's outbox does next, decided from its queue and its limiter. Pure.
//!
//! - Messages past their maximum age are given up first.
//! - Nothing goes out while the connection is paused, or before the head's retry time (order is
//!   kept: the queue waits behind its head), or before the limiter's next slot.
//! - A message alone in its slot — or a few that the limiter can all send right now — go as their
//!   flows rendered them.
//! - The first message of a storm (the connection was idle) goes at once, as rendered.
//! - A backlog (more waiting than the limiter can send now) is folded: every waiting message of
//!   the head's kind goes in one digest, and digests are spaced at the tightest limit's full rate,
//!   so a storm is told in a few digests instead of burning the burst on tiny ones.
//! - An unlimited connection sends what is ready in batches, concurrently.

use magpie_store::QueuedMessage;

use super::limiter::Limiter;

/// Most messages folded into one digest.
pub const MAX_FOLD: usize = 10_000;
/// Most messages an unlimited connection sends at once.
pub const UNLIMITED_BATCH: usize = 64;

/// One send: a message alone, or a digest of several (indices into the queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Sent as its flow rendered it.
    Alone(usize),
    /// Folded into one digest, in queue order.
    Digest(Vec<usize>),
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing is queued.
    Idle,
    /// Give these up: past their maximum age.
    Expire(Vec<usize>),
    /// Nothing can go before this time (ms since the epoch).
    Wait(i64),
    /// Send these (concurrently when several).
    Send(Vec<Batch>),
}

/// What the plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The queue, oldest first.
    pub queue: &'a [QueuedMessage],
    /// The limiter's state.
    pub tat: &'a [i64],
    /// When the last send started.
    pub last_send_at: Option<i64>,
    /// Paused until.
    pub paused_until: Option<i64>,
    /// Now.
    pub now: i64,
}

/// Decides the next step.
pub fn plan(limiter: &Limiter, v: View<'_>) -> Plan {
    let now = v.now;
    let expired: Vec<usize> = v.queue.iter().enumerate().filter(|(_, m)| m.deadline <= now).map(|(i, _)| i).collect();
    if !expired.is_empty() {
        return Plan::Expire(expired);
    }
    let Some(head) = v.queue.first() else { return Plan::Idle };
    if let Some(p) = v.paused_until.filter(|p| *p > now) {
        return Plan::Wait(p);
    }
    if head.not_before > now {
        return Plan::Wait(head.not_before);
    }
    if limiter.unlimited() {
        let ready = v.queue.iter().take(UNLIMITED_BATCH).take_while(|m| m.not_before <= now).count();
        return Plan::Send((0..ready).map(Batch::Alone).collect());
    }
    let slot = limiter.next_slot(v.tat, now);
    if slot > now {
        return Plan::Wait(slot);
    }
    let ready = v.queue.iter().filter(|m| m.not_before <= now).count();
    let foldable: Vec<usize> = v
        .queue
        .iter()
        .enumerate()
        .filter(|(_, m)| m.not_before <= now && m.kind == head.kind && !m.solo)
        .map(|(i, _)| i)
        .take(MAX_FOLD)
        .collect();
    let alone = head.solo
        || foldable.len() <= 1
        || ready as u64 <= u64::from(limiter.available(v.tat, now))
        || limiter.idle(v.tat, now);
    if alone {
        return Plan::Send(vec![Batch::Alone(0)]);
    }
    let digest_at = v.last_send_at.map_or(now, |t| t + limiter.pace());
    if digest_at > now {
        return Plan::Wait(digest_at);
    }
    Plan::Send(vec![Batch::Digest(foldable)])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use magpie_core::RateLimit;
    use magpie_core::config::{MessageKind, RetryPolicy};
    use serde_json::json;

    use super::*;

    fn msg(id: i64, kind: MessageKind) -> QueuedMessage {
        QueuedMessage {
            id,
            job_id: id,
            event_id: format!("e{id}"),
            flow: "f".into(),
            event_type: "t".into(),
            event_status: None,
            kind,
            message: json!({}),
            policy: RetryPolicy::default(),
            attempts: 0,
            not_before: 0,
            deadline: 1_000_000,
            enqueued_at: 0,
            received_at: 0,
            solo: false,
            hops: 0,
        }
    }

    fn view<'a>(queue: &'a [QueuedMessage], tat: &'a [i64], last: Option<i64>, now: i64) -> View<'a> {
        View { queue, tat, last_send_at: last, paused_until: None, now }
    }

    fn wecom() -> Limiter {
        Limiter::new(&[RateLimit::new(20, Duration::from_secs(60))])
    }

    #[test]
    fn a_lone_message_and_a_small_burst_go_unfolded() {
        let l = wecom();
        let q = vec![msg(1, MessageKind::Markdown)];
        assert_eq!(plan(&l, view(&q, &[], None, 10)), Plan::Send(vec![Batch::Alone(0)]));
        let q: Vec<_> = (1..=5).map(|i| msg(i, MessageKind::Markdown)).collect();
        assert_eq!(plan(&l, view(&q, &[], None, 10)), Plan::Send(vec![Batch::Alone(0)]), "10 slots free");
        assert_eq!(plan(&l, view(&[], &[], None, 10)), Plan::Idle);
    }

    #[test]
    fn a_backlog_is_folded_per_kind_at_the_pace() {
        let l = wecom();
        let mut q: Vec<_> = (1..=30).map(|i| msg(i, MessageKind::Markdown)).collect();
        q[3].kind = MessageKind::Text;
        // The first message just went: the digest waits for the pace, then folds all of its kind.
        let tat = l.take(&[], 0);
        assert_eq!(plan(&l, view(&q, &tat, Some(0), 100)), Plan::Wait(3_150));
        let Plan::Send(b) = plan(&l, view(&q, &tat, Some(0), 3_150)) else { panic!() };
        let Batch::Digest(ids) = &b[0] else { panic!("{b:?}") };
        assert_eq!(ids.len(), 29);
        assert!(!ids.contains(&3), "a text message is not folded with markdown");
        // A message refused in a digest goes alone.
        q[0].solo = true;
        assert_eq!(plan(&l, view(&q, &tat, Some(0), 3_150)), Plan::Send(vec![Batch::Alone(0)]));
    }

    #[test]
    fn the_first_message_of_a_storm_goes_alone() {
        let l = wecom();
        let q: Vec<_> = (1..=300).map(|i| msg(i, MessageKind::Markdown)).collect();
        assert_eq!(plan(&l, view(&q, &[], None, 10)), Plan::Send(vec![Batch::Alone(0)]));
        let tat = l.take(&[], 10);
        assert_eq!(plan(&l, view(&q[1..], &tat, Some(10), 11)), Plan::Wait(3_160), "then digests, paced");
    }

    #[test]
    fn waits_for_pause_head_backoff_and_slot_and_expires_first() {
        let l = wecom();
        let mut q = vec![msg(1, MessageKind::Markdown), msg(2, MessageKind::Markdown)];
        let mut v = view(&q, &[], None, 10);
        v.paused_until = Some(60_000);
        assert_eq!(plan(&l, v), Plan::Wait(60_000));
        q[0].not_before = 500;
        assert_eq!(plan(&l, view(&q, &[], None, 10)), Plan::Wait(500), "order: the queue waits for its head");
        q[0].not_before = 0;
        let mut tat = Vec::new();
        for _ in 0..10 {
            tat = l.take(&tat, 0);
        }
        let Plan::Wait(t) = plan(&l, view(&q, &tat, Some(0), 0)) else { panic!() };
        assert!(t > 0);
        q[1].deadline = 5;
        assert_eq!(plan(&l, view(&q, &tat, Some(0), 10)), Plan::Expire(vec![1]));
    }

    #[test]
    fn unlimited_connections_send_ready_messages_in_batches() {
        let l = Limiter::new(&[]);
        let mut q: Vec<_> = (1..=100).map(|i| msg(i, MessageKind::Text)).collect();
        let Plan::Send(b) = plan(&l, view(&q, &[], None, 0)) else { panic!() };
        assert_eq!(b.len(), UNLIMITED_BATCH);
        assert!(b.iter().all(|x| matches!(x, Batch::Alone(_))));
        q[3].not_before = 99;
        let Plan::Send(b) = plan(&l, view(&q, &[], None, 0)) else { panic!() };
        assert_eq!(b.len(), 3, "up to the first that is not ready");
    }
}
