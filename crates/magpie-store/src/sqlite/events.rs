//! The event log, routing, the archive (listing, replays) and the
//! retention sweep.

use rusqlite::{Connection, Transaction, params};
use serde_json::Value;

use super::{db, parse_json, to_json};
use crate::*;
use magpie_core::alert::{EventAlert, Signal};

/// The columns `read_event` reads, in order.
pub(super) const EVENT_COLUMNS: &str = "seq, bus, id, body, received_at";

type EventRow = (i64, String, String, String, i64);

pub(super) fn read_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

pub(super) fn to_event((seq, bus, id, body, received_at): EventRow) -> Result<StoredEvent> {
    Ok(StoredEvent { seq, bus, id, body: parse_json(&body)?, received_at })
}

fn text<'a>(body: &'a Value, k: &str) -> Option<&'a str> {
    body.get(k).and_then(Value::as_str)
}

pub(super) fn append_routed(
    tx: &Transaction<'_>,
    bus: &str,
    event: NewEvent,
    rule: &str,
    flow: &str,
    now: i64,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO events (bus, id, body, time_ms, received_at, routed, matched, type, subject, dotted, hops) \
         VALUES (?1, ?2, ?3, ?4, ?5, 1, '[]', ?6, ?7, ?8, ?9)",
        params![
            bus,
            event.id,
            event.json,
            event.time_ms,
            now,
            text(&event.body, "type"),
            text(&event.body, "subject"),
            event.dotted,
            event.hops
        ],
    )
    .map_err(db)?;
    let seq = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, next_attempt_at, created_at, updated_at, flow_version) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6, (SELECT version FROM objects WHERE kind = 'flow' AND key = ?5))",
        params![seq, event.id, bus, rule, flow, now],
    )
    .map_err(db)?;
    Ok(seq)
}

pub(super) fn unrouted(conn: &Connection, bus: &str, after: i64, limit: usize) -> Result<Vec<UnroutedEvent>> {
    // The partial index `events_unrouted` holds exactly these rows.
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, id, body, dotted, time_ms, alert_status, alert_key FROM events \
             WHERE bus = ?1 AND routed = 0 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![bus, after, limit as i64], |r| {
            let status: Option<String> = r.get(5)?;
            let key: Option<String> = r.get(6)?;
            let alert = match (status.as_deref().and_then(Signal::of_status), key) {
                (Some(signal), Some(key)) => Some(EventAlert { signal, key }),
                _ => None,
            };
            Ok(UnroutedEvent {
                seq: r.get(0)?,
                id: r.get(1)?,
                body: r.get(2)?,
                dotted: r.get(3)?,
                time_ms: r.get(4)?,
                alert,
            })
        })
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(super) fn commit_routing(tx: &Transaction<'_>, routed: Vec<Routed>, now: i64) -> Result<usize> {
    let mut jobs = 0;
    let mut mark =
        tx.prepare_cached("UPDATE events SET routed = 1, matched = ?2, routing = ?3 WHERE seq = ?1").map_err(db)?;
    for r in routed {
        let mut notes = Vec::new();
        if !r.alerts.is_empty() {
            let (bus, id): (String, String) = tx
                .query_row("SELECT bus, id FROM events WHERE seq = ?1", [r.seq], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(db)?;
            for t in &r.alerts {
                let (note, tell) = super::alerts::advance(tx, &bus, &id, r.seq, t, r.silenced_by.as_deref(), now)?;
                notes.push(note);
                if let Some(view) = tell {
                    for flow in &t.flows {
                        insert_job(tx, r.seq, &t.rule, flow, None, Some(&view), now)?;
                        jobs += 1;
                    }
                }
            }
        }
        let routing = match (&r.silenced_by, notes.is_empty()) {
            (None, true) => None,
            (s, _) => Some(serde_json::json!({"silenced_by": s, "alerts": notes}).to_string()),
        };
        mark.execute(params![r.seq, to_json(&r.matched), routing]).map_err(db)?;
        for j in r.jobs {
            insert_job(tx, r.seq, &j.rule, &j.flow, None, None, now)?;
            jobs += 1;
        }
    }
    Ok(jobs)
}

pub(super) fn insert_job(
    tx: &Transaction<'_>,
    seq: i64,
    rule: &str,
    flow: &str,
    replay: Option<&str>,
    alert: Option<&str>,
    now: i64,
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, next_attempt_at, created_at, updated_at, replay, alert, flow_version) \
             SELECT seq, id, bus, ?2, ?3, 'pending', ?4, ?4, ?4, ?5, ?6, \
                    (SELECT version FROM objects WHERE kind = 'flow' AND key = ?3) FROM events WHERE seq = ?1",
        )
        .map_err(db)?;
    stmt.execute(params![seq, rule, flow, now, replay, alert]).map_err(db)?;
    Ok(())
}

