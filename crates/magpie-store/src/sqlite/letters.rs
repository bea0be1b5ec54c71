//! Dead letters: listing, detail with history, redrive.

use magpie_core::config::RetryPolicy;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::events::{EVENT_COLUMNS, read_event, to_event};
use super::{db, from_json};
use crate::*;

const COLUMNS: &str = "id, status, job_id, event_id, bus, rule, flow, ordinal, step, message_id, connection, error_type, \
                       error, caught, created_at, redriven_at, previous";

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    let status: String = r.get(1)?;
    Ok(DeadLetter {
        id: r.get(0)?,
        status: if status == "open" { LetterStatus::Open } else { LetterStatus::Redriven },
        job_id: r.get(2)?,
        event_id: r.get(3)?,
        bus: r.get(4)?,
        rule: r.get(5)?,
        flow: r.get(6)?,
        ordinal: r.get(7)?,
        step: r.get(8)?,
        message_id: r.get(9)?,
        connection: r.get(10)?,
        error_type: r.get(11)?,
        error: r.get(12)?,
        caught: r.get(13)?,
        created_at: r.get(14)?,
        redriven_at: r.get(15)?,
        previous: r.get(16)?,
    })
}

pub(super) fn list(conn: &Connection, f: &LetterFilter) -> Result<Vec<DeadLetter>> {
    let mut q = super::Query::select(COLUMNS, "dead_letters");
    if !f.include_redriven {
        q.and("status =", "open".to_string());
    }
    if let Some(x) = &f.flow {
        q.and("flow =", x.clone());
    }
    if let Some(x) = &f.connection {
        q.and("connection =", x.clone());
    }
    match &f.error_type {
        Some(x) if x.contains(':') => {
            q.and("error_type =", x.clone());
        }
        Some(x) => {
            q.and("substr(error_type, instr(error_type, ':') + 1) =", x.clone());
        }
        None => {}
    }
    if let Some(t) = f.since_ms {
        q.and("created_at >=", t);
    }
    if let Some(b) = f.before_id {
        q.and("id <", b);
    }
    q.rows(conn, "id DESC", f.limit, read)
}

/// Every letter of one run, oldest first.
pub(super) fn of_job(conn: &Connection, job_id: i64) -> Result<Vec<DeadLetter>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM dead_letters WHERE job_id = ?1 ORDER BY id"))
        .map_err(db)?;
    let rows = stmt.query_map([job_id], read).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

fn letter(conn: &Connection, id: i64) -> Result<Option<DeadLetter>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?1"), [id], read).optional().map_err(db)
}

pub(super) fn detail(conn: &Connection, id: i64) -> Result<Option<DeadLetterDetail>> {
    let Some(first) = letter(conn, id)? else { return Ok(None) };
    let event_seq: i64 =
        conn.query_row("SELECT event_seq FROM dead_letters WHERE id = ?1", [id], |r| r.get(0)).map_err(db)?;
    let event = conn
        .query_row(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"), [event_seq], read_event)
        .optional()
        .map_err(db)?
        .map(to_event)
        .transpose()?;
    let attempts_of = |l: &DeadLetter| -> Result<Vec<AttemptRow>> {
        match l.message_id {
            Some(m) => super::trace::attempts_of_message(conn, m),
            None => Ok(Vec::new()),
        }
    };
    // The letters this one came back from, newest first (bounded: a loop in the data cannot hang).
    let mut history = Vec::new();
    let mut prev = first.previous;
    while let Some(p) = prev {
        if history.len() >= 100 {
            break;
        }
        let Some(l) = letter(conn, p)? else { break };
        prev = l.previous;
        let attempts = attempts_of(&l)?;
        history.push(DeadLetterDetail { letter: l, event: None, attempts, history: Vec::new() });
    }
    let attempts = attempts_of(&first)?;
    Ok(Some(DeadLetterDetail { letter: first, event, attempts, history }))
}

struct OldMessage {
    job_id: i64,
    ordinal: u32,
    connection: String,
    policy: String,
}

pub(super) fn redrive(tx: &Transaction<'_>, ids: &[i64], now: i64) -> Result<Vec<Redriven>> {
    let mut out = Vec::new();
    for &id in ids {
        let Some(l) = letter(tx, id)? else { continue };
        if l.status != LetterStatus::Open {
            continue;
        }
        tx.execute("UPDATE dead_letters SET status = 'redriven', redriven_at = ?2 WHERE id = ?1", params![id, now])
            .map_err(db)?;
        if !l.caught {
            // The run stopped at this step: it resumes there. The records of the steps that
            // failed go, so they are written again; everything done stays done.
            tx.execute("DELETE FROM steps WHERE job_id = ?1 AND status = 'error'", [l.job_id]).map_err(db)?;
        }
        let mut new_message = None;
        if let Some(mid) = l.message_id {
            let old = tx
                .query_row("SELECT job_id, ordinal, connection, policy FROM messages WHERE id = ?1", [mid], |r| {
                    Ok(OldMessage { job_id: r.get(0)?, ordinal: r.get(1)?, connection: r.get(2)?, policy: r.get(3)? })
                })
                .optional()
                .map_err(db)?;
            if let Some(old) = old {
                let policy: RetryPolicy = from_json(&old.policy).unwrap_or_default();
                let deadline = now.saturating_add(policy.max_age.as_millis() as i64);
                tx.execute(
                    "INSERT INTO messages (job_id, ordinal, generation, path, connection, flow, event_id, event_type, \
                     event_status, kind, message, policy, status, attempts, not_before, deadline, enqueued_at, received_at, \
                     redrive_of) \
                     SELECT job_id, ordinal, (SELECT MAX(generation) + 1 FROM messages WHERE job_id = ?2 AND ordinal = ?3), \
                            path, connection, flow, event_id, event_type, event_status, kind, message, policy, 'queued', 0, \
                            ?4, ?5, ?4, received_at, ?6 FROM messages WHERE id = ?1",
                    params![mid, old.job_id, old.ordinal, now, deadline, id],
                )
                .map_err(db)?;
                new_message = Some((tx.last_insert_rowid(), old.connection));
                if !l.caught {
                    tx.execute(
                        "UPDATE jobs SET status = 'parked', lease_until = NULL, updated_at = ?2 WHERE id = ?1",
                        params![l.job_id, now],
                    )
                    .map_err(db)?;
                }
            }
        } else {
            tx.execute(
                "UPDATE jobs SET status = 'pending', next_attempt_at = ?2, lease_until = NULL, updated_at = ?2 WHERE id = ?1",
                params![l.job_id, now],
            )
            .map_err(db)?;
        }
        out.push(Redriven {
            id,
            job_id: l.job_id,
            message_id: new_message.as_ref().map(|m| m.0),
            connection: new_message.map(|m| m.1),
        });
    }
    Ok(out)
}
