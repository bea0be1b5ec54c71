//! The conformance suite every [`Store`] backend passes: instantiate it with
//! [`store_suite!`](crate::store_suite) and a function that opens an empty store.
//!
//! ```ignore
//! magpie_store::store_suite!(sqlite, || async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
//!     (std::sync::Arc::new(store) as std::sync::Arc<dyn Store>, dir)
//! });
//! ```

use std::sync::Arc;
use std::time::Duration;

use magpie_core::config::{MessageKind, RetryPolicy};
use serde_json::json;

use crate::*;

mod access;
mod flows;
pub use access::*;
pub use flows::*;

/// Instantiates the conformance suite for a backend: `store_suite!(name, open)` where `open()`
/// returns a future of `(Arc<dyn Store>, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! store_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_suite!(@tests $open;
                concurrent_appends_are_grouped_without_losing_or_doubling,
                events_route_into_jobs_that_are_claimed_once,
                a_job_the_process_keeps_dying_in_is_poison,
                a_message_parks_its_job_until_delivered,
                the_outbox_lease_has_one_owner_and_a_new_owner_requeues_what_was_in_flight,
                failed_messages_and_failed_runs_are_dead_letters_that_redrive,
                a_digest_lists_its_events_and_traces_show_the_fold,
                the_archive_lists_replays_and_sweeps,
                alerts_are_deduplicated_paired_and_released_after_a_silence,
                flows_have_drafts_published_versions_and_jobs_keep_theirs,
                tokens_and_every_change_are_in_the_audit_log);
        }
    };
    (@tests $open:expr; $($t:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $t() {
                let (store, _guard) = ($open)().await;
                $crate::conformance::$t(store).await;
            }
        )*
    };
}

fn ev(id: &str) -> NewEvent {
    NewEvent::new(
        id,
        1,
        json!({"id": id, "source": "s", "type": "cvm:ErrorEvent:GuestReboot", "subject": format!("ins-{id}"), "status": "1"}),
    )
}

fn message(job_id: i64, ordinal: u32, connection: &str, now: i64) -> NewMessage {
    NewMessage {
        job_id,
        ordinal,
        path: format!("steps[{ordinal}].robot"),
        connection: connection.into(),
        flow: "f1".into(),
        event_id: "e".into(),
        event_type: "cvm:ErrorEvent:GuestReboot".into(),
        event_status: Some("1".into()),
        kind: MessageKind::Markdown,
        message: json!({"kind": "markdown", "title": null, "content": format!("alert {job_id}")}),
        policy: RetryPolicy { max_age: Duration::from_secs(60), ..RetryPolicy::default() },
        received_at: now,
        now_ms: now,
        steps: vec![],
    }
}

/// Appends `ids` to `default` and routes each to one job of flow `f1`; returns the job ids.
async fn routed_jobs(s: &dyn Store, ids: &[&str], now: i64) -> Vec<i64> {
    let appended = s.append_events("default", ids.iter().map(|i| ev(i)).collect()).await.unwrap();
    let routed = appended
        .iter()
        .map(|a| {
            let (Appended::Stored(seq) | Appended::Duplicate(seq)) = *a;
            Routed {
                seq,
                matched: vec!["r1".into()],
                jobs: vec![NewJob { rule: "r1".into(), flow: "f1".into() }],
                ..Default::default()
            }
        })
        .collect();
    s.commit_routing(routed, now).await.unwrap();
    let jobs = s.claim_jobs(now, 60_000, 1_000).await.unwrap();
    jobs.iter().map(|j| j.id).collect()
}

fn claim(id: &str, connection: &str, owner: &str, messages: Vec<i64>, now: i64) -> SendClaim {
    SendClaim {
        id: id.into(),
        connection: connection.into(),
        platform: "wecom".into(),
        owner: owner.into(),
        messages,
        url: "http://robot/?key=***".into(),
        request: json!({"msgtype": "markdown"}),
        digest: None,
        limiter: LimiterState { tat: vec![now + 3_000], last_send_at: Some(now) },
        now_ms: now,
        lease_until: now + 30_000,
    }
}

