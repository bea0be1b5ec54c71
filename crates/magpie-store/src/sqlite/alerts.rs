//! Alerts (advanced in the routing transaction) and silences.

use magpie_core::alert::{self, Alert, AlertState, Notice, Outcome, Touch};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

use super::{db, parse_json};
use crate::*;

const ALERT_COLUMNS: &str =
    "key, state, first_fired_at, last_fired_at, fired_count, last_told_at, resolved_at, silenced_by";

fn read_alert(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Alert> {
    let state: String = r.get(at + 1)?;
    Ok(Alert {
        key: r.get(at)?,
        state: AlertState::parse(&state).unwrap_or(AlertState::Resolved),
        first_fired_at: r.get(at + 2)?,
        last_fired_at: r.get(at + 3)?,
        fired_count: r.get(at + 4)?,
        last_told_at: r.get(at + 5)?,
        resolved_at: r.get(at + 6)?,
        silenced_by: r.get(at + 7)?,
    })
}

fn save(tx: &Transaction<'_>, bus: &str, rule: &str, a: &Alert, seq: i64, event_id: &str, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO alerts (bus, rule, key, state, first_fired_at, last_fired_at, fired_count, last_told_at, \
                             resolved_at, silenced_by, event_seq, event_id, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (bus, rule, key) DO UPDATE SET state = excluded.state, first_fired_at = excluded.first_fired_at, \
             last_fired_at = excluded.last_fired_at, fired_count = excluded.fired_count, \
             last_told_at = excluded.last_told_at, resolved_at = excluded.resolved_at, \
             silenced_by = excluded.silenced_by, event_seq = excluded.event_seq, event_id = excluded.event_id, \
             updated_at = excluded.updated_at",
    )
    .map_err(db)?
    .execute(params![
        bus,
        rule,
        a.key,
        a.state.as_str(),
        a.first_fired_at,
        a.last_fired_at,
        a.fired_count,
        a.last_told_at,
        a.resolved_at,
        a.silenced_by,
        seq,
        event_id,
        now
    ])
    .map_err(db)?;
    Ok(())
}

/// Advances the rule's alert with one of its events. Returns the routing note for the trace and,
/// when the flows are to be told, what they see as `msg.vars.alert` (JSON text).
pub(super) fn advance(
    tx: &Transaction<'_>,
    bus: &str,
    event_id: &str,
    seq: i64,
    t: &AlertTouch,
    silence: Option<&str>,
    now: i64,
) -> Result<(Value, Option<String>)> {
    let prev = tx
        .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE bus = ?1 AND rule = ?2 AND key = ?3"))
        .map_err(db)?
        .query_row(params![bus, t.rule, t.key], |r| read_alert(r, 0))
        .optional()
        .map_err(db)?;
    let touch = Touch { signal: t.signal, at: t.at, now, repeat_ms: t.repeat_ms, silence: silence.map(str::to_string) };
    let (a, outcome) = alert::advance(prev, &t.key, &touch);
    save(tx, bus, &t.rule, &a, seq, event_id, now)?;
    let mut note = json!({"rule": t.rule, "key": t.key, "fired_count": a.fired_count});
    let tell = match outcome {
        Outcome::Told(notice) => {
            note["outcome"] = json!("told");
            note["notice"] = json!(notice.as_str());
            Some(a.view(notice).to_string())
        }
        Outcome::Deduplicated => {
            note["outcome"] = json!("deduplicated");
            note["last_told_at"] = json!(a.last_told_at);
            None
        }
        Outcome::Silenced(s) => {
            note["outcome"] = json!("silenced");
            note["silence"] = json!(s);
            None
        }
    };
    Ok((note, tell))
}

pub(super) fn list(conn: &Connection, f: &AlertFilter) -> Result<Vec<AlertRow>> {
    let mut q = super::Query::select(&format!("bus, rule, event_id, updated_at, {ALERT_COLUMNS}"), "alerts");
    if let Some(s) = f.state {
        q.and("state =", s.as_str().to_string());
    }
    if let Some(b) = &f.bus {
        q.and("bus =", b.clone());
    }
    q.rows(conn, "updated_at DESC, id DESC", f.limit, |r| {
        Ok(AlertRow {
            bus: r.get(0)?,
            rule: r.get(1)?,
            last_event_id: r.get(2)?,
            updated_at: r.get(3)?,
            alert: read_alert(r, 4)?,
        })
    })
}

