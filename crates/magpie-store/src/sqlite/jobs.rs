//! Jobs: claims with a lease, step records, the end of a run (done, parked, dead-lettered).

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};
use serde_json::Value;

use super::{db, parse_json};
use crate::*;

pub(super) fn claim(tx: &Transaction<'_>, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Job>> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE jobs SET status = 'running', lease_until = ?1 + ?2, runs = runs + 1, updated_at = ?1 \
             WHERE id IN (SELECT id FROM jobs WHERE (status = 'pending' AND next_attempt_at <= ?1) \
                          OR (status = 'running' AND lease_until < ?1) ORDER BY next_attempt_at, id LIMIT ?3) \
             RETURNING id, event_seq, event_id, bus, rule, flow, runs, replay, alert, flow_version",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![now, lease_ms, limit as i64], |r| {
            Ok(Job {
                id: r.get(0)?,
                event_seq: r.get(1)?,
                event_id: r.get(2)?,
                bus: r.get(3)?,
                rule: r.get(4)?,
                flow: r.get(5)?,
                runs: r.get(6)?,
                replay: r.get(7)?,
                alert: r.get::<_, Option<String>>(8)?.and_then(|a| serde_json::from_str(&a).ok()),
                flow_version: r.get(9)?,
                event: Value::Null,
                received_at: 0,
                journal: None,
            })
        })
        .map_err(db)?;
    let mut jobs = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?;
    drop(stmt);
    // The events of the whole batch, in one query.
    let seqs = Value::from(jobs.iter().map(|j| j.event_seq).collect::<Vec<_>>()).to_string();
    let mut bodies = tx
        .prepare_cached("SELECT seq, body, received_at FROM events WHERE seq IN (SELECT value FROM json_each(?1))")
        .map_err(db)?;
    let events: HashMap<i64, (String, i64)> = bodies
        .query_map([seqs], |r| Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    for j in &mut jobs {
        if let Some((text, received_at)) = events.get(&j.event_seq) {
            j.event = parse_json(text)?;
            j.received_at = *received_at;
        }
        // A re-run resumes from its journal: read it in the same transaction.
        if j.runs > 1 {
            j.journal = Some(super::trace::journal(tx, j.id)?);
        }
    }
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

pub(super) fn release_all(tx: &Transaction<'_>, now: i64) -> Result<Released> {
    // A run the last process left running was interrupted by its death; one that was
    // interrupted POISON_AFTER times in a row is what kills the process: dead-letter it.
    let poisoned: Vec<(i64, String)> = tx
        .prepare(
            "UPDATE jobs SET interrupted = interrupted + 1 WHERE status = 'running' \
             RETURNING id, interrupted, flow",
        )
        .map_err(db)?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
        .map_err(db)?
        .filter_map(|r| match r {
            Ok((id, n, flow)) if n >= POISON_AFTER => Some(Ok((id, flow))),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    for (id, _) in &poisoned {
        let error = format!(
            "the process died during this run {POISON_AFTER} times in a row; it is not run again by itself \
             (fix the flow, then redrive the dead letter)"
        );
        end(tx, *id, JobEnd::Failed { error_type: "FLOW:POISON".into(), error, step: None }, now)?;
    }
    let jobs = tx
        .execute("UPDATE jobs SET status = 'pending', lease_until = NULL WHERE status = 'running'", [])
        .map_err(db)?;
    tx.execute("UPDATE outboxes SET owner = NULL, lease_until = NULL", []).map_err(db)?;
    super::outbox::requeue_in_flight(tx, None)?;
    Ok(Released { jobs, poisoned })
}

pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM jobs WHERE status = 'pending' \
         UNION ALL SELECT MIN(lease_until) FROM jobs WHERE status = 'running')",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

pub(super) fn record_step(conn: &Connection, job_id: i64, row: &StepRow) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO steps (job_id, ordinal, path, kind, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (job_id, ordinal) DO NOTHING",
        )
        .map_err(db)?;
    stmt.execute(params![job_id, row.ordinal, row.path, row.kind, row.status.as_str(), row.detail.to_string(), row.at])
        .map(|_| ())
        .map_err(db)
}

fn set_status(
    tx: &Transaction<'_>,
    job_id: i64,
    status: JobStatus,
    next: Option<i64>,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE jobs SET status = ?2, next_attempt_at = COALESCE(?3, next_attempt_at), \
             last_error = COALESCE(?4, last_error), lease_until = NULL, updated_at = ?5, interrupted = 0 \
             WHERE id = ?1",
        )
        .map_err(db)?;
    stmt.execute(params![job_id, status.as_str(), next, error, now]).map(|_| ()).map_err(db)
}

pub(super) fn end(tx: &Transaction<'_>, job_id: i64, end: JobEnd, now: i64) -> Result<()> {
    match end {
        JobEnd::Done { undelivered } => {
            let status = if undelivered { JobStatus::DeliveryFailed } else { JobStatus::Done };
            set_status(tx, job_id, status, None, None, now)
        }
        JobEnd::Retry { at, error } => set_status(tx, job_id, JobStatus::Pending, Some(at), Some(&error), now),
        JobEnd::Parked => {
            // The message may already be finished (a fast robot): then the job is due at once.
            let waiting: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE job_id = ?1 AND status IN ('queued', 'sending'))",
                )
                .map_err(db)?
                .query_row([job_id], |r| r.get(0))
                .map_err(db)?;
            if waiting {
                set_status(tx, job_id, JobStatus::Parked, None, None, now)
            } else {
                set_status(tx, job_id, JobStatus::Pending, Some(now), None, now)
            }
        }
        JobEnd::Failed { error_type, error, step } => {
            let last_error = format!("{error_type}: {error}");
            set_status(tx, job_id, JobStatus::Failed, None, Some(&last_error), now)?;
            // A failed delivery is already a dead letter: it now also stopped the run.
            if let Some((ordinal, _)) = &step {
                let n = tx
                    .execute(
                        "UPDATE dead_letters SET caught = 0 WHERE job_id = ?1 AND ordinal = ?2 AND status = 'open'",
                        params![job_id, ordinal],
                    )
                    .map_err(db)?;
                if n > 0 {
                    return Ok(());
                }
            }
            let (ordinal, path) = step.map_or((None, None), |(o, p)| (Some(o), Some(p)));
            tx.execute(
                "INSERT INTO dead_letters (status, job_id, event_seq, event_id, bus, rule, flow, ordinal, step, \
                 error_type, error, caught, created_at, previous) \
                 SELECT 'open', j.id, j.event_seq, j.event_id, j.bus, j.rule, j.flow, ?2, ?3, ?4, ?5, 0, ?6, \
                        (SELECT MAX(d.id) FROM dead_letters d WHERE d.job_id = j.id AND d.status = 'redriven') \
                 FROM jobs j WHERE j.id = ?1",
                params![job_id, ordinal, path, error_type, error, now],
            )
            .map(|_| ())
            .map_err(db)
        }
    }
}