fn completion(
    send: &str,
    connection: &str,
    outcome: SendOutcome,
    updates: Vec<(i64, MessageUpdate)>,
    now: i64,
) -> SendCompletion {
    SendCompletion {
        send_id: send.into(),
        connection: connection.into(),
        outcome,
        status_code: Some(200),
        response: Some(r#"{"errcode":0}"#.into()),
        error_type: None,
        error: None,
        duration_ms: 3,
        updates,
        pause: None,
        limiter: None,
        now_ms: now,
    }
}

async fn job_status(s: &dyn Store, event_id: &str) -> Vec<JobStatus> {
    s.trace(event_id).await.unwrap().unwrap().runs.iter().map(|r| r.status).collect()
}

/// Concurrent appends are grouped into commits without losing or doubling an event.
pub async fn concurrent_appends_are_grouped_without_losing_or_doubling(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        // Requests 0 and 1 carry the same id: one is stored, the other is a duplicate.
        let id = if i < 2 { "same".to_string() } else { format!("e{i}") };
        tasks.push(tokio::spawn(async move { s.append_events("default", vec![ev(&id)]).await.unwrap() }));
    }
    let mut seqs = Vec::new();
    let (mut stored, mut dups) = (0, 0);
    for t in tasks {
        match t.await.unwrap()[..] {
            [Appended::Stored(seq)] => {
                stored += 1;
                seqs.push(seq)
            }
            [Appended::Duplicate(_)] => dups += 1,
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!((stored, dups), (199, 1));
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 199, "distinct sequence numbers");
    assert_eq!(s.unrouted_events("default", 0, 1000).await.unwrap().len(), 199);
}

/// A job running when the process died three times in a row is dead-lettered as FLOW:POISON; a
/// run that ends by itself in between starts the count again.
pub async fn a_job_the_process_keeps_dying_in_is_poison(s: Arc<dyn Store>) {
    s.append_events("default", vec![ev("a"), ev("b")]).await.unwrap();
    let job = |rule: &str| NewJob { rule: rule.into(), flow: "f".into() };
    let routed = vec![
        Routed { seq: 1, matched: vec!["r".into()], jobs: vec![job("r")], ..Default::default() },
        Routed { seq: 2, matched: vec!["r".into()], jobs: vec![job("r")], ..Default::default() },
    ];
    s.commit_routing(routed, 100).await.unwrap();
    let mut now = 100;
    for round in 1..=crate::POISON_AFTER {
        now += 10;
        let jobs = s.claim_jobs(now, 30_000, 10).await.unwrap();
        assert_eq!(jobs.len(), 2, "round {round}: both jobs are handed out again");
        if round == 2 {
            // The second job's run ends by itself (it will run again later): its count restarts.
            s.end_job(jobs[1].id, JobEnd::Retry { at: now, error: "x".into() }, vec![], now).await.unwrap();
            s.claim_jobs(now, 30_000, 10).await.unwrap();
        }
        let released = s.release_leases(now).await.unwrap();
        if round < crate::POISON_AFTER {
            assert!(released.poisoned.is_empty(), "round {round}: {released:?}");
        } else {
            assert_eq!(released.poisoned, [(jobs[0].id, "f".to_string())]);
            assert_eq!(released.jobs, 1, "the other job runs again");
        }
    }
    let letters = s.dead_letters(LetterFilter::default()).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].error_type, "FLOW:POISON");
    let jobs = s.claim_jobs(now + 10, 30_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "the poisoned job is not handed out again");
}

