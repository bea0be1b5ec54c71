//! The embedded SQLite backend.
//!
//! One thread owns the connection and runs every request in turn, so transactions never contend
//! for SQLite's single writer lock. WAL mode. Event appends commit with `synchronous=FULL`: an
//! acknowledged event is on disk, and appends waiting together share one commit (group commit).
//! Everything else (routing, job state, step records, attempts) commits with `synchronous=NORMAL`:
//! durable across a process crash; a power loss may drop the last of these commits, which at worst
//! repeats a routing or a send — at-least-once delivery allows that, and the FULL commit of the
//! next append makes all earlier commits durable too.

use std::path::Path;
use std::sync::mpsc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::*;

/// Work for the database thread.
enum Request {
    /// Any transaction.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Appends of events: those waiting together are committed in one transaction (group commit).
    Append { bus: String, events: Vec<NewEvent>, reply: oneshot::Sender<Result<Vec<Appended>>> },
}

/// Most appends committed together.
const GROUP_COMMIT_MAX: usize = 512;

/// The SQLite store.
pub struct SqliteStore {
    tx: mpsc::Sender<Request>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bus TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    routed INTEGER NOT NULL DEFAULT 0,
    matched TEXT,
    UNIQUE (bus, id)
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (id);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    bus TEXT NOT NULL,
    rule TEXT NOT NULL,
    flow TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_by_event ON jobs (event_seq);
CREATE TABLE IF NOT EXISTS steps (
    job_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    connection TEXT NOT NULL,
    platform TEXT NOT NULL,
    url TEXT NOT NULL,
    request TEXT NOT NULL,
    status_code INTEGER,
    response TEXT,
    outcome TEXT NOT NULL,
    error_type TEXT,
    error TEXT,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job_id);
"#;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("magpie-sqlite".into())
            .spawn(move || {
                let mut next: Option<Request> = None;
                loop {
                    let req = match next.take() {
                        Some(r) => r,
                        None => match rx.recv() {
                            Ok(r) => r,
                            Err(_) => break,
                        },
                    };
                    match req {
                        Request::Run(f) => f(&mut conn),
                        Request::Append { bus, events, reply } => {
                            // Take every append already waiting, so one commit (one fsync) serves them all.
                            let mut group = vec![(bus, events, reply)];
                            while group.len() < GROUP_COMMIT_MAX {
                                match rx.try_recv() {
                                    Ok(Request::Append { bus, events, reply }) => group.push((bus, events, reply)),
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            append_group(&mut conn, group);
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Database(format!("starting the database thread: {e}")))?;
        Ok(SqliteStore { tx })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request::Run(Box::new(move |conn| {
                let _ = done.send(f(conn));
            })))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    async fn tx<T: Send + 'static>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static) -> Result<T> {
        self.call(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }
}

type AppendGroup = Vec<(String, Vec<NewEvent>, oneshot::Sender<Result<Vec<Appended>>>)>;

/// Commits a group of appends in one transaction and answers each; if the commit fails, every
/// caller gets the error (nothing was stored).
fn append_group(conn: &mut Connection, group: AppendGroup) {
    let now = magpie_core::now_ms();
    // Acknowledged events must be on disk: this commit waits for the fsync.
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        let msg = e.to_string();
        for (_, _, reply) in group {
            let _ = reply.send(Err(StoreError::Database(msg.clone())));
        }
        return;
    }
    let run = |conn: &mut Connection, group: &AppendGroup| -> Result<Vec<Vec<Appended>>> {
        let tx = conn.transaction().map_err(db)?;
        let mut all = Vec::with_capacity(group.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (bus, id, body, time_ms, received_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (bus, id) DO NOTHING",
                )
                .map_err(db)?;
            let mut find = tx.prepare_cached("SELECT seq FROM events WHERE bus = ?1 AND id = ?2").map_err(db)?;
            for (bus, events, _) in group {
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    let n = insert.execute(params![bus, e.id, e.body.to_string(), e.time_ms, now]).map_err(db)?;
                    if n == 1 {
                        out.push(Appended::Stored(tx.last_insert_rowid()));
                    } else {
                        let seq: i64 = find.query_row(params![bus, e.id], |r| r.get(0)).map_err(db)?;
                        out.push(Appended::Duplicate(seq));
                    }
                }
                all.push(out);
            }
        }
        tx.commit().map_err(db)?;
        Ok(all)
    };
    let result = run(conn, &group);
    let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    match result {
        Ok(all) => {
            for ((_, _, reply), out) in group.into_iter().zip(all) {
                let _ = reply.send(Ok(out));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (_, _, reply) in group {
                let _ = reply.send(Err(StoreError::Database(msg.clone())));
            }
        }
    }
}

fn read_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn to_event((seq, bus, id, body, received_at): (i64, String, String, String, i64)) -> Result<StoredEvent> {
    Ok(StoredEvent { seq, bus, id, body: parse_json(&body)?, received_at })
}

fn journal_of(conn: &Connection, job_id: i64) -> Result<Journal> {
    let mut stmt = conn
        .prepare_cached("SELECT ordinal, path, kind, status, detail, at FROM steps WHERE job_id = ?1 ORDER BY ordinal")
        .map_err(db)?;
    let steps = stmt
        .query_map([job_id], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db)?
        .map(|r| {
            let (ordinal, path, kind, status, detail, at) = r.map_err(db)?;
            Ok(StepRow { ordinal, path, kind, status, detail: parse_json(&detail)?, at })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT ordinal, attempt, connection, platform, url, request, status_code, response, outcome, error_type, error, \
             started_at, duration_ms FROM attempts WHERE job_id = ?1 ORDER BY id",
        )
        .map_err(db)?;
    let attempts = stmt
        .query_map([job_id], |r| {
            Ok(AttemptRow {
                ordinal: r.get(0)?,
                attempt: r.get(1)?,
                connection: r.get(2)?,
                platform: r.get(3)?,
                url: r.get(4)?,
                request: Value::String(r.get::<_, String>(5)?),
                status_code: r.get(6)?,
                response: r.get(7)?,
                outcome: r.get(8)?,
                error_type: r.get(9)?,
                error: r.get(10)?,
                started_at: r.get(11)?,
                duration_ms: r.get(12)?,
            })
        })
        .map_err(db)?
        .map(|r| {
            let mut a = r.map_err(db)?;
            if let Value::String(s) = &a.request {
                a.request = parse_json(s)?;
            }
            Ok(a)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Journal { steps, attempts })
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<()> {
        let now = magpie_core::now_ms();
        self.tx(move |tx| {
            for c in changes {
                match c {
                    ConfigChange::Put { kind, key, body } => {
                        tx.execute(
                            "INSERT INTO objects (kind, key, body, updated_at) VALUES (?1, ?2, ?3, ?4) \
                             ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                            params![kind.as_str(), key, body.to_string(), now],
                        )
                        .map_err(db)?;
                    }
                    ConfigChange::Delete { kind, key } => {
                        tx.execute("DELETE FROM objects WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key]).map_err(db)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn get_object(&self, kind: Kind, key: &str) -> Result<Option<Value>> {
        let key = key.to_string();
        self.call(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM objects WHERE kind = ?1 AND key = ?2", params![kind.as_str(), key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            body.map(|b| parse_json(&b)).transpose()
        })
        .await
    }

    async fn list_objects(&self, kind: Kind) -> Result<Vec<(String, Value)>> {
        self.call(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key, body FROM objects WHERE kind = ?1 ORDER BY key").map_err(db)?;
            let rows = stmt
                .query_map([kind.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?;
            rows.map(|r| {
                let (k, b) = r.map_err(db)?;
                Ok((k, parse_json(&b)?))
            })
            .collect()
        })
        .await
    }

    async fn append_events(&self, bus: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(Request::Append { bus: bus.to_string(), events, reply }).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    async fn append_routed(&self, bus: &str, event: NewEvent, rule: &str, flow: &str) -> Result<i64> {
        let (bus, rule, flow) = (bus.to_string(), rule.to_string(), flow.to_string());
        let now = magpie_core::now_ms();
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO events (bus, id, body, time_ms, received_at, routed, matched) VALUES (?1, ?2, ?3, ?4, ?5, 1, '[]')",
                params![bus, event.id, event.body.to_string(), event.time_ms, now],
            )
            .map_err(db)?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, next_attempt_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6)",
                params![seq, event.id, bus, rule, flow, now],
            )
            .map_err(db)?;
            Ok(seq)
        })
        .await
    }

    async fn unrouted_events(&self, limit: usize) -> Result<Vec<StoredEvent>> {
        self.call(move |conn| {
            let cursor: i64 = conn
                .query_row("SELECT seq FROM cursors WHERE name = 'router'", [], |r| r.get(0))
                .optional()
                .map_err(db)?
                .unwrap_or(0);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, bus, id, body, received_at FROM events WHERE seq > ?1 AND routed = 0 ORDER BY seq LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt.query_map(params![cursor, limit as i64], read_event).map_err(db)?;
            rows.map(|r| to_event(r.map_err(db)?)).collect()
        })
        .await
    }

    async fn commit_routing(&self, routed: Vec<Routed>, now_ms: i64) -> Result<usize> {
        self.tx(move |tx| {
            let mut jobs = 0;
            let mut last = None;
            for r in routed {
                tx.execute(
                    "UPDATE events SET routed = 1, matched = ?2 WHERE seq = ?1",
                    params![r.seq, serde_json::to_string(&r.matched).unwrap_or_default()],
                )
                .map_err(db)?;
                for j in r.jobs {
                    tx.execute(
                        "INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, next_attempt_at, created_at, updated_at) \
                         SELECT seq, id, bus, ?2, ?3, 'pending', ?4, ?4, ?4 FROM events WHERE seq = ?1",
                        params![r.seq, j.rule, j.flow, now_ms],
                    )
                    .map_err(db)?;
                    jobs += 1;
                }
                last = Some(r.seq);
            }
            if let Some(seq) = last {
                tx.execute(
                    "INSERT INTO cursors (name, seq) VALUES ('router', ?1) ON CONFLICT (name) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    [seq],
                )
                .map_err(db)?;
            }
            Ok(jobs)
        })
        .await
    }

    async fn claim_jobs(&self, now_ms: i64, lease_ms: i64, limit: usize) -> Result<Vec<Job>> {
        self.tx(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE jobs SET status = 'running', lease_until = ?1 + ?2, runs = runs + 1, updated_at = ?1 \
                     WHERE id IN (SELECT id FROM jobs WHERE (status = 'pending' AND next_attempt_at <= ?1) \
                                  OR (status = 'running' AND lease_until < ?1) ORDER BY next_attempt_at, id LIMIT ?3) \
                     RETURNING id, event_seq, event_id, bus, rule, flow, runs",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![now_ms, lease_ms, limit as i64], |r| {
                    Ok(Job {
                        id: r.get(0)?,
                        event_seq: r.get(1)?,
                        event_id: r.get(2)?,
                        bus: r.get(3)?,
                        rule: r.get(4)?,
                        flow: r.get(5)?,
                        runs: r.get(6)?,
                        event: Value::Null,
                    })
                })
                .map_err(db)?;
            let mut jobs = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?;
            drop(stmt);
            let mut body = tx.prepare_cached("SELECT body FROM events WHERE seq = ?1").map_err(db)?;
            for j in &mut jobs {
                let text: Option<String> = body.query_row([j.event_seq], |r| r.get(0)).optional().map_err(db)?;
                j.event = match text {
                    Some(t) => parse_json(&t)?,
                    None => Value::Null,
                };
            }
            jobs.sort_by_key(|j| j.id);
            Ok(jobs)
        })
        .await
    }

    async fn release_leases(&self) -> Result<usize> {
        self.call(|conn| {
            conn.execute("UPDATE jobs SET status = 'pending', lease_until = NULL WHERE status = 'running'", [])
                .map_err(db)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.call(|conn| {
            conn.query_row(
                "SELECT MIN(t) FROM (SELECT MIN(next_attempt_at) AS t FROM jobs WHERE status = 'pending' \
                 UNION ALL SELECT MIN(lease_until) FROM jobs WHERE status = 'running')",
                [],
                |r| r.get(0),
            )
            .map_err(db)
        })
        .await
    }

    async fn record_step(&self, job_id: i64, row: StepRow) -> Result<()> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO steps (job_id, ordinal, path, kind, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (job_id, ordinal) DO NOTHING",
                params![job_id, row.ordinal, row.path, row.kind, row.status, row.detail.to_string(), row.at],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn record_attempt(&self, job_id: i64, a: AttemptRow) -> Result<()> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO attempts (job_id, ordinal, attempt, connection, platform, url, request, status_code, response, \
                 outcome, error_type, error, started_at, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    job_id,
                    a.ordinal,
                    a.attempt,
                    a.connection,
                    a.platform,
                    a.url,
                    a.request.to_string(),
                    a.status_code,
                    a.response,
                    a.outcome,
                    a.error_type,
                    a.error,
                    a.started_at,
                    a.duration_ms
                ],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn journal(&self, job_id: i64) -> Result<Journal> {
        self.call(move |conn| journal_of(conn, job_id)).await
    }

    async fn end_job(&self, job_id: i64, end: JobEnd, now_ms: i64) -> Result<()> {
        self.call(move |conn| {
            let (status, next, error) = match end {
                JobEnd::Done => ("done", None, None),
                JobEnd::Failed { error } => ("failed", None, Some(error)),
                JobEnd::Retry { at, error } => ("pending", Some(at), Some(error)),
            };
            conn.execute(
                "UPDATE jobs SET status = ?2, next_attempt_at = COALESCE(?3, next_attempt_at), last_error = COALESCE(?4, last_error), \
                 lease_until = NULL, updated_at = ?5 WHERE id = ?1",
                params![job_id, status, next, error, now_ms],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn trace(&self, event_id: &str) -> Result<Option<Trace>> {
        let event_id = event_id.to_string();
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT seq, bus, id, body, received_at, routed, matched FROM events WHERE id = ?1 ORDER BY seq DESC LIMIT 1",
                    [&event_id],
                    |r| Ok((read_event(r)?, r.get::<_, i64>(5)?, r.get::<_, Option<String>>(6)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((ev, routed, matched)) = row else { return Ok(None) };
            let event = to_event(ev)?;
            let rules_matched: Vec<String> = match matched {
                Some(m) => serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                None => Vec::new(),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, rule, flow, status, runs, next_attempt_at, last_error FROM jobs WHERE event_seq = ?1 ORDER BY id",
                )
                .map_err(db)?;
            let jobs = stmt
                .query_map([event.seq], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?, r.get::<_, Option<String>>(6)?))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            let mut runs = Vec::with_capacity(jobs.len());
            for (job_id, rule, flow, status, n, next, last_error) in jobs {
                let pending = status == "pending";
                runs.push(JobTrace {
                    job_id,
                    rule,
                    flow,
                    status,
                    runs: n,
                    next_attempt_at: pending.then_some(next),
                    last_error,
                    journal: journal_of(conn, job_id)?,
                });
            }
            Ok(Some(Trace { event, routed: routed != 0, rules_matched, runs }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str) -> NewEvent {
        NewEvent { id: id.into(), time_ms: 1, body: json!({"id": id, "source": "s"}) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_grouped_without_losing_or_doubling() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = s.clone();
            // Requests 0 and 1 carry the same id: one is stored, the other is a duplicate.
            let id = if i < 2 { "same".to_string() } else { format!("e{i}") };
            tasks.push(tokio::spawn(async move { s.append_events("default", vec![ev(&id)]).await.unwrap() }));
        }
        let mut seqs = Vec::new();
        let (mut stored, mut dups) = (0, 0);
        for t in tasks {
            match t.await.unwrap()[..] {
                [Appended::Stored(seq)] => {
                    stored += 1;
                    seqs.push(seq)
                }
                [Appended::Duplicate(_)] => dups += 1,
                ref other => panic!("{other:?}"),
            }
        }
        assert_eq!((stored, dups), (199, 1));
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 199, "distinct sequence numbers");
        assert_eq!(s.unrouted_events(1000).await.unwrap().len(), 199);
    }

    #[tokio::test]
    async fn events_route_into_jobs_that_are_claimed_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            let r = s.append_events("default", vec![ev("a"), ev("b"), ev("a")]).await.unwrap();
            assert!(matches!(r[..], [Appended::Stored(1), Appended::Stored(2), Appended::Duplicate(1)]), "{r:?}");
            let r = s.append_events("default", vec![ev("a")]).await.unwrap();
            assert_eq!(r, [Appended::Duplicate(1)], "idempotent across calls");
            let events = s.unrouted_events(10).await.unwrap();
            assert_eq!(events.len(), 2);
            let routed = vec![
                Routed {
                    seq: 1,
                    matched: vec!["r1".into()],
                    jobs: vec![NewJob { rule: "r1".into(), flow: "f1".into() }],
                },
                Routed { seq: 2, matched: vec![], jobs: vec![] },
            ];
            assert_eq!(s.commit_routing(routed, 100).await.unwrap(), 1);
            assert!(s.unrouted_events(10).await.unwrap().is_empty(), "the cursor moved");
            let jobs = s.claim_jobs(100, 30_000, 10).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert!(s.claim_jobs(101, 30_000, 10).await.unwrap().is_empty(), "leased");
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.release_leases().await.unwrap(), 1);
        let jobs = s.claim_jobs(200, 30_000, 10).await.unwrap();
        assert_eq!(jobs[0].runs, 2);
        s.end_job(jobs[0].id, JobEnd::Retry { at: 5_000, error: "x".into() }, 200).await.unwrap();
        assert_eq!(s.next_due().await.unwrap(), Some(5_000));
        assert!(s.claim_jobs(4_999, 30_000, 10).await.unwrap().is_empty());
        let jobs = s.claim_jobs(5_000, 30_000, 10).await.unwrap();
        s.record_step(
            jobs[0].id,
            StepRow {
                ordinal: 0,
                path: "steps[0]".into(),
                kind: "logger".into(),
                status: "ok".into(),
                detail: json!({}),
                at: 1,
            },
        )
        .await
        .unwrap();
        s.end_job(jobs[0].id, JobEnd::Done, 5_001).await.unwrap();
        let t = s.trace("a").await.unwrap().unwrap();
        assert_eq!(t.rules_matched, ["r1"]);
        assert_eq!(t.runs[0].status, "done");
        assert_eq!(t.runs[0].journal.steps.len(), 1);
        assert!(s.trace("zzz").await.unwrap().is_none());
    }
}
