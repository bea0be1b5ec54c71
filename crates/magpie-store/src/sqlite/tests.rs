use std::sync::Arc;

use super::*;

crate::store_suite!(conformance, || async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    (Arc::new(store) as Arc<dyn Store>, dir)
});

#[tokio::test]
async fn jobs_and_messages_survive_a_reopen_and_in_flight_sends_are_queued_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let msg_id;
    {
        let s = SqliteStore::open(&path).unwrap();
        s.append_events("default", vec![NewEvent::new("a", 1, serde_json::json!({"id": "a"}))]).await.unwrap();
        let routed = vec![Routed {
            seq: 1,
            matched: vec![],
            jobs: vec![NewJob { rule: "r".into(), flow: "f".into() }],
            ..Default::default()
        }];
        s.commit_routing(routed, 10).await.unwrap();
        let job = s.claim_jobs(10, 60_000, 1).await.unwrap().remove(0);
        msg_id = s
            .enqueue(NewMessage {
                job_id: job.id,
                ordinal: 0,
                path: "steps[0].robot".into(),
                connection: "c".into(),
                flow: "f".into(),
                event_id: "a".into(),
                event_type: "t".into(),
                event_status: None,
                kind: magpie_core::config::MessageKind::Text,
                message: serde_json::json!({"kind": "text", "title": null, "content": "x"}),
                policy: magpie_core::config::RetryPolicy::default(),
                received_at: 10,
                now_ms: 10,
                steps: vec![],
            })
            .await
            .unwrap();
        s.outbox_acquire("c", "node", 10, 30_000).await.unwrap().unwrap();
        let claim = SendClaim {
            id: "s1".into(),
            connection: "c".into(),
            platform: "wecom".into(),
            owner: "node".into(),
            messages: vec![msg_id],
            url: "u".into(),
            request: serde_json::json!({}),
            digest: None,
            limiter: LimiterState::default(),
            now_ms: 10,
            lease_until: 30_010,
        };
        assert!(s.outbox_claim(vec![claim]).await.unwrap());
        // The process dies here, the send unanswered.
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.release_leases(1).await.unwrap().jobs, 0, "the job was parked with its message");
    let q = s.outbox_queue("c", 10).await.unwrap();
    assert_eq!(q.iter().map(|m| m.id).collect::<Vec<_>>(), [msg_id]);
    assert!(s.outbox_acquire("c", "new-node", 20, 30_000).await.unwrap().is_some());
}