/// Routing creates jobs with the cursor; a claimed job is leased; ends are recorded.
pub async fn events_route_into_jobs_that_are_claimed_once(s: Arc<dyn Store>) {
    let r = s.append_events("default", vec![ev("a"), ev("b"), ev("a")]).await.unwrap();
    assert!(matches!(r[..], [Appended::Stored(1), Appended::Stored(2), Appended::Duplicate(1)]), "{r:?}");
    assert_eq!(s.append_events("default", vec![ev("a")]).await.unwrap(), [Appended::Duplicate(1)]);
    assert_eq!(s.unrouted_events("default", 0, 10).await.unwrap().len(), 2);
    assert_eq!(s.unrouted_events("default", 1, 10).await.unwrap().len(), 1, "after a position");
    assert!(s.unrouted_events("other", 0, 10).await.unwrap().is_empty(), "by bus");
    let routed = vec![
        Routed {
            seq: 1,
            matched: vec!["r1".into()],
            jobs: vec![NewJob { rule: "r1".into(), flow: "f1".into() }],
            ..Default::default()
        },
        Routed { seq: 2, matched: vec![], jobs: vec![], ..Default::default() },
    ];
    assert_eq!(s.commit_routing(routed, 100).await.unwrap(), 1);
    assert!(s.unrouted_events("default", 0, 10).await.unwrap().is_empty(), "routed events are done");
    let jobs = s.claim_jobs(100, 30_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].event["id"], "a");
    assert!(jobs[0].received_at > 0);
    assert!(s.claim_jobs(101, 30_000, 10).await.unwrap().is_empty(), "leased");
    assert_eq!(s.release_leases(1).await.unwrap().jobs, 1);
    let jobs = s.claim_jobs(200, 30_000, 10).await.unwrap();
    assert_eq!(jobs[0].runs, 2);
    s.end_job(jobs[0].id, JobEnd::Retry { at: 5_000, error: "x".into() }, vec![], 200).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(5_000));
    assert!(s.claim_jobs(4_999, 30_000, 10).await.unwrap().is_empty());
    let jobs = s.claim_jobs(5_000, 30_000, 10).await.unwrap();
    let step = StepRow {
        ordinal: 0,
        path: "steps[0]".into(),
        kind: "logger".into(),
        status: magpie_core::StepStatus::Ok,
        detail: json!({}),
        at: 1,
    };
    s.record_step(jobs[0].id, step.clone()).await.unwrap();
    s.record_step(jobs[0].id, step).await.unwrap();
    let last = StepRow {
        ordinal: 1,
        path: "steps[1]".into(),
        kind: "logger".into(),
        status: magpie_core::StepStatus::Ok,
        detail: json!({}),
        at: 2,
    };
    s.end_job(jobs[0].id, JobEnd::Done { undelivered: false }, vec![last], 5_001).await.unwrap();
    let t = s.trace("a").await.unwrap().unwrap();
    assert_eq!(t.rules_matched, ["r1"]);
    assert_eq!(t.runs[0].status, JobStatus::Done);
    assert_eq!(t.runs[0].journal.steps.len(), 2, "a step record is written once; the last come with the end");
    assert!(s.trace("zzz").await.unwrap().is_none());
}

/// A queued message parks its job (no lease, not due); its delivery makes the job due.
pub async fn a_message_parks_its_job_until_delivered(s: Arc<dyn Store>) {
    let now = 1_000_000;
    let jobs = routed_jobs(s.as_ref(), &["p1", "p2"], now).await;
    let before = StepRow {
        ordinal: 0,
        path: "steps[0]".into(),
        kind: "set-variable".into(),
        status: magpie_core::StepStatus::Ok,
        detail: json!({}),
        at: 1,
    };
    let m1 = s.enqueue(NewMessage { steps: vec![before], ..message(jobs[0], 2, "c1", now) }).await.unwrap();
    assert_eq!(s.enqueue(message(jobs[0], 2, "c1", now)).await.unwrap(), m1, "idempotent per job and step");
    assert_eq!(s.journal(jobs[0]).await.unwrap().steps.len(), 1, "the run's records come with its message");
    let m2 = s.enqueue(message(jobs[1], 2, "c1", now + 1)).await.unwrap();
    assert_eq!(job_status(s.as_ref(), "p1").await, [JobStatus::Parked], "queueing parks the run");
    s.end_job(jobs[1], JobEnd::Parked, vec![], now).await.unwrap();
    assert_eq!(job_status(s.as_ref(), "p2").await, [JobStatus::Parked], "parking again changes nothing");
    assert_eq!(s.next_due().await.unwrap(), None, "parked jobs are not due");
    assert!(s.claim_jobs(now + 10_000_000, 1_000, 10).await.unwrap().is_empty(), "and not claimable");
    assert_eq!(s.outbox_connections().await.unwrap(), ["c1"]);

    let q = s.outbox_queue("c1", 10).await.unwrap();
    assert_eq!(q.iter().map(|m| m.id).collect::<Vec<_>>(), [m1, m2], "oldest first");
    assert_eq!(q[0].deadline, now + 60_000);
    assert_eq!(q[0].event_status.as_deref(), Some("1"));
    let st = s.outbox_acquire("c1", "node-a", now, 30_000).await.unwrap().unwrap();
    assert!(st.limiter.tat.is_empty());
    assert!(s.outbox_claim(vec![claim("s1", "c1", "node-a", vec![m1], now)]).await.unwrap());
    assert_eq!(s.outbox_queue("c1", 10).await.unwrap().len(), 1, "a message being sent is not queued");
    let status = s.outbox_status("c1").await.unwrap();
    assert_eq!(status.depth, 2, "but still waiting");
    assert_eq!(status.state.limiter.tat, [now + 3_000], "the limiter is saved with the claim");
    let woken = s
        .outbox_complete(vec![completion(
            "s1",
            "c1",
            SendOutcome::Delivered,
            vec![(m1, MessageUpdate::Delivered)],
            now + 5,
        )])
        .await
        .unwrap();
    assert_eq!(woken, [jobs[0]]);
    assert_eq!(s.claim_jobs(now + 5, 1_000, 10).await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), [jobs[0]]);
    let j = s.journal(jobs[0]).await.unwrap();
    assert_eq!(j.deliveries.len(), 1);
    assert_eq!(j.deliveries[0].status, MessageStatus::Delivered);
    assert_eq!(s.outbox_status("c1").await.unwrap().state.sent, 1);

    // A run that parks on a message already finished (it resumed after a crash) is due at once.
    let now = now + 10;
    let jobs = routed_jobs(s.as_ref(), &["p3"], now).await;
    let m3 = s.enqueue(message(jobs[0], 0, "c2", now)).await.unwrap();
    s.outbox_acquire("c2", "node-a", now, 30_000).await.unwrap().unwrap();
    assert!(s.outbox_claim(vec![claim("s3", "c2", "node-a", vec![m3], now)]).await.unwrap());
    let woken = s
        .outbox_complete(vec![completion(
            "s3",
            "c2",
            SendOutcome::Delivered,
            vec![(m3, MessageUpdate::Delivered)],
            now,
        )])
        .await
        .unwrap();
    assert_eq!(woken, [jobs[0]], "queueing parked the job; its message woke it");
    let again = s.claim_jobs(now, 60_000, 10).await.unwrap();
    assert_eq!(again[0].journal.as_ref().map(|j| j.deliveries.len()), Some(1), "a re-run gets its journal");
    s.end_job(jobs[0], JobEnd::Parked, vec![], now).await.unwrap();
    assert_eq!(job_status(s.as_ref(), "p3").await, [JobStatus::Pending]);
}

