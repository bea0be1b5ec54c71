//! Tokens created through the API and the audit log.

use rusqlite::{Connection, Transaction, params};

use super::{db, parse_json};
use crate::*;

pub(super) fn record(tx: &Transaction<'_>, a: &NewAudit, now: i64) -> Result<()> {
    tx.prepare_cached("INSERT INTO audit (at, who, action, target, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(db)?
        .execute(params![
            now,
            a.who,
            a.action,
            a.target,
            a.before.as_ref().map(|v| v.to_string()),
            a.after.as_ref().map(|v| v.to_string())
        ])
        .map_err(db)?;
    Ok(())
}

pub(super) fn create_token(tx: &Transaction<'_>, t: &TokenRow, audit: &NewAudit, now: i64) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (name) DO NOTHING",
            params![t.name, t.role.as_str(), t.hash, t.created_at, t.created_by],
        )
        .map_err(db)?;
    if n == 1 {
        record(tx, audit, now)?;
    }
    Ok(n == 1)
}

pub(super) fn delete_token(tx: &Transaction<'_>, name: &str, audit: &NewAudit, now: i64) -> Result<bool> {
    let n = tx.execute("DELETE FROM tokens WHERE name = ?1", [name]).map_err(db)?;
    if n == 1 {
        record(tx, audit, now)?;
    }
    Ok(n == 1)
}

pub(super) fn tokens(conn: &mut Connection) -> Result<Vec<TokenRow>> {
    let mut stmt =
        conn.prepare_cached("SELECT name, role, hash, created_at, created_by FROM tokens ORDER BY name").map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .map_err(db)?;
    rows.map(|row| {
        let (name, role, hash, created_at, created_by) = row.map_err(db)?;
        let role = magpie_core::auth::Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("token {name:?} has role {role:?}")))?;
        Ok(TokenRow { name, role, hash, created_at, created_by })
    })
    .collect()
}

pub(super) fn audit(conn: &Connection, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let limit = if f.limit == 0 { 100 } else { f.limit.min(10_000) };
    let target =
        f.target.as_ref().map(|t| format!("{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, at, who, action, target, before, after FROM audit \
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR who = ?2) AND (?3 IS NULL OR target LIKE ?3 ESCAPE '\\') \
             ORDER BY id DESC LIMIT ?4",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![f.before_id, f.who, target, limit as i64], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?),
                (r.get::<_, String>(3)?, r.get::<_, String>(4)?),
                (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?),
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let ((id, at, who), (action, target), (before, after)) = row.map_err(db)?;
        Ok(AuditEntry {
            id,
            at,
            who,
            action,
            target,
            before: before.as_deref().map(parse_json).transpose()?,
            after: after.as_deref().map(parse_json).transpose()?,
        })
    })
    .collect()
}
