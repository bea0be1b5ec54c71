//! Configuration objects and flow versions.
//!
//! A flow's live version is its `objects` row (body and `version`); every version saved is a row
//! of `flow_versions`, the one not yet published (at most one: the latest) being the draft.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{db, parse_json};
use crate::*;

pub(super) fn apply_config(tx: &Transaction<'_>, changes: Vec<ConfigChange>, now: i64) -> Result<()> {
    for c in changes {
        match c {
            ConfigChange::Put { kind: Kind::Flow, key, body } => {
                let version = save_flow(tx, &key, &body.to_string(), now, true)?;
                if let Some(v) = version {
                    publish(tx, &key, v, now)?;
                }
            }
            ConfigChange::Put { kind, key, body } => {
                tx.execute(
                    "INSERT INTO objects (kind, key, body, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    params![kind.as_str(), key, body.to_string(), now],
                )
                .map_err(db)?;
            }
            ConfigChange::Draft { name, body } => {
                save_flow(tx, &name, &body.to_string(), now, false)?;
            }
            ConfigChange::Publish { name, version } => publish(tx, &name, version, now)?,
            ConfigChange::Audit(a) => super::access::record(tx, &a, now)?,
            ConfigChange::Delete { kind, key } => {
                tx.execute("DELETE FROM objects WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key])
                    .map_err(db)?;
                if kind == Kind::Flow {
                    tx.execute("DELETE FROM flow_versions WHERE name = ?1 AND published_at IS NULL", [&key])
                        .map_err(db)?;
                }
            }
        }
    }
    Ok(())
}

/// Saves `body` as a version of flow `name`: the draft is replaced, or a new version is added.
/// Returns the version to publish when `publishing` (none when `body` is live already). A draft
/// equal to the live version is discarded.
fn save_flow(tx: &Transaction<'_>, name: &str, body: &str, now: i64, publishing: bool) -> Result<Option<i64>> {
    let live: Option<(Option<i64>, String)> = tx
        .query_row("SELECT version, body FROM objects WHERE kind = 'flow' AND key = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db)?;
    let latest: Option<(i64, String, Option<i64>)> = tx
        .query_row(
            "SELECT version, body, published_at FROM flow_versions WHERE name = ?1 ORDER BY version DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    if live.as_ref().is_some_and(|(_, b)| b == body) {
        if !publishing {
            tx.execute("DELETE FROM flow_versions WHERE name = ?1 AND published_at IS NULL", [name]).map_err(db)?;
        }
        return Ok(None);
    }
    let version = match latest {
        Some((v, b, None)) => {
            if b != body {
                tx.execute(
                    "UPDATE flow_versions SET body = ?3, saved_at = ?4 WHERE name = ?1 AND version = ?2",
                    params![name, v, body, now],
                )
                .map_err(db)?;
            }
            v
        }
        // A published version that is not live (rolled back from) is reused when saved again.
        Some((v, b, Some(_))) if b == body => v,
        other => {
            let v = other.map_or(1, |(v, _, _)| v + 1);
            tx.execute(
                "INSERT INTO flow_versions (name, version, body, saved_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, v, body, now],
            )
            .map_err(db)?;
            v
        }
    };
    Ok(Some(version))
}

/// Makes version `version` of flow `name` live.
fn publish(tx: &Transaction<'_>, name: &str, version: i64, now: i64) -> Result<()> {
    let body: Option<String> = tx
        .query_row("SELECT body FROM flow_versions WHERE name = ?1 AND version = ?2", params![name, version], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    let Some(body) = body else {
        return Err(StoreError::Database(format!("flow {name:?} has no version {version}")));
    };
    tx.execute(
        "UPDATE flow_versions SET published_at = COALESCE(published_at, ?3) WHERE name = ?1 AND version = ?2",
        params![name, version, now],
    )
    .map_err(db)?;
    tx.execute(
        "INSERT INTO objects (kind, key, body, updated_at, version) VALUES ('flow', ?1, ?2, ?3, ?4) \
         ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, \
         version = excluded.version",
        params![name, body, now, version],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn get_object(conn: &Connection, kind: Kind, key: &str) -> Result<Option<Value>> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM objects WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key], |r| r.get(0))
        .optional()
        .map_err(db)?;
    body.map(|b| parse_json(&b)).transpose()
}

pub(super) fn list_objects(conn: &Connection, kind: Kind) -> Result<Vec<(String, Value)>> {
    let mut stmt = conn.prepare_cached("SELECT key, body FROM objects WHERE kind = ?1 ORDER BY key").map_err(db)?;
    let rows = stmt.query_map([kind.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(db)?;
    rows.map(|r| {
        let (k, b) = r.map_err(db)?;
        Ok((k, parse_json(&b)?))
    })
    .collect()
}

pub(super) fn flow_heads(conn: &mut Connection) -> Result<Vec<FlowHead>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT n.name, o.version, \
                    (SELECT MAX(version) FROM flow_versions d WHERE d.name = n.name AND d.published_at IS NULL), \
                    MAX(COALESCE(o.updated_at, 0), (SELECT MAX(saved_at) FROM flow_versions s WHERE s.name = n.name)) \
             FROM (SELECT DISTINCT name FROM flow_versions) n \
             LEFT JOIN objects o ON o.kind = 'flow' AND o.key = n.name ORDER BY n.name",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok(FlowHead { name: r.get(0)?, live: r.get(1)?, draft: r.get(2)?, updated_at: r.get(3)? }))
        .map_err(db)?;
    let heads: Vec<FlowHead> = rows.collect::<rusqlite::Result<_>>().map_err(db)?;
    // A deleted flow keeps its published versions (for jobs still on them) but is no flow.
    Ok(heads.into_iter().filter(|h| h.live.is_some() || h.draft.is_some()).collect())
}

pub(super) fn flow_versions(conn: &mut Connection, name: &str, only: Option<i64>) -> Result<Vec<FlowVersion>> {
    let live: Option<i64> = conn
        .query_row("SELECT version FROM objects WHERE kind = 'flow' AND key = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(db)?
        .flatten();
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, body, saved_at, published_at FROM flow_versions \
             WHERE name = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY version",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![name, only], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (version, body, saved_at, published_at) = row.map_err(db)?;
        out.push(FlowVersion {
            name: name.to_string(),
            version,
            body: parse_json(&body)?,
            saved_at,
            published_at,
            live: live == Some(version),
            draft: published_at.is_none(),
        });
    }
    Ok(out)
}