/// One owner per outbox; a new owner gets what the last one had in flight back in the queue.
pub async fn the_outbox_lease_has_one_owner_and_a_new_owner_requeues_what_was_in_flight(s: Arc<dyn Store>) {
    let now = 2_000_000;
    let jobs = routed_jobs(s.as_ref(), &["l1"], now).await;
    let m = s.enqueue(message(jobs[0], 1, "c1", now)).await.unwrap();
    assert!(s.outbox_acquire("c1", "a", now, 1_000).await.unwrap().is_some());
    assert!(s.outbox_acquire("c1", "b", now + 500, 1_000).await.unwrap().is_none(), "a holds it");
    assert!(s.outbox_acquire("c1", "a", now + 600, 1_000).await.unwrap().is_some(), "renewed");
    assert!(s.outbox_claim(vec![claim("s1", "c1", "a", vec![m], now + 600)]).await.unwrap());
    assert!(!s.outbox_claim(vec![claim("s2", "c1", "b", vec![m], now + 600)]).await.unwrap(), "fenced");
    // a dies; its lease (extended by the claim) runs out.
    assert!(s.outbox_acquire("c1", "b", now + 20_000, 1_000).await.unwrap().is_none());
    assert!(s.outbox_acquire("c1", "b", now + 31_000, 1_000).await.unwrap().is_some());
    let q = s.outbox_queue("c1", 10).await.unwrap();
    assert_eq!(q.iter().map(|m| m.id).collect::<Vec<_>>(), [m], "queued again (at least once)");
    let t = s.trace("l1").await.unwrap().unwrap();
    assert_eq!(t.runs[0].journal.attempts[0].outcome, SendOutcome::Interrupted);
    s.outbox_release("c1", "b").await.unwrap();
    assert!(s.outbox_acquire("c1", "c", now + 31_001, 1_000).await.unwrap().is_some(), "released");
    // A restart of the only node frees every outbox.
    s.release_leases(1).await.unwrap();
    assert!(s.outbox_acquire("c1", "d", now + 31_002, 1_000).await.unwrap().is_some());
}

