//! Tokens and the audit log.

use std::sync::Arc;

use magpie_core::auth::Role;
use serde_json::json;

use crate::*;

fn entry(who: &str, action: &str, target: &str) -> NewAudit {
    NewAudit {
        who: who.into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: Some(json!({"n": 1})),
    }
}

/// Tokens are unique by name, listed without loss, removed once; every change is audited in
/// the same transaction, and configuration changes carry their own entries.
pub async fn tokens_and_every_change_are_in_the_audit_log(store: Arc<dyn Store>) {
    let t = |name: &str, role| TokenRow {
        name: name.into(),
        role,
        hash: format!("sha256:{name}"),
        created_at: 5,
        created_by: "root".into(),
    };
    assert!(store.create_token(t("am", Role::Ingest), entry("root", "create", "token am")).await.unwrap());
    assert!(!store.create_token(t("am", Role::Admin), entry("root", "create", "token am")).await.unwrap());
    assert!(store.create_token(t("oncall", Role::Viewer), entry("root", "create", "token oncall")).await.unwrap());
    let tokens = store.tokens().await.unwrap();
    assert_eq!(
        tokens.iter().map(|t| (t.name.as_str(), t.role)).collect::<Vec<_>>(),
        [("am", Role::Ingest), ("oncall", Role::Viewer)]
    );
    assert_eq!(tokens[0].hash, "sha256:am");
    assert!(store.delete_token("am", entry("root", "delete", "token am")).await.unwrap());
    assert!(!store.delete_token("am", entry("root", "delete", "token am")).await.unwrap());
    store
        .apply_config(vec![
            ConfigChange::Put { kind: Kind::Bus, key: "b".into(), body: json!({"name": "b"}) },
            ConfigChange::Audit(entry("ops", "put", "bus b")),
        ])
        .await
        .unwrap();
    store
        .record_audit(vec![entry("ops", "redrive", "dead-letters 1"), entry("ops", "replay", "replay r1")])
        .await
        .unwrap();
    let all = store.audit(AuditFilter::default()).await.unwrap();
    let seen: Vec<(&str, &str)> = all.iter().map(|e| (e.who.as_str(), e.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("ops", "replay r1"),
            ("ops", "dead-letters 1"),
            ("ops", "bus b"),
            ("root", "token am"),
            ("root", "token oncall"),
            ("root", "token am"),
        ],
        "newest first; refused changes leave no entry"
    );
    assert_eq!(all[2].after, Some(json!({"n": 1})));
    assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at));
    let by_who = store.audit(AuditFilter { who: Some("root".into()), ..Default::default() }).await.unwrap();
    assert_eq!(by_who.len(), 3);
    let tokens_only =
        store.audit(AuditFilter { target: Some("token".into()), limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(tokens_only.len(), 2);
    let older = store.audit(AuditFilter { before_id: Some(all[1].id), ..Default::default() }).await.unwrap();
    assert_eq!(older.len(), 4);
    let odd = store.audit(AuditFilter { target: Some("%".into()), ..Default::default() }).await.unwrap();
    assert!(odd.is_empty(), "a target filter is a prefix, not a pattern");
}
