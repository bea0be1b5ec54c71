//! The outboxes: queued messages, leases, claims for a send, answers, digests.

use magpie_core::config::MessageKind;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{db, from_json, parse_json, to_json};
use crate::*;

pub(super) fn kind_str(k: MessageKind) -> &'static str {
    match k {
        MessageKind::Text => "text",
        MessageKind::Markdown => "markdown",
        MessageKind::Post => "post",
    }
}

fn parse_kind(s: &str) -> Result<MessageKind> {
    Ok(match s {
        "text" => MessageKind::Text,
        "markdown" => MessageKind::Markdown,
        "post" => MessageKind::Post,
        other => return Err(StoreError::Corrupt(format!("message kind {other:?}"))),
    })
}

pub(super) fn enqueue(conn: &Transaction<'_>, m: &NewMessage) -> Result<i64> {
    for s in &m.steps {
        super::jobs::record_step(conn, m.job_id, s)?;
    }
    let deadline = m.now_ms.saturating_add(m.policy.max_age.as_millis() as i64);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO messages (job_id, ordinal, generation, path, connection, flow, event_id, event_type, event_status, \
             kind, message, policy, status, attempts, not_before, deadline, enqueued_at, received_at, hops) \
             VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', 0, ?12, ?13, ?12, ?14, \
             COALESCE((SELECT e.hops FROM jobs j JOIN events e ON e.seq = j.event_seq WHERE j.id = ?1), 0)) \
             ON CONFLICT (job_id, ordinal, generation) DO NOTHING RETURNING id",
        )
        .map_err(db)?;
    let id: Option<i64> = insert
        .query_row(
            params![
                m.job_id,
                m.ordinal,
                m.path,
                m.connection,
                m.flow,
                m.event_id,
                m.event_type,
                m.event_status,
                kind_str(m.kind),
                m.message.to_string(),
                to_json(&m.policy),
                m.now_ms,
                deadline,
                m.received_at
            ],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let id = match id {
        Some(id) => id,
        None => conn
            .query_row(
                "SELECT id FROM messages WHERE job_id = ?1 AND ordinal = ?2 ORDER BY generation DESC LIMIT 1",
                params![m.job_id, m.ordinal],
                |r| r.get(0),
            )
            .map_err(db)?,
    };
    // The run waits for its message without holding a worker (unless it is already finished).
    conn.prepare_cached(
        "UPDATE jobs SET status = 'parked', lease_until = NULL, updated_at = ?2 WHERE id = ?1 \
         AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND status IN ('queued', 'sending'))",
    )
    .map_err(db)?
    .execute(params![m.job_id, m.now_ms, id])
    .map_err(db)?;
    Ok(id)
}

/// Puts messages left in a send without an answer back in the queue (of one connection, or all).
pub(super) fn requeue_in_flight(tx: &Transaction<'_>, connection: Option<&str>) -> Result<()> {
    tx.execute(
        "UPDATE sends SET outcome = 'interrupted' WHERE outcome = 'pending' AND (?1 IS NULL OR connection = ?1)",
        [connection],
    )
    .map_err(db)?;
    tx.execute(
        "UPDATE messages SET status = 'queued' WHERE status = 'sending' AND (?1 IS NULL OR connection = ?1)",
        [connection],
    )
    .map_err(db)?;
    Ok(())
}

fn read_state(conn: &Connection, connection: &str) -> Result<OutboxState> {
    let row = conn
        .query_row(
            "SELECT owner, lease_until, limiter, paused_until, pause_reason, sent, folded, digests FROM outboxes \
             WHERE connection = ?1",
            [connection],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            },
        )
        .optional()
        .map_err(db)?;
    let Some((owner, lease_until, limiter, paused_until, pause_reason, sent, folded, digests)) = row else {
        return Ok(OutboxState { connection: connection.to_string(), ..OutboxState::default() });
    };
    Ok(OutboxState {
        connection: connection.to_string(),
        owner,
        lease_until,
        limiter: from_json(&limiter)?,
        paused_until,
        pause_reason,
        sent,
        folded,
        digests,
    })
}