/// Messages that fail for good and runs that fail are dead letters; redrive resumes them.
pub async fn failed_messages_and_failed_runs_are_dead_letters_that_redrive(s: Arc<dyn Store>) {
    let now = 3_000_000;
    let jobs = routed_jobs(s.as_ref(), &["d1", "d2", "d3"], now).await;
    let (caught_job, uncaught_job, run_job) = (jobs[0], jobs[1], jobs[2]);
    let m1 = s.enqueue(message(caught_job, 2, "c1", now)).await.unwrap();
    let m2 = s.enqueue(message(uncaught_job, 2, "c1", now)).await.unwrap();
    for j in [caught_job, uncaught_job] {
        s.end_job(j, JobEnd::Parked, vec![], now).await.unwrap();
    }
    s.outbox_acquire("c1", "a", now, 30_000).await.unwrap();
    assert!(s.outbox_claim(vec![claim("s1", "c1", "a", vec![m1, m2], now)]).await.unwrap());
    // A retryable failure: back in the queue with one attempt counted.
    let requeue = MessageUpdate::Requeue { not_before: now + 1_000, count_attempt: true, solo: false };
    let mut done = completion("s1", "c1", SendOutcome::Failed, vec![(m1, requeue.clone()), (m2, requeue)], now);
    done.error_type = Some("WECOM:REMOTE".into());
    assert!(s.outbox_complete(vec![done]).await.unwrap().is_empty());
    let q = s.outbox_queue("c1", 10).await.unwrap();
    assert_eq!((q[0].attempts, q[0].not_before), (1, now + 1_000));
    // Then for good.
    assert!(s.outbox_claim(vec![claim("s2", "c1", "a", vec![m1, m2], now + 1_000)]).await.unwrap());
    let fail = MessageUpdate::Fail { error_type: "WECOM:AUTH".into(), error: "93000 invalid webhook url".into() };
    let mut done = completion("s2", "c1", SendOutcome::Failed, vec![(m1, fail.clone()), (m2, fail)], now + 1_000);
    done.pause = Some((now + 61_000, "45009".into()));
    let mut woken = s.outbox_complete(vec![done]).await.unwrap();
    woken.sort_unstable();
    assert_eq!(woken, [caught_job, uncaught_job]);
    assert_eq!(s.outbox_status("c1").await.unwrap().state.paused_until, Some(now + 61_000));
    // The flows run again: one catches the error, one does not; the third fails by itself.
    s.claim_jobs(now + 1_000, 60_000, 10).await.unwrap();
    s.end_job(caught_job, JobEnd::Done { undelivered: true }, vec![], now + 1_001).await.unwrap();
    let failed =
        |step: Option<(u32, String)>| JobEnd::Failed { error_type: "WECOM:AUTH".into(), error: "93000".into(), step };
    s.end_job(uncaught_job, failed(Some((2, "steps[2].robot".into()))), vec![], now + 1_001).await.unwrap();
    let boom = JobEnd::Failed {
        error_type: "APP:BOOM".into(),
        error: "x".into(),
        step: Some((4, "steps[4].raise-error".into())),
    };
    s.end_job(run_job, boom, vec![], now + 1_001).await.unwrap();
    assert_eq!(job_status(s.as_ref(), "d1").await, [JobStatus::DeliveryFailed]);
    assert_eq!(job_status(s.as_ref(), "d2").await, [JobStatus::Failed]);

    let all = s.dead_letters(LetterFilter { limit: 100, ..LetterFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 3, "one letter per failure: {all:?}");
    let by_job = |j: i64| all.iter().find(|l| l.job_id == j).unwrap().clone();
    assert!(by_job(caught_job).caught && by_job(caught_job).message_id == Some(m1));
    assert!(!by_job(uncaught_job).caught, "the same letter records that the run stopped");
    assert_eq!(by_job(run_job).message_id, None);
    let only = |f: LetterFilter| {
        let s = s.clone();
        async move { s.dead_letters(LetterFilter { limit: 100, ..f }).await.unwrap().len() }
    };
    assert_eq!(only(LetterFilter { error_type: Some("AUTH".into()), ..Default::default() }).await, 2);
    assert_eq!(only(LetterFilter { error_type: Some("APP:BOOM".into()), ..Default::default() }).await, 1);
    assert_eq!(only(LetterFilter { connection: Some("c1".into()), ..Default::default() }).await, 2);
    assert_eq!(only(LetterFilter { since_ms: Some(now + 2_000), ..Default::default() }).await, 0);
    let d = s.dead_letter(by_job(caught_job).id).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "both sends");
    assert_eq!(d.event.unwrap().id, "d1");

    // Redrive all three.
    let ids: Vec<i64> = all.iter().map(|l| l.id).collect();
    let r = s.redrive(ids.clone(), now + 5_000).await.unwrap();
    assert_eq!(r.len(), 3);
    assert!(s.redrive(ids, now + 5_001).await.unwrap().is_empty(), "a letter is redriven once");
    assert_eq!(only(LetterFilter::default()).await, 0, "redriven letters leave the list");
    assert_eq!(job_status(s.as_ref(), "d2").await, [JobStatus::Parked], "the stopped run waits for its message");
    assert_eq!(job_status(s.as_ref(), "d3").await, [JobStatus::Pending], "the failed run runs again");
    let q = s.outbox_queue("c1", 10).await.unwrap();
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|m| m.attempts == 0 && m.deadline == now + 65_000), "fresh attempts and age");
    // The caught one is delivered: its run is done.
    let n1 = q.iter().find(|m| m.job_id == caught_job).unwrap().id;
    let n2 = q.iter().find(|m| m.job_id == uncaught_job).unwrap().id;
    s.outbox_claim(vec![claim("s3", "c1", "a", vec![n1], now + 5_000)]).await.unwrap();
    s.outbox_complete(vec![completion(
        "s3",
        "c1",
        SendOutcome::Delivered,
        vec![(n1, MessageUpdate::Delivered)],
        now + 5_000,
    )])
    .await
    .unwrap();
    assert_eq!(job_status(s.as_ref(), "d1").await, [JobStatus::Done]);
    // The other fails again: a new letter that remembers the first.
    s.outbox_claim(vec![claim("s4", "c1", "a", vec![n2], now + 5_000)]).await.unwrap();
    let fail = MessageUpdate::Fail { error_type: "WECOM:AUTH".into(), error: "again".into() };
    let woken = s
        .outbox_complete(vec![completion("s4", "c1", SendOutcome::Failed, vec![(n2, fail)], now + 5_000)])
        .await
        .unwrap();
    assert_eq!(woken, [uncaught_job]);
    let open = s.dead_letters(LetterFilter { limit: 10, ..LetterFilter::default() }).await.unwrap();
    assert_eq!(open.len(), 1);
    let d = s.dead_letter(open[0].id).await.unwrap().unwrap();
    assert_eq!(d.history.len(), 1, "both histories");
    assert_eq!(d.history[0].letter.id, by_job(uncaught_job).id);
    assert_eq!(d.history[0].attempts.len(), 2);
    assert_eq!(d.attempts.len(), 1);
    let t = s.trace("d2").await.unwrap().unwrap();
    assert_eq!(t.runs[0].journal.deliveries.iter().map(|d| d.generation).collect::<Vec<_>>(), [0, 1]);
}