const SILENCE_COLUMNS: &str = "id, bus, pattern, starts_at, ends_at, comment, created_by, created_at";

fn read_silence(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Silence, String)> {
    Ok((
        Silence {
            id: r.get(0)?,
            bus: r.get(1)?,
            pattern: Value::Null,
            starts_at: r.get(3)?,
            ends_at: r.get(4)?,
            comment: r.get(5)?,
            created_by: r.get(6)?,
            created_at: r.get(7)?,
        },
        r.get(2)?,
    ))
}

fn silences_where(conn: &Connection, clause: &str, p: impl rusqlite::Params) -> Result<Vec<Silence>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE {clause} ORDER BY starts_at, id"))
        .map_err(db)?;
    let rows = stmt.query_map(p, read_silence).map_err(db)?;
    rows.map(|r| {
        let (mut s, pattern) = r.map_err(db)?;
        s.pattern = parse_json(&pattern)?;
        Ok(s)
    })
    .collect()
}

pub(super) fn put_silence(tx: &Transaction<'_>, s: &Silence) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO silences ({SILENCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![s.id, s.bus, s.pattern.to_string(), s.starts_at, s.ends_at, s.comment, s.created_by, s.created_at],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn silences(conn: &Connection, ended_since: Option<i64>) -> Result<Vec<Silence>> {
    match ended_since {
        None => silences_where(conn, "1 = 1", []),
        Some(t) => silences_where(conn, "ends_at > ?1", [t]),
    }
}

pub(super) fn silence(conn: &Connection, id: &str) -> Result<Option<Silence>> {
    Ok(silences_where(conn, "id = ?1", [id])?.pop())
}

pub(super) fn expire_silence(tx: &Transaction<'_>, id: &str, now: i64) -> Result<Option<Silence>> {
    tx.execute("UPDATE silences SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2", params![id, now]).map_err(db)?;
    Ok(silences_where(tx, "id = ?1", [id])?.pop())
}

pub(super) fn ended_silences(conn: &Connection, now: i64) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM silences WHERE released = 0 AND ends_at <= ?1 ORDER BY ends_at")
        .map_err(db)?;
    let rows = stmt.query_map([now], |r| r.get(0)).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(super) fn silenced_alerts(conn: &Connection, silence: &str) -> Result<Vec<SilencedAlert>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT a.id, a.bus, a.rule, a.key, e.seq, e.body FROM alerts a LEFT JOIN events e ON e.seq = a.event_seq \
             WHERE a.silenced_by = ?1 AND a.state = 'firing' ORDER BY a.id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([silence], |r| {
            let seq: Option<i64> = r.get(4)?;
            let body: Option<String> = r.get(5)?;
            Ok(SilencedAlert { id: r.get(0)?, bus: r.get(1)?, rule: r.get(2)?, key: r.get(3)?, event: seq.zip(body) })
        })
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(super) fn release_silence(
    tx: &Transaction<'_>,
    silence: &str,
    releases: Vec<(i64, Release)>,
    now: i64,
) -> Result<usize> {
    let mut jobs = 0;
    for (id, release) in releases {
        let row = tx
            .query_row(
                &format!("SELECT event_seq, rule, {ALERT_COLUMNS} FROM alerts WHERE id = ?1 AND silenced_by = ?2"),
                params![id, silence],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, read_alert(r, 2)?)),
            )
            .optional()
            .map_err(db)?;
        // Routing may have moved it on since it was read.
        let Some((seq, rule, mut a)) = row.filter(|(_, _, a)| a.state == AlertState::Firing) else { continue };
        match release {
            Release::Tell(flows) => {
                a.last_told_at = Some(now);
                let view = a.view(Notice::SilenceEnded).to_string();
                for flow in &flows {
                    super::events::insert_job(tx, seq, &rule, flow, None, Some(&view), now)?;
                    jobs += 1;
                }
                tx.execute(
                    "UPDATE alerts SET silenced_by = NULL, last_told_at = ?2, updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )
                .map_err(db)?;
            }
            Release::StillSilenced(other) => {
                tx.execute("UPDATE alerts SET silenced_by = ?2 WHERE id = ?1", params![id, other]).map_err(db)?;
            }
            Release::Drop => {
                tx.execute("UPDATE alerts SET silenced_by = NULL WHERE id = ?1", [id]).map_err(db)?;
            }
        }
    }
    tx.execute("UPDATE silences SET released = 1 WHERE id = ?1", [silence]).map_err(db)?;
    Ok(jobs)
}
