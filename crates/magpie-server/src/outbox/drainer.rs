//! One connection's drainer: holds the connection's lease, plans, claims, sends, records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use magpie_connectors::digest::{AlertState, DigestItem, fold};
use magpie_core::config::ConnectionSpec;
use magpie_core::{FailureKind, OutboundMessage};
use magpie_store::{LimiterState, MessageUpdate, OutboxState, QueuedMessage, SendClaim, SendCompletion};
use tokio::sync::Notify;

use super::limiter::Limiter;
use super::outcome::decide;
use super::plan::{Batch, MAX_FOLD, Plan, UNLIMITED_BATCH, View, plan};
use super::{IDLE_EXIT, LEASE};
use crate::AppState;
use crate::delivery::{self, Prepared};
use crate::telemetry::{
    ConnectionPaused, InternalEvent, MessageDeadLettered, MessageDelivered, OutboxObserved, SendEnded,
};

/// A message given up: its id, error type and why.
type Failed = (i64, String, String);

/// What goes out in one request.
struct Outgoing {
    claim: SendClaim,
    prepared: Prepared,
    messages: Vec<QueuedMessage>,
    digest: bool,
}

struct Drainer {
    state: Arc<AppState>,
    connection: String,
    held: Option<OutboxState>,
    renew_at: i64,
}

pub(super) async fn drain(state: Arc<AppState>, connection: String, notify: Arc<Notify>) {
    let mut stop = state.stop.subscribe();
    let mut d = Drainer { state: state.clone(), connection: connection.clone(), held: None, renew_at: 0 };
    let mut idle_since: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let (wait, listen) = match d.round().await {
            Round::Again => {
                idle_since = None;
                continue;
            }
            Round::Stop => break,
            // Nothing queued later can go before `until` (a slot, the pace, a pause, the head's
            // backoff): sleep through the storm's enqueues instead of re-reading the queue.
            Round::Wait(until) => {
                idle_since = None;
                (Some(until), false)
            }
            Round::Idle => {
                if idle_since.get_or_insert_with(Instant::now).elapsed() >= IDLE_EXIT {
                    break;
                }
                (None, true)
            }
        };
        let now = magpie_core::now_ms();
        let until = wait.unwrap_or(i64::MAX).min(d.renew_at.max(now + 100));
        let sleep = Duration::from_millis((until - now).clamp(1, 60_000) as u64);
        if listen {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
    }
    if d.held.is_some() {
        let _ = state.store.outbox_release(&connection, &state.node).await;
    }
    super::forget(&state, &connection, &notify);
    // A message queued while this drainer was stopping must not wait for the supervisor.
    if !*stop.borrow() && state.store.outbox_queue(&connection, 1).await.is_ok_and(|q| !q.is_empty()) {
        super::wake(&state, &connection);
    }
}

enum Round {
    /// Something was done: plan again at once.
    Again,
    /// Nothing can go before this time.
    Wait(i64),
    /// Nothing is queued.
    Idle,
    /// This drainer stops (another node holds the lease, or the connection is gone and empty).
    Stop,
}