pub(super) fn acquire(
    tx: &Transaction<'_>,
    connection: &str,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<OutboxState>> {
    tx.execute("INSERT INTO outboxes (connection) VALUES (?1) ON CONFLICT (connection) DO NOTHING", [connection])
        .map_err(db)?;
    let state = read_state(tx, connection)?;
    let mine = state.owner.as_deref() == Some(owner);
    let free = state.owner.is_none() || state.lease_until.is_none_or(|t| t < now);
    if !mine && !free {
        return Ok(None);
    }
    if !mine {
        // Whatever the last owner had in flight gets no answer now: send it again (at least once).
        requeue_in_flight(tx, Some(connection))?;
    }
    tx.execute(
        "UPDATE outboxes SET owner = ?2, lease_until = ?3 WHERE connection = ?1",
        params![connection, owner, now + lease_ms],
    )
    .map_err(db)?;
    read_state(tx, connection).map(Some)
}

pub(super) fn release(conn: &Connection, connection: &str, owner: &str) -> Result<()> {
    conn.execute(
        "UPDATE outboxes SET owner = NULL, lease_until = NULL WHERE connection = ?1 AND owner = ?2",
        params![connection, owner],
    )
    .map(|_| ())
    .map_err(db)
}

pub(super) fn queue(conn: &Connection, connection: &str, limit: usize) -> Result<Vec<QueuedMessage>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, job_id, event_id, flow, event_type, event_status, kind, message, policy, attempts, not_before, \
             deadline, enqueued_at, received_at, solo, hops FROM messages WHERE connection = ?1 AND status = 'queued' \
             ORDER BY id LIMIT ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![connection, limit as i64], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?),
                (r.get::<_, String>(7)?, r.get::<_, String>(8)?, r.get::<_, u32>(9)?),
                (r.get::<_, i64>(10)?, r.get::<_, i64>(11)?, r.get::<_, i64>(12)?, r.get::<_, i64>(13)?),
                (r.get::<_, bool>(14)?, r.get::<_, u32>(15)?),
            ))
        })
        .map_err(db)?;
    rows.map(|row| {
        let (
            (id, job_id, event_id, flow),
            (event_type, event_status, kind),
            (message, policy, attempts),
            times,
            (solo, hops),
        ) = row.map_err(db)?;
        let (not_before, deadline, enqueued_at, received_at) = times;
        Ok(QueuedMessage {
            id,
            job_id,
            event_id,
            flow,
            event_type,
            event_status,
            kind: parse_kind(&kind)?,
            message: parse_json(&message)?,
            policy: from_json(&policy)?,
            attempts,
            not_before,
            deadline,
            enqueued_at,
            received_at,
            solo,
            hops,
        })
    })
    .collect()
}

