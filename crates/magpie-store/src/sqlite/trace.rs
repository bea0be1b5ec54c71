//! Journals (what a re-run needs) and traces (everything about an event's runs).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use super::events::{EVENT_COLUMNS, read_event, to_event};
use super::{db, from_json, parse_json};
use crate::*;
use magpie_core::StepStatus;

fn steps(conn: &Connection, job_id: i64) -> Result<Vec<StepRow>> {
    let mut stmt = conn
        .prepare_cached("SELECT ordinal, path, kind, status, detail, at FROM steps WHERE job_id = ?1 ORDER BY ordinal")
        .map_err(db)?;
    let rows = stmt
        .query_map([job_id], |r| {
            Ok((r.get::<_, u32>(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get(5)?))
        })
        .map_err(db)?;
    rows.map(|r| {
        let (ordinal, path, kind, status, detail, at) = r.map_err(db)?;
        let status =
            StepStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("step status {status:?}")))?;
        Ok(StepRow { ordinal, path, kind, status, detail: parse_json(&detail)?, at })
    })
    .collect()
}

fn deliveries(conn: &Connection, job_id: i64) -> Result<Vec<DeliveryRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, ordinal, path, generation, connection, status, digest_id, attempts, error_type, error, enqueued_at, \
             finished_at FROM messages WHERE job_id = ?1 ORDER BY id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([job_id], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, u32>(1)?, r.get::<_, String>(2)?, r.get::<_, u32>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, Option<String>>(6)?, r.get::<_, u32>(7)?),
                (r.get::<_, Option<String>>(8)?, r.get::<_, Option<String>>(9)?, r.get::<_, i64>(10)?, r.get(11)?),
            ))
        })
        .map_err(db)?;
    rows.map(|r| {
        let ((message_id, ordinal, step, generation), (connection, status, digest_id, attempts), rest) =
            r.map_err(db)?;
        let (error_type, error, enqueued_at, finished_at) = rest;
        Ok(DeliveryRow {
            message_id,
            ordinal,
            step,
            generation,
            connection,
            status: MessageStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("message status {status:?}")))?,
            digest_id,
            attempts,
            error_type,
            error,
            enqueued_at,
            finished_at,
        })
    })
    .collect()
}

const ATTEMPT_COLUMNS: &str = "m.ordinal, sm.message_id, s.id, s.folded, s.connection, s.platform, s.url, s.request, \
                               s.status_code, s.response, s.outcome, s.error_type, s.error, s.started_at, s.duration_ms";

fn read_attempts(stmt: &mut rusqlite::CachedStatement<'_>, key: i64) -> Result<Vec<AttemptRow>> {
    let rows = stmt
        .query_map([key], |r| {
            Ok((
                (r.get::<_, u32>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, u32>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                (r.get::<_, Option<u16>>(8)?, r.get::<_, Option<String>>(9)?, r.get::<_, String>(10)?),
                (r.get::<_, Option<String>>(11)?, r.get::<_, Option<String>>(12)?, r.get::<_, i64>(13)?, r.get(14)?),
            ))
        })
        .map_err(db)?;
    let mut nth: HashMap<i64, u32> = HashMap::new();
    rows.map(|r| {
        let ((ordinal, message_id, send_id, folded), (connection, platform, url, request), a, b) = r.map_err(db)?;
        let (status_code, response, outcome) = a;
        let (error_type, error, started_at, duration_ms) = b;
        let n = nth.entry(message_id).or_default();
        *n += 1;
        Ok(AttemptRow {
            ordinal,
            message_id,
            attempt: *n,
            send_id,
            folded,
            connection,
            platform,
            url,
            request: parse_json(&request)?,
            status_code,
            response,
            outcome: SendOutcome::parse(&outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("send outcome {outcome:?}")))?,
            error_type,
            error,
            started_at,
            duration_ms,
        })
    })
    .collect()
}

fn attempts_of_job(conn: &Connection, job_id: i64) -> Result<Vec<AttemptRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM messages m JOIN send_messages sm ON sm.message_id = m.id \
             JOIN sends s ON s.id = sm.send_id WHERE m.job_id = ?1 ORDER BY s.started_at, s.id, m.id"
        ))
        .map_err(db)?;
    read_attempts(&mut stmt, job_id)
}

/// The sends that carried one message, in order.
pub(super) fn attempts_of_message(conn: &Connection, message_id: i64) -> Result<Vec<AttemptRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM messages m JOIN send_messages sm ON sm.message_id = m.id \
             JOIN sends s ON s.id = sm.send_id WHERE m.id = ?1 ORDER BY s.started_at, s.id"
        ))
        .map_err(db)?;
    read_attempts(&mut stmt, message_id)
}

/// What a re-run needs: step records and messages (not the sends' bodies).
pub(super) fn journal(conn: &Connection, job_id: i64) -> Result<Journal> {
    Ok(Journal { steps: steps(conn, job_id)?, deliveries: deliveries(conn, job_id)?, attempts: Vec::new() })
}

pub(super) fn trace(conn: &Connection, event_id: &str) -> Result<Option<Trace>> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {EVENT_COLUMNS}, routed, matched, routing FROM events WHERE id = ?1 ORDER BY seq DESC LIMIT 1"
            ),
            [event_id],
            |r| {
                Ok((
                    read_event(r)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()
        .map_err(db)?;
    let Some((ev, routed, matched, routing)) = row else { return Ok(None) };
    let routing: Value = routing.as_deref().map(parse_json).transpose()?.unwrap_or(Value::Null);
    let silenced_by = routing.get("silenced_by").and_then(Value::as_str).map(str::to_string);
    let alerts = routing.get("alerts").and_then(Value::as_array).cloned().unwrap_or_default();
    let event = to_event(ev)?;
    let rules_matched: Vec<String> = match matched {
        Some(m) => from_json(&m)?,
        None => Vec::new(),
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, rule, flow, status, runs, next_attempt_at, last_error, replay, alert, flow_version FROM jobs \
             WHERE event_seq = ?1 ORDER BY id",
        )
        .map_err(db)?;
    type JobRow = (i64, String, String, String, i64, i64, Option<String>, Option<String>, Option<String>, Option<i64>);
    let jobs: Vec<JobRow> = stmt
        .query_map([event.seq], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    let mut runs = Vec::with_capacity(jobs.len());
    for (job_id, rule, flow, status, n, next, last_error, replay, alert, flow_version) in jobs {
        let alert = alert.as_deref().map(parse_json).transpose()?;
        let status = JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?;
        let journal = Journal {
            steps: steps(conn, job_id)?,
            deliveries: deliveries(conn, job_id)?,
            attempts: attempts_of_job(conn, job_id)?,
        };
        let dead_letters = super::letters::of_job(conn, job_id)?;
        runs.push(JobTrace {
            job_id,
            rule,
            flow,
            flow_version,
            status,
            replay,
            runs: n,
            next_attempt_at: (status == JobStatus::Pending).then_some(next),
            last_error,
            journal,
            dead_letters,
            alert,
        });
    }
    Ok(Some(Trace { event, routed: routed != 0, rules_matched, silenced_by, alerts, runs }))
}