pub(super) fn list(conn: &Connection, f: &EventFilter) -> Result<Vec<StoredEvent>> {
    let mut q = super::Query::select(EVENT_COLUMNS, "events");
    if let Some(b) = &f.bus {
        q.and("bus =", b.clone());
    }
    if let Some(t) = f.since_ms {
        q.and("received_at >=", t);
    }
    if let Some(t) = f.until_ms {
        q.and("received_at <", t);
    }
    if let Some(t) = &f.event_type {
        q.and("type =", t.clone());
    }
    if let Some(s) = &f.subject {
        q.and("subject =", s.clone());
    }
    if let Some(s) = f.before_seq {
        q.and("seq <", s);
    }
    q.rows(conn, "seq DESC", f.limit, read_event)?.into_iter().map(to_event).collect()
}

pub(super) fn range(conn: &Connection, r: &ReplayRange, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE bus = ?1 AND received_at >= ?2 AND received_at < ?3 AND seq > ?4 \
             ORDER BY seq LIMIT ?5"
        ))
        .map_err(db)?;
    let rows = stmt.query_map(params![r.bus, r.from_ms, r.to_ms, after_seq, limit as i64], read_event).map_err(db)?;
    rows.map(|r| to_event(r.map_err(db)?)).collect()
}

pub(super) fn count(conn: &Connection, r: &ReplayRange) -> Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM events WHERE bus = ?1 AND received_at >= ?2 AND received_at < ?3",
        params![r.bus, r.from_ms, r.to_ms],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
    .map_err(db)
}

pub(super) fn create_jobs(tx: &Transaction<'_>, jobs: Vec<ReplayJob>, replay: &str, now: i64) -> Result<usize> {
    for j in &jobs {
        insert_job(tx, j.seq, &j.rule, &j.flow, Some(replay), None, now)?;
    }
    Ok(jobs.len())
}

/// Removes old events whose work is over: routed, every job final, no open dead letter.
pub(super) fn sweep(tx: &Transaction<'_>, bus: &str, before_ms: i64, limit: usize) -> Result<usize> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT e.seq FROM events e WHERE e.bus = ?1 AND e.received_at < ?2 AND e.routed = 1 \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_seq = e.seq AND j.status IN ('pending', 'running', 'parked')) \
             AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_seq = e.seq AND d.status = 'open') \
             ORDER BY e.seq LIMIT ?3",
        )
        .map_err(db)?;
    let seqs: Vec<i64> = stmt
        .query_map(params![bus, before_ms, limit as i64], |r| r.get(0))
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    drop(stmt);
    for seq in &seqs {
        // Sends that carried only this event's messages go with them; a digest shared with
        // newer events stays, with the messages it carried (so it still lists every event).
        tx.execute(
            "DELETE FROM sends WHERE id IN (SELECT sm.send_id FROM send_messages sm JOIN messages m ON m.id = sm.message_id \
             JOIN jobs j ON j.id = m.job_id WHERE j.event_seq = ?1) \
             AND NOT EXISTS (SELECT 1 FROM send_messages o JOIN messages om ON om.id = o.message_id \
                             JOIN jobs oj ON oj.id = om.job_id WHERE o.send_id = sends.id AND oj.event_seq != ?1)",
            [seq],
        )
        .map_err(db)?;
        tx.execute(
            "DELETE FROM send_messages WHERE message_id IN (SELECT m.id FROM messages m JOIN jobs j ON j.id = m.job_id \
             WHERE j.event_seq = ?1) AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.id = send_messages.send_id)",
            [seq],
        )
        .map_err(db)?;
        tx.execute(
            "DELETE FROM messages WHERE job_id IN (SELECT id FROM jobs WHERE event_seq = ?1) \
             AND NOT EXISTS (SELECT 1 FROM send_messages sm WHERE sm.message_id = messages.id)",
            [seq],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM steps WHERE job_id IN (SELECT id FROM jobs WHERE event_seq = ?1)", [seq])
            .map_err(db)?;
        tx.execute("DELETE FROM dead_letters WHERE event_seq = ?1", [seq]).map_err(db)?;
        tx.execute("DELETE FROM jobs WHERE event_seq = ?1", [seq]).map_err(db)?;
        tx.execute("DELETE FROM events WHERE seq = ?1", [seq]).map_err(db)?;
    }
    Ok(seqs.len())
}