pub(super) fn claim(tx: &Transaction<'_>, claims: &[SendClaim]) -> Result<bool> {
    let Some(last) = claims.last() else { return Ok(true) };
    let owner: Option<Option<String>> = tx
        .query_row("SELECT owner FROM outboxes WHERE connection = ?1", [&last.connection], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if owner.flatten().as_deref() != Some(last.owner.as_str()) {
        return Ok(false);
    }
    for c in claims {
        claim_one(tx, c)?;
    }
    tx.execute(
        "UPDATE outboxes SET limiter = ?2, lease_until = ?3 WHERE connection = ?1",
        params![last.connection, to_json(&last.limiter), last.lease_until],
    )
    .map_err(db)?;
    Ok(true)
}

fn claim_one(tx: &Transaction<'_>, c: &SendClaim) -> Result<()> {
    let folded = c.messages.len() as i64;
    tx.execute(
        "INSERT INTO sends (id, connection, platform, folded, url, request, digest, outcome, started_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
        params![
            c.id,
            c.connection,
            c.platform,
            folded,
            c.url,
            c.request.to_string(),
            c.digest.as_ref().map(|d| d.to_string()),
            c.now_ms
        ],
    )
    .map_err(db)?;
    let mut mark =
        tx.prepare_cached("UPDATE messages SET status = 'sending' WHERE id = ?1 AND status = 'queued'").map_err(db)?;
    let mut link = tx.prepare_cached("INSERT INTO send_messages (send_id, message_id) VALUES (?1, ?2)").map_err(db)?;
    for id in &c.messages {
        mark.execute([id]).map_err(db)?;
        link.execute(params![c.id, id]).map_err(db)?;
    }
    Ok(())
}

/// Fails one message into a dead letter.
fn fail_message(tx: &Transaction<'_>, id: i64, error_type: &str, error: &str, now: i64) -> Result<()> {
    let n = tx
        .prepare_cached(
            "UPDATE messages SET status = 'failed', error_type = ?2, error = ?3, finished_at = ?4 \
             WHERE id = ?1 AND status IN ('queued', 'sending')",
        )
        .map_err(db)?
        .execute(params![id, error_type, error, now])
        .map_err(db)?;
    if n == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO dead_letters (status, job_id, event_seq, event_id, bus, rule, flow, ordinal, step, message_id, \
         connection, error_type, error, caught, created_at, previous) \
         SELECT 'open', j.id, j.event_seq, j.event_id, j.bus, j.rule, j.flow, m.ordinal, m.path, m.id, m.connection, \
                ?2, ?3, 1, ?4, m.redrive_of FROM messages m JOIN jobs j ON j.id = m.job_id WHERE m.id = ?1",
    )
    .map_err(db)?
    .execute(params![id, error_type, error, now])
    .map_err(db)?;
    Ok(())
}

/// Wakes the jobs of finished messages: parked ones run again; a finished run whose redriven
/// message got through is done.
fn wake(tx: &Transaction<'_>, finished: &[i64], now: i64) -> Result<Vec<i64>> {
    let mut woken = Vec::new();
    let mut job_of = tx.prepare_cached("SELECT job_id FROM messages WHERE id = ?1").map_err(db)?;
    let mut unpark = tx
        .prepare_cached(
            "UPDATE jobs SET status = 'pending', next_attempt_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'parked' \
             AND NOT EXISTS (SELECT 1 FROM messages WHERE job_id = ?1 AND status IN ('queued', 'sending'))",
        )
        .map_err(db)?;
    // Done once the newest message of every robot step was delivered and no letter is open.
    let mut settle = tx
        .prepare_cached(
            "UPDATE jobs SET status = 'done', updated_at = ?2 WHERE id = ?1 AND status = 'delivery_failed' \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.job_id = ?1 AND m.status NOT IN ('delivered', 'folded') \
                             AND m.generation = (SELECT MAX(g.generation) FROM messages g WHERE g.job_id = m.job_id \
                                                 AND g.ordinal = m.ordinal)) \
             AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.job_id = ?1 AND d.status = 'open')",
        )
        .map_err(db)?;
    let mut jobs: Vec<i64> =
        finished.iter().map(|m| job_of.query_row([m], |r| r.get(0)).map_err(db)).collect::<Result<_>>()?;
    jobs.sort_unstable();
    jobs.dedup();
    for job in jobs {
        if unpark.execute(params![job, now]).map_err(db)? > 0 {
            woken.push(job);
        } else {
            settle.execute(params![job, now]).map_err(db)?;
        }
    }
    Ok(woken)
}