impl Drainer {
    async fn round(&mut self) -> Round {
        let store = &self.state.store;
        let now = magpie_core::now_ms();
        if self.held.is_none() || now >= self.renew_at {
            match store.outbox_acquire(&self.connection, &self.state.node, now, LEASE.as_millis() as i64).await {
                Ok(Some(st)) => {
                    // While we hold it, our own copy of the limiter is the newest.
                    if let Some(mine) = &self.held {
                        let mut st = st;
                        st.limiter = mine.limiter.clone();
                        st.paused_until = st.paused_until.max(mine.paused_until);
                        self.held = Some(st);
                    } else {
                        self.held = Some(st);
                    }
                    self.renew_at = now + LEASE.as_millis() as i64 / 3;
                }
                Ok(None) => {
                    tracing::debug!(connection = %self.connection, "another node drains this outbox");
                    self.held = None;
                    return Round::Stop;
                }
                Err(e) => {
                    tracing::error!(connection = %self.connection, error = %e, "taking the outbox lease failed; will retry");
                    return Round::Wait(now + 1_000);
                }
            }
        }
        let rt = self.state.runtime.get();
        let spec = rt.connections.get(&self.connection).cloned();
        let limiter = Limiter::new(spec.as_ref().map(|c| c.rate_limits()).unwrap_or_default());
        // An unlimited connection sends a batch at a time; a limited one may fold its whole queue.
        let limit = if limiter.unlimited() && spec.is_some() { UNLIMITED_BATCH } else { MAX_FOLD + UNLIMITED_BATCH };
        let queue = match store.outbox_queue(&self.connection, limit).await {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(connection = %self.connection, error = %e, "reading the outbox failed; will retry");
                return Round::Wait(now + 1_000);
            }
        };
        let Some(spec) = spec else {
            if queue.is_empty() {
                return Round::Stop;
            }
            let reason = format!("connection {:?} no longer exists", self.connection);
            let failed = queue.iter().map(|m| (m.id, "FLOW:CONFIG".to_string(), reason.clone())).collect();
            self.fail(&queue, failed, now).await;
            return Round::Again;
        };
        let st = self.held.clone().unwrap_or_default();
        let depth = if queue.len() < limit {
            queue.len()
        } else {
            store.outbox_status(&self.connection).await.map(|s| s.depth as usize).unwrap_or(queue.len())
        };
        OutboxObserved { connection: &self.connection, depth, paused: st.paused_until.is_some_and(|p| p > now) }.emit();
        let view = View {
            queue: &queue,
            tat: &st.limiter.tat,
            last_send_at: st.limiter.last_send_at,
            paused_until: st.paused_until,
            now,
        };
        match plan(&limiter, view) {
            Plan::Idle => Round::Idle,
            Plan::Wait(t) => Round::Wait(t),
            Plan::Expire(ix) => {
                let ns = spec.platform.error_namespace();
                let failed = ix
                    .iter()
                    .map(|&i| {
                        let m = &queue[i];
                        let age = humantime::format_duration(m.policy.max_age);
                        let why = format!("not delivered within max_age {age} ({} failed attempts)", m.attempts);
                        (m.id, FailureKind::Expired.in_namespace(ns).to_string(), why)
                    })
                    .collect();
                self.fail(&queue, failed, now).await;
                Round::Again
            }
            Plan::Send(batches) => {
                self.send(&spec, &limiter, &queue, batches, now).await;
                Round::Again
            }
        }
    }

    /// Fails messages without a send and wakes their jobs.
    async fn fail(&self, queue: &[QueuedMessage], failed: Vec<Failed>, now: i64) {
        for (id, error_type, error) in &failed {
            if let Some(m) = queue.iter().find(|m| m.id == *id) {
                MessageDeadLettered {
                    connection: &self.connection,
                    flow: &m.flow,
                    event_id: &m.event_id,
                    error_type,
                    error,
                }
                .emit();
            }
        }
        match self.state.store.outbox_fail(failed, now).await {
            Ok(woken) if !woken.is_empty() => self.state.wake_workers.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::error!(connection = %self.connection, error = %e, "recording failed messages failed"),
        }
    }

    fn link(&self, id: &str) -> String {
        let base = self.state.public_url.get().map(String::as_str).unwrap_or("http://127.0.0.1:7480");
        format!("{}/v1/digests/{id}", base.trim_end_matches('/'))
    }

    async fn send(
        &mut self,
        spec: &ConnectionSpec,
        limiter: &Limiter,
        queue: &[QueuedMessage],
        batches: Vec<Batch>,
        now: i64,
    ) {
        let dest = match delivery::destination(spec, self.state.env.as_ref()) {
            Ok(d) => d,
            Err(reason) => {
                let f = delivery::config_failure(&spec.name, &reason);
                let failed = batches
                    .iter()
                    .flat_map(|b| match b {
                        Batch::Alone(i) => vec![*i],
                        Batch::Digest(ix) => ix.clone(),
                    })
                    .map(|i| (queue[i].id, "FLOW:CONFIG".to_string(), f.message.clone()))
                    .collect();
                self.fail(queue, failed, now).await;
                return;
            }
        };
        let mut st = self.held.clone().unwrap_or_default();
        let before = st.limiter.clone();
        let lease_until = now + (LEASE + spec.timeout.unwrap_or(delivery::DEFAULT_TIMEOUT)).as_millis() as i64;
        let (out, unbuildable, tat) = self.outgoing(spec, &dest, limiter, queue, batches, lease_until, now);
        if !unbuildable.is_empty() {
            self.fail(queue, unbuildable, now).await;
        }
        if out.is_empty() {
            return;
        }
        match self.state.store.outbox_claim(out.iter().map(|o| o.claim.clone()).collect()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(connection = %self.connection, "the outbox lease was lost; another node drains it");
                self.held = None;
                return;
            }
            Err(e) => {
                tracing::error!(connection = %self.connection, error = %e, "claiming messages failed; will retry");
                return;
            }
        }
        st.limiter = LimiterState { tat: tat.clone(), last_send_at: Some(now) };
        self.renew_at = lease_until - LEASE.as_millis() as i64 * 2 / 3;
        let answers = self.requests(spec, &out).await;
        let completions = self.decisions(spec, limiter, &out, &answers, &mut st, &before, &tat, now);
        self.held = Some(st);
        match self.state.store.outbox_complete(completions).await {
            Ok(woken) if !woken.is_empty() => self.state.wake_workers.notify_one(),
            Ok(_) => {}
            Err(e) => {
                // The messages stay `sending`. Letting the lease go makes the next owner (this
                // node, next round) queue them again: they are sent again, at least once.
                tracing::error!(connection = %self.connection, error = %e, "recording sends failed; will send again");
                let _ = self.state.store.outbox_release(&self.connection, &self.state.node).await;
                self.held = None;
            }
        }
    }

    /// The requests of a round: each batch rendered (a digest folded), signed and masked, with
    /// the limiter taken for each; messages that cannot be built are returned to fail.
    #[allow(clippy::too_many_arguments)]
    fn outgoing(
        &self,
        spec: &ConnectionSpec,
        dest: &magpie_connectors::Destination,
        limiter: &Limiter,
        queue: &[QueuedMessage],
        batches: Vec<Batch>,
        lease_until: i64,
        now: i64,
    ) -> (Vec<Outgoing>, Vec<Failed>, Vec<i64>) {
        let platform = spec.platform;
        let mut tat = self.held.as_ref().map(|h| h.limiter.tat.clone()).unwrap_or_default();
        let mut out: Vec<Outgoing> = Vec::new();
        let mut unbuildable = Vec::new();
        for batch in batches {
            let id = uuid::Uuid::now_v7().to_string();
            let (mut messages, msg) = match &batch {
                Batch::Alone(i) => (vec![queue[*i].clone()], parse(&queue[*i])),
                Batch::Digest(ix) => {
                    let messages: Vec<QueuedMessage> = ix.iter().map(|&i| queue[i].clone()).collect();
                    let parsed: Vec<OutboundMessage> = messages.iter().filter_map(parse).collect();
                    if parsed.len() != messages.len() {
                        // A stored message that does not read back: send the head alone instead.
                        (vec![messages[0].clone()], parse(&messages[0]))
                    } else {
                        let items: Vec<DigestItem<'_>> = parsed
                            .iter()
                            .zip(&messages)
                            .map(|(p, m)| DigestItem {
                                message: p,
                                event_type: &m.event_type,
                                state: AlertState::from_status(m.event_status.as_deref()),
                            })
                            .collect();
                        let d = fold(platform, messages[0].kind, &items, &self.link(&id), &spec.keywords);
                        (messages, Some(d.message))
                    }
                }
            };
            let Some(mut msg) = msg else {
                unbuildable.push((
                    messages[0].id,
                    "FLOW:CONFIG".to_string(),
                    "the stored message does not read back".to_string(),
                ));
                continue;
            };
            let mut prepared = delivery::prepare(dest, &msg, now);
            if prepared.is_err()
                && messages.len() > 1
                && let Some(head) = parse(&messages[0])
            {
                // A digest the platform's builder refuses is not its messages' fault: the head
                // goes alone now, the others at the next slots.
                messages.truncate(1);
                prepared = delivery::prepare(dest, &head, now);
                msg = head;
            }
            let prepared = match prepared {
                Ok(mut p) => {
                    p.hops = messages.iter().map(|m| m.hops).max().unwrap_or(0);
                    p
                }
                Err(f) => {
                    let ns = platform.error_namespace();
                    for m in &messages {
                        unbuildable.push((m.id, f.kind.in_namespace(ns).to_string(), f.message.clone()));
                    }
                    continue;
                }
            };
            let digest = messages.len() > 1;
            if !limiter.unlimited() {
                tat = limiter.take(&tat, now);
            }
            let claim = SendClaim {
                id,
                connection: self.connection.clone(),
                platform: platform.as_str().into(),
                owner: self.state.node.clone(),
                messages: messages.iter().map(|m| m.id).collect(),
                url: prepared.masked_url.clone(),
                request: prepared.masked_body.clone(),
                digest: digest.then(|| serde_json::to_value(&msg).unwrap_or_default()),
                limiter: LimiterState { tat: tat.clone(), last_send_at: Some(now) },
                now_ms: now,
                lease_until,
            };
            out.push(Outgoing { claim, prepared, messages, digest });
        }
        (out, unbuildable, tat)
    }

    /// Sends a round's requests, concurrently when there are several.
    async fn requests(&self, spec: &ConnectionSpec, out: &[Outgoing]) -> Vec<delivery::Answered> {
        let platform = spec.platform;
        let timeout = spec.timeout.unwrap_or(delivery::DEFAULT_TIMEOUT);
        if out.len() == 1 {
            vec![
                delivery::send(&self.state.http, &self.state.runtime.egress, platform, &out[0].prepared, timeout).await,
            ]
        } else {
            let mut set = tokio::task::JoinSet::new();
            for (i, o) in out.iter().enumerate() {
                let (state, p) = (self.state.clone(), o.prepared.clone());
                set.spawn(async move {
                    (i, delivery::send(&state.http, &state.runtime.egress, platform, &p, timeout).await)
                });
            }
            let mut answers: Vec<Option<delivery::Answered>> = vec![None; out.len()];
            while let Some(r) = set.join_next().await {
                if let Ok((i, a)) = r {
                    answers[i] = Some(a);
                }
            }
            answers
                .into_iter()
                .map(|a| {
                    a.unwrap_or_else(|| delivery::Answered {
                        status_code: None,
                        response: None,
                        failure: Some(magpie_connectors::transport_failure(false, "the send task stopped")),
                        duration: Duration::ZERO,
                    })
                })
                .collect()
        }
    }

    /// What each answer means for its messages, the limiter and the pause; logged and counted.
    #[allow(clippy::too_many_arguments)]
    fn decisions(
        &self,
        spec: &ConnectionSpec,
        limiter: &Limiter,
        out: &[Outgoing],
        answers: &[delivery::Answered],
        st: &mut OutboxState,
        before: &LimiterState,
        tat: &[i64],
        now: i64,
    ) -> Vec<SendCompletion> {
        let platform = spec.platform;
        let done_at = magpie_core::now_ms();
        let mut completions = Vec::with_capacity(out.len());
        for (o, a) in out.iter().zip(answers) {
            let refs: Vec<&QueuedMessage> = o.messages.iter().collect();
            let decision = decide(platform, spec.penalty, a.failure.as_ref(), &refs, o.digest, done_at);
            let mut limiter_after = None;
            let mut tat = tat.to_vec();
            if out.len() == 1 && !limiter.unlimited() {
                if a.failure.as_ref().is_some_and(|f| f.kind == FailureKind::Connectivity) {
                    // A request that never reached the platform does not count against its rate.
                    st.limiter = before.clone();
                } else {
                    // The platform counted the request when it arrived, somewhere between the
                    // claim and the answer — later than planned if the connection had to be
                    // set up, or the store was slow. Charge it at the answer: the next send is
                    // spaced from the latest moment it can have arrived.
                    tat = limiter.take(&before.tat, done_at);
                    st.limiter = LimiterState { tat: tat.clone(), last_send_at: Some(done_at) };
                }
                limiter_after = Some(st.limiter.clone());
            }
            if let Some((until, reason)) = &decision.pause {
                let t = limiter.after_pause(&tat, *until);
                st.paused_until = Some(*until);
                st.pause_reason = Some(reason.clone());
                st.limiter.tat = t.clone();
                limiter_after = Some(LimiterState { tat: t, last_send_at: st.limiter.last_send_at.or(Some(now)) });
                ConnectionPaused {
                    connection: &self.connection,
                    pause: Duration::from_millis((*until - done_at).max(0) as u64),
                    reason,
                }
                .emit();
            }
            let error = a.failure.as_ref().map(delivery::describe);
            SendEnded {
                connection: &self.connection,
                platform: platform.as_str(),
                outcome: decision.outcome,
                messages: o.messages.len(),
                error: error.as_deref(),
            }
            .emit();
            for (id, u) in &decision.updates {
                let Some(m) = o.messages.iter().find(|m| m.id == *id) else { continue };
                match u {
                    MessageUpdate::Delivered => MessageDelivered {
                        connection: &self.connection,
                        latency: Duration::from_millis((done_at - m.received_at).max(0) as u64),
                    }
                    .emit(),
                    MessageUpdate::Fail { error_type, error } => MessageDeadLettered {
                        connection: &self.connection,
                        flow: &m.flow,
                        event_id: &m.event_id,
                        error_type,
                        error,
                    }
                    .emit(),
                    MessageUpdate::Requeue { .. } => {}
                }
            }
            completions.push(SendCompletion {
                send_id: o.claim.id.clone(),
                connection: self.connection.clone(),
                outcome: decision.outcome,
                status_code: a.status_code,
                response: a.response.clone(),
                error_type: a.failure.as_ref().map(|f| magpie_connectors::error_type(platform, f.kind).to_string()),
                error,
                duration_ms: a.duration.as_millis() as i64,
                updates: decision.updates,
                pause: decision.pause,
                limiter: limiter_after,
                now_ms: done_at,
            });
        }
        completions
    }
}

fn parse(m: &QueuedMessage) -> Option<OutboundMessage> {
    serde_json::from_value(m.message.clone()).ok()
}
