//! Flow versions: drafts, publishing, rollback, and jobs that keep their version.

use std::sync::Arc;

use serde_json::{Value, json};

use super::ev;
use crate::*;

fn flow(label: &str) -> Value {
    json!({"name": "f", "steps": [{"logger": {"message": label}}]})
}

async fn head(s: &Arc<dyn Store>) -> Option<FlowHead> {
    s.flow_heads().await.unwrap().into_iter().find(|h| h.name == "f")
}

/// Saving drafts, publishing, rolling back: the live version is what `list_objects` shows and
/// what new jobs record; a job keeps the version it was created on.
pub async fn flows_have_drafts_published_versions_and_jobs_keep_theirs(s: Arc<dyn Store>) {
    let (name, put) = ("f".to_string(), |b: Value| ConfigChange::Put { kind: Kind::Flow, key: "f".into(), body: b });
    let draft = |b: Value| ConfigChange::Draft { name: "f".into(), body: b };

    // A draft alone is no live flow.
    s.apply_config(vec![draft(flow("one"))]).await.unwrap();
    assert_eq!(head(&s).await.map(|h| (h.live, h.draft)), Some((None, Some(1))));
    assert!(s.list_objects(Kind::Flow).await.unwrap().is_empty());
    // Saving the draft again replaces it; publishing makes it live.
    s.apply_config(vec![draft(flow("one'"))]).await.unwrap();
    s.apply_config(vec![ConfigChange::Publish { name: name.clone(), version: 1 }]).await.unwrap();
    assert_eq!(head(&s).await.map(|h| (h.live, h.draft)), Some((Some(1), None)));
    assert_eq!(s.list_objects(Kind::Flow).await.unwrap(), vec![(name.clone(), flow("one'"))]);

    // A job created now runs on version 1.
    let a = s.append_events("default", vec![ev("v1")]).await.unwrap();
    let seq = match a[0] {
        Appended::Stored(q) | Appended::Duplicate(q) => q,
    };
    let routed = Routed {
        seq,
        matched: vec!["r".into()],
        jobs: vec![NewJob { rule: "r".into(), flow: "f".into() }],
        ..Default::default()
    };
    s.commit_routing(vec![routed], 1).await.unwrap();

    // A new draft leaves the live version as it is.
    s.apply_config(vec![draft(flow("two"))]).await.unwrap();
    assert_eq!(head(&s).await.map(|h| (h.live, h.draft)), Some((Some(1), Some(2))));
    assert_eq!(s.get_object(Kind::Flow, "f").await.unwrap(), Some(flow("one'")));
    // A draft edited back to the live version is no draft.
    s.apply_config(vec![draft(flow("one'"))]).await.unwrap();
    assert_eq!(head(&s).await.map(|h| (h.live, h.draft)), Some((Some(1), None)));

    // Put (apply) saves and publishes at once; the same body again changes nothing.
    s.apply_config(vec![put(flow("two"))]).await.unwrap();
    s.apply_config(vec![put(flow("two"))]).await.unwrap();
    let versions = s.flow_versions("f").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| (v.version, v.live, v.draft)).collect::<Vec<_>>(),
        [(1, false, false), (2, true, false)]
    );
    assert!(versions.iter().all(|v| v.published_at.is_some()));

    // The job created before keeps version 1; a job created now gets version 2.
    let a = s.append_events("default", vec![ev("v2")]).await.unwrap();
    let seq2 = match a[0] {
        Appended::Stored(q) | Appended::Duplicate(q) => q,
    };
    let routed = Routed {
        seq: seq2,
        matched: vec!["r".into()],
        jobs: vec![NewJob { rule: "r".into(), flow: "f".into() }],
        ..Default::default()
    };
    s.commit_routing(vec![routed], 2).await.unwrap();
    let mut jobs = s.claim_jobs(magpie_core::now_ms() + 1_000, 30_000, 10).await.unwrap();
    jobs.sort_by_key(|j| j.id);
    assert_eq!(jobs.iter().map(|j| j.flow_version).collect::<Vec<_>>(), [Some(1), Some(2)]);
    let trace = s.trace("v1").await.unwrap().unwrap();
    assert_eq!(trace.runs[0].flow_version, Some(1));

    // Rolling back publishes an earlier version as it was; the later one stays in the history.
    s.apply_config(vec![ConfigChange::Publish { name: name.clone(), version: 1 }]).await.unwrap();
    assert_eq!(s.get_object(Kind::Flow, "f").await.unwrap(), Some(flow("one'")));
    assert_eq!(head(&s).await.map(|h| (h.live, h.draft)), Some((Some(1), None)));
    assert_eq!(s.flow_version("f", 2).await.unwrap().map(|v| v.body), Some(flow("two")));
    assert_eq!(s.flow_version("f", 3).await.unwrap(), None);
    // Publishing a version that does not exist fails and changes nothing.
    assert!(s.apply_config(vec![ConfigChange::Publish { name: name.clone(), version: 9 }]).await.is_err());
    assert_eq!(head(&s).await.map(|h| h.live), Some(Some(1)));

    // Deleting the flow drops it and its draft; its published versions stay for running jobs.
    s.apply_config(vec![draft(flow("three"))]).await.unwrap();
    s.apply_config(vec![ConfigChange::Delete { kind: Kind::Flow, key: name.clone() }]).await.unwrap();
    assert_eq!(head(&s).await, None);
    assert!(s.list_objects(Kind::Flow).await.unwrap().is_empty());
    assert_eq!(s.flow_version("f", 2).await.unwrap().map(|v| v.body), Some(flow("two")));
    assert_eq!(s.flow_version("f", 3).await.unwrap(), None, "the draft went with the flow");
    // Saved again, the flow's numbering goes on.
    s.apply_config(vec![put(flow("four"))]).await.unwrap();
    assert_eq!(head(&s).await.map(|h| h.live), Some(Some(3)));
}