pub(super) fn complete(tx: &Transaction<'_>, d: &SendCompletion) -> Result<Vec<i64>> {
    tx.execute(
        "UPDATE sends SET outcome = ?2, status_code = ?3, response = ?4, error_type = ?5, error = ?6, duration_ms = ?7 \
         WHERE id = ?1",
        params![d.send_id, d.outcome.as_str(), d.status_code, d.response, d.error_type, d.error, d.duration_ms],
    )
    .map_err(db)?;
    let folded: i64 = tx
        .query_row("SELECT folded FROM sends WHERE id = ?1", [&d.send_id], |r| r.get(0))
        .optional()
        .map_err(db)?
        .unwrap_or(1);
    let mut finished = Vec::new();
    for (id, update) in &d.updates {
        match update {
            MessageUpdate::Delivered => {
                let (status, digest) =
                    if folded > 1 { ("folded", Some(d.send_id.as_str())) } else { ("delivered", None) };
                tx.prepare_cached(
                    "UPDATE messages SET status = ?2, digest_id = ?3, finished_at = ?4 WHERE id = ?1 \
                     AND status IN ('queued', 'sending')",
                )
                .map_err(db)?
                .execute(params![id, status, digest, d.now_ms])
                .map_err(db)?;
                finished.push(*id);
            }
            MessageUpdate::Requeue { not_before, count_attempt, solo } => {
                tx.prepare_cached(
                    "UPDATE messages SET status = 'queued', not_before = ?2, attempts = attempts + ?3, solo = solo OR ?4 \
                     WHERE id = ?1 AND status IN ('queued', 'sending')",
                )
                .map_err(db)?
                .execute(params![id, not_before, i64::from(*count_attempt), solo])
                .map_err(db)?;
            }
            MessageUpdate::Fail { error_type, error } => {
                tx.execute("UPDATE messages SET attempts = attempts + 1 WHERE id = ?1", [id]).map_err(db)?;
                fail_message(tx, *id, error_type, error, d.now_ms)?;
                finished.push(*id);
            }
        }
    }
    if d.outcome == SendOutcome::Delivered {
        let (digests, folded_n) = if folded > 1 { (1, folded) } else { (0, 0) };
        tx.execute(
            "UPDATE outboxes SET sent = sent + 1, digests = digests + ?2, folded = folded + ?3 WHERE connection = ?1",
            params![d.connection, digests, folded_n],
        )
        .map_err(db)?;
    }
    if let Some(l) = &d.limiter {
        tx.execute("UPDATE outboxes SET limiter = ?2 WHERE connection = ?1", params![d.connection, to_json(l)])
            .map_err(db)?;
    }
    if let Some((until, reason)) = &d.pause {
        tx.execute(
            "UPDATE outboxes SET paused_until = ?2, pause_reason = ?3 WHERE connection = ?1",
            params![d.connection, until, reason],
        )
        .map_err(db)?;
    }
    wake(tx, &finished, d.now_ms)
}

pub(super) fn fail(tx: &Transaction<'_>, failed: &[(i64, String, String)], now: i64) -> Result<Vec<i64>> {
    for (id, error_type, error) in failed {
        fail_message(tx, *id, error_type, error, now)?;
    }
    let ids: Vec<i64> = failed.iter().map(|f| f.0).collect();
    wake(tx, &ids, now)
}

pub(super) fn status(conn: &Connection, connection: &str) -> Result<OutboxStatus> {
    let state = read_state(conn, connection)?;
    let (depth, oldest): (i64, Option<i64>) = conn
        .query_row(
            "SELECT COUNT(*), MIN(enqueued_at) FROM messages WHERE connection = ?1 AND status IN ('queued', 'sending')",
            [connection],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    Ok(OutboxStatus { state, depth: depth.max(0) as u64, oldest_enqueued_at: oldest })
}

pub(super) fn connections(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT connection FROM messages WHERE status IN ('queued', 'sending') ORDER BY 1")
        .map_err(db)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(super) fn digest(conn: &Connection, id: &str) -> Result<Option<DigestRow>> {
    let row: Option<(String, i64, Option<String>, String)> = conn
        .query_row(
            "SELECT connection, started_at, digest, request FROM sends WHERE id = ?1 AND folded > 1 AND outcome = 'delivered'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((connection, sent_at, digest, request)) = row else { return Ok(None) };
    let mut stmt = conn
        .prepare_cached(
            "SELECT m.event_id FROM send_messages sm JOIN messages m ON m.id = sm.message_id WHERE sm.send_id = ?1 ORDER BY m.id",
        )
        .map_err(db)?;
    let events = stmt.query_map([id], |r| r.get(0)).map_err(db)?.collect::<rusqlite::Result<_>>().map_err(db)?;
    Ok(Some(DigestRow {
        id: id.to_string(),
        connection,
        sent_at,
        events,
        message: digest.map(|d| parse_json(&d)).transpose()?.unwrap_or(serde_json::Value::Null),
        request: parse_json(&request)?,
    }))
}