/// A delivered digest lists its events; the trace shows which messages were folded into it.
pub async fn a_digest_lists_its_events_and_traces_show_the_fold(s: Arc<dyn Store>) {
    let now = 4_000_000;
    let jobs = routed_jobs(s.as_ref(), &["g1", "g2", "g3"], now).await;
    let ms: Vec<i64> = futures_join(jobs.iter().map(|j| s.enqueue(message(*j, 1, "c1", now))))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    s.outbox_acquire("c1", "a", now, 30_000).await.unwrap();
    let mut c = claim("dg-1", "c1", "a", ms.clone(), now);
    c.digest = Some(json!({"kind": "markdown", "title": null, "content": "**3 alerts**"}));
    assert!(s.outbox_claim(vec![c]).await.unwrap());
    assert!(s.digest("dg-1").await.unwrap().is_none(), "not delivered yet");
    let updates = ms.iter().map(|m| (*m, MessageUpdate::Delivered)).collect();
    s.outbox_complete(vec![completion("dg-1", "c1", SendOutcome::Delivered, updates, now + 2)]).await.unwrap();
    let d = s.digest("dg-1").await.unwrap().unwrap();
    assert_eq!(d.events, ["e", "e", "e"]);
    assert_eq!(d.message["content"], "**3 alerts**");
    assert_eq!((d.connection.as_str(), d.sent_at), ("c1", now));
    let st = s.outbox_status("c1").await.unwrap();
    assert_eq!((st.state.sent, st.state.digests, st.state.folded, st.depth), (1, 1, 3, 0));
    let t = s.trace("g2").await.unwrap().unwrap();
    let dl = &t.runs[0].journal.deliveries[0];
    assert_eq!((dl.status, dl.digest_id.as_deref()), (MessageStatus::Folded, Some("dg-1")));
    let a = &t.runs[0].journal.attempts[0];
    assert_eq!((a.folded, a.attempt, a.outcome), (3, 1, SendOutcome::Delivered));
    assert!(s.digest("nope").await.unwrap().is_none());
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

/// The archive lists events with filters and a cursor, replays create marked jobs, and the
/// sweep removes old finished events (and nothing that is still needed).
pub async fn the_archive_lists_replays_and_sweeps(s: Arc<dyn Store>) {
    let t0 = magpie_core::now_ms();
    let jobs = routed_jobs(s.as_ref(), &["a1", "a2", "a3", "a4"], t0).await;
    s.append_events("other", vec![ev("o1")]).await.unwrap();
    let all = s.list_events(EventFilter { limit: 10, ..EventFilter::default() }).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["o1", "a4", "a3", "a2", "a1"], "newest first");
    let page =
        s.list_events(EventFilter { bus: Some("default".into()), limit: 2, ..EventFilter::default() }).await.unwrap();
    assert_eq!(page.len(), 2);
    let next = s
        .list_events(EventFilter {
            bus: Some("default".into()),
            limit: 10,
            before_seq: Some(page[1].seq),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(next.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a2", "a1"]);
    let by_subject = s
        .list_events(EventFilter { subject: Some("ins-a3".into()), limit: 10, ..EventFilter::default() })
        .await
        .unwrap();
    assert_eq!(by_subject.len(), 1);
    let none =
        s.list_events(EventFilter { event_type: Some("x".into()), limit: 10, ..EventFilter::default() }).await.unwrap();
    assert!(none.is_empty());
    let future = s
        .list_events(EventFilter { since_ms: Some(t0 + 3_600_000), limit: 10, ..EventFilter::default() })
        .await
        .unwrap();
    assert!(future.is_empty());

    let range = ReplayRange { bus: "default".into(), from_ms: t0 - 60_000, to_ms: t0 + 60_000 };
    assert_eq!(s.count_events(range.clone()).await.unwrap(), 4);
    let first = s.range_events(range.clone(), 0, 3).await.unwrap();
    assert_eq!(first.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a1", "a2", "a3"], "oldest first");
    let rest = s.range_events(range, first[2].seq, 3).await.unwrap();
    assert_eq!(rest.len(), 1);
    let n = s
        .create_jobs(vec![ReplayJob { seq: first[0].seq, rule: "r1".into(), flow: "f1".into() }], "rp-1", t0)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let t = s.trace("a1").await.unwrap().unwrap();
    assert_eq!(t.runs.len(), 2);
    assert_eq!(t.runs[1].replay.as_deref(), Some("rp-1"));

    // a1 has a pending replay job, a2 an open dead letter: both stay. a3 and a4 finished: gone.
    for j in &jobs {
        s.end_job(*j, JobEnd::Done { undelivered: false }, vec![], t0).await.unwrap();
    }
    s.end_job(jobs[1], JobEnd::Failed { error_type: "APP:X".into(), error: "x".into(), step: None }, vec![], t0)
        .await
        .unwrap();
    assert_eq!(s.sweep("default", t0 - 1, 100).await.unwrap(), 0, "nothing is old enough");
    let later = magpie_core::now_ms() + 1;
    assert_eq!(s.sweep("default", later, 1).await.unwrap(), 1, "small batches");
    assert_eq!(s.sweep("default", later, 100).await.unwrap(), 1);
    assert_eq!(s.sweep("default", later, 100).await.unwrap(), 0);
    let left: Vec<String> = s
        .list_events(EventFilter { bus: Some("default".into()), limit: 10, ..EventFilter::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["a2", "a1"]);
    assert!(s.trace("a3").await.unwrap().is_none());
    assert_eq!(
        s.list_events(EventFilter { bus: Some("other".into()), limit: 10, ..EventFilter::default() })
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Routes one stored alert event of `default` by rule `r1` (flow `f1`), optionally silenced.
async fn route_alert(s: &dyn Store, id: &str, status: &str, at: i64, now: i64, silence: Option<&str>) -> usize {
    let body = json!({"id": id, "source": "m", "type": "Down", "subject": "db1", "status": status});
    let appended = s.append_events("default", vec![NewEvent::new(id, at, body)]).await.unwrap();
    let Appended::Stored(seq) = appended[0] else { panic!("{id} was not stored") };
    let unrouted = s.unrouted_events("default", seq - 1, 10).await.unwrap();
    let alert = unrouted[0].alert.clone().expect("a status 1/0 event is an alert");
    assert_eq!(alert.key, "m/Down/db1");
    let touch = AlertTouch {
        rule: "r1".into(),
        key: alert.key,
        signal: alert.signal,
        at,
        repeat_ms: 60_000,
        flows: vec!["f1".into()],
    };
    let routed = Routed {
        seq,
        matched: vec!["r1".into()],
        jobs: vec![],
        alerts: vec![touch],
        silenced_by: silence.map(str::to_string),
    };
    s.commit_routing(vec![routed], now).await.unwrap()
}

pub async fn alerts_are_deduplicated_paired_and_released_after_a_silence(s: Arc<dyn Store>) {
    use magpie_core::alert::AlertState;
    assert_eq!(route_alert(&*s, "a1", "1", 1_000, 1_000, None).await, 1, "a new alert is told");
    assert_eq!(route_alert(&*s, "a2", "1", 2_000, 30_000, None).await, 0, "within the repeat interval");
    let jobs = s.claim_jobs(30_000, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let view = jobs[0].alert.clone().expect("the job carries the alert");
    assert_eq!((view["notice"].as_str(), view["fired_count"].as_i64()), (Some("firing"), Some(1)));
    let trace = s.trace("a2").await.unwrap().unwrap();
    assert_eq!(trace.alerts[0]["outcome"], "deduplicated");
    assert_eq!(trace.alerts[0]["fired_count"], 2);
    let firing =
        s.alerts(AlertFilter { state: Some(AlertState::Firing), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((firing.len(), firing[0].alert.fired_count), (1, 2));

    // The recovery pairs: it says how long and how many times.
    assert_eq!(route_alert(&*s, "a3", "0", 721_000, 721_000, None).await, 1);
    let jobs = s.claim_jobs(721_000, 60_000, 10).await.unwrap();
    let view = jobs.iter().find(|j| j.event_id == "a3").and_then(|j| j.alert.clone()).unwrap();
    assert_eq!((view["notice"].as_str(), view["duration_s"].as_i64()), (Some("resolved"), Some(720)));
    assert_eq!(view["fired_count"], 2);
    assert!(
        s.alerts(AlertFilter { state: Some(AlertState::Firing), limit: 10, ..Default::default() })
            .await
            .unwrap()
            .is_empty()
    );

    // A silenced firing: no job; released once when its silence ends.
    let silence = Silence {
        id: "s1".into(),
        bus: None,
        pattern: json!({"type": ["Down"]}),
        starts_at: 0,
        ends_at: 900_000,
        comment: "maintenance".into(),
        created_by: "ops".into(),
        created_at: 0,
    };
    s.put_silence(silence).await.unwrap();
    assert_eq!(route_alert(&*s, "a4", "1", 800_000, 800_000, Some("s1")).await, 0);
    assert_eq!(s.trace("a4").await.unwrap().unwrap().silenced_by.as_deref(), Some("s1"));
    assert!(s.ended_silences(850_000).await.unwrap().is_empty());
    assert_eq!(s.expire_silence("s1", 850_000).await.unwrap().unwrap().ends_at, 850_000);
    assert_eq!(s.ended_silences(850_001).await.unwrap(), vec!["s1".to_string()]);
    let quiet = s.silenced_alerts("s1").await.unwrap();
    assert_eq!(quiet.len(), 1);
    assert!(quiet[0].event.as_ref().is_some_and(|(_, body)| body.contains("a4")));
    let made = s.release_silence("s1", vec![(quiet[0].id, Release::Tell(vec!["f1".into()]))], 850_001).await.unwrap();
    assert_eq!(made, 1);
    let jobs = s.claim_jobs(850_001, 60_000, 10).await.unwrap();
    let told = jobs.iter().find(|j| j.event_id == "a4").and_then(|j| j.alert.clone()).unwrap();
    assert_eq!(told["notice"], "silence_ended");
    assert!(s.ended_silences(900_000).await.unwrap().is_empty(), "released once");
    assert!(s.silenced_alerts("s1").await.unwrap().is_empty());
}
