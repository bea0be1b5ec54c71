//! The embedded SQLite backend.
//!
//! One thread owns the connection and runs every request in turn, so transactions never contend
//! for SQLite's single writer lock. WAL mode. Event appends commit with `synchronous=FULL`: an
//! acknowledged event is on disk, and appends waiting together share one commit (group commit).
//! Everything else (routing, job state, step records, messages, sends) commits with
//! `synchronous=NORMAL`: durable across a process crash; a power loss may drop the last of these
//! commits, which at worst repeats a routing or a send — at-least-once delivery allows that, and
//! the FULL commit of the next append makes all earlier commits durable too.
//!
//! One module per concern: `events` (log, archive, sweep), `jobs`, `outbox`, `letters` (dead
//! letters), `trace`; `schema` holds the migrations.

mod access;
mod alerts;
mod config;
mod events;
mod jobs;
mod letters;
mod outbox;
mod schema;
#[cfg(test)]
mod tests;
mod trace;

use std::path::Path;
use std::sync::mpsc;

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, params};
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
    /// Held for the store's life: one process per database.
    _lock: std::fs::File,
}

/// Takes the lock beside the database (`magpie.lock`), so that a second server on the same data
/// directory refuses to start instead of sharing the database with the first.
/// Open options that create a file readable by its owner only (0600): the database holds the
/// configuration's secrets and every event.
fn private_file() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Creates `dir` (and its parents) if missing; a directory this creates is its owner's only (0700).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn lock(path: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let lock_path = path.with_extension("lock");
    let mut f = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StoreError::Database(format!("opening {}: {e}", lock_path.display())))?;
    match f.try_lock() {
        Ok(()) => {
            let _ = f.set_len(0);
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = write!(f, "{}", std::process::id());
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default();
            let by = if pid.trim().is_empty() { String::new() } else { format!(" (pid {})", pid.trim()) };
            Err(StoreError::Database(format!(
                "the data directory {dir:?} is in use by another Magpie{by}: stop it, or give this server its own --data-dir"
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Database(format!("locking {}: {e}", lock_path.display())))
        }
    }
}

pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).map_err(|e| StoreError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let lock = lock(path)?;
        // A new database file is created 0600; SQLite gives its -wal and -shm files the same mode.
        if !path.exists() {
            private_file()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", path.display())))?;
        }
        let mut conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        schema::migrate(&mut conn)?;
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
        Ok(SqliteStore { tx, _lock: lock })
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
                    "INSERT INTO events (bus, id, body, time_ms, received_at, type, subject, dotted, alert_status, alert_key, hops) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (bus, id) DO NOTHING",
                )
                .map_err(db)?;
            let mut find = tx.prepare_cached("SELECT seq FROM events WHERE bus = ?1 AND id = ?2").map_err(db)?;
            for (bus, events, _) in group {
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    let text = |k: &str| e.body.get(k).and_then(Value::as_str);
                    let alert = magpie_core::alert::EventAlert::of(&e.body);
                    let (status, key) = alert.map(|a| (a.signal.status(), a.key)).unzip();
                    let n = insert
                        .execute(params![
                            bus,
                            e.id,
                            &e.json,
                            e.time_ms,
                            now,
                            text("type"),
                            text("subject"),
                            e.dotted,
                            status,
                            key,
                            e.hops
                        ])
                        .map_err(db)?;
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

#[async_trait]
impl Store for SqliteStore {
    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<()> {
        self.tx(move |tx| config::apply_config(tx, changes, magpie_core::now_ms())).await
    }

    async fn get_object(&self, kind: Kind, key: &str) -> Result<Option<Value>> {
        let key = key.to_string();
        self.call(move |conn| config::get_object(conn, kind, &key)).await
    }

    async fn list_objects(&self, kind: Kind) -> Result<Vec<(String, Value)>> {
        self.call(move |conn| config::list_objects(conn, kind)).await
    }

    async fn flow_heads(&self) -> Result<Vec<FlowHead>> {
        self.call(config::flow_heads).await
    }

    async fn flow_versions(&self, name: &str) -> Result<Vec<FlowVersion>> {
        let name = name.to_string();
        self.call(move |conn| config::flow_versions(conn, &name, None)).await
    }

    async fn flow_version(&self, name: &str, version: i64) -> Result<Option<FlowVersion>> {
        let name = name.to_string();
        self.call(move |conn| Ok(config::flow_versions(conn, &name, Some(version))?.pop())).await
    }

    async fn append_events(&self, bus: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(Request::Append { bus: bus.to_string(), events, reply }).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    async fn append_routed(&self, bus: &str, event: NewEvent, rule: &str, flow: &str) -> Result<i64> {
        let (bus, rule, flow) = (bus.to_string(), rule.to_string(), flow.to_string());
        self.tx(move |tx| events::append_routed(tx, &bus, event, &rule, &flow, magpie_core::now_ms())).await
    }

    async fn unrouted_events(&self, bus: &str, after_seq: i64, limit: usize) -> Result<Vec<UnroutedEvent>> {
        let bus = bus.to_string();
        self.call(move |conn| events::unrouted(conn, &bus, after_seq, limit)).await
    }

    async fn commit_routing(&self, routed: Vec<Routed>, now_ms: i64) -> Result<usize> {
        self.tx(move |tx| events::commit_routing(tx, routed, now_ms)).await
    }

    async fn list_events(&self, filter: EventFilter) -> Result<Vec<StoredEvent>> {
        self.call(move |conn| events::list(conn, &filter)).await
    }

    async fn range_events(&self, range: ReplayRange, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.call(move |conn| events::range(conn, &range, after_seq, limit)).await
    }

    async fn count_events(&self, range: ReplayRange) -> Result<u64> {
        self.call(move |conn| events::count(conn, &range)).await
    }

    async fn create_jobs(&self, jobs: Vec<ReplayJob>, replay: &str, now_ms: i64) -> Result<usize> {
        let replay = replay.to_string();
        self.tx(move |tx| events::create_jobs(tx, jobs, &replay, now_ms)).await
    }

    async fn sweep(&self, bus: &str, before_ms: i64, limit: usize) -> Result<usize> {
        let bus = bus.to_string();
        self.tx(move |tx| events::sweep(tx, &bus, before_ms, limit)).await
    }

    async fn claim_jobs(&self, now_ms: i64, lease_ms: i64, limit: usize) -> Result<Vec<Job>> {
        self.tx(move |tx| jobs::claim(tx, now_ms, lease_ms, limit)).await
    }

    async fn release_leases(&self, now_ms: i64) -> Result<Released> {
        self.tx(move |tx| jobs::release_all(tx, now_ms)).await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.call(|conn| jobs::next_due(conn)).await
    }

    async fn record_step(&self, job_id: i64, row: StepRow) -> Result<()> {
        self.call(move |conn| jobs::record_step(conn, job_id, &row)).await
    }

    async fn journal(&self, job_id: i64) -> Result<Journal> {
        self.call(move |conn| trace::journal(conn, job_id)).await
    }

    async fn end_job(&self, job_id: i64, end: JobEnd, steps: Vec<StepRow>, now_ms: i64) -> Result<()> {
        self.tx(move |tx| {
            for s in &steps {
                jobs::record_step(tx, job_id, s)?;
            }
            jobs::end(tx, job_id, end, now_ms)
        })
        .await
    }

    async fn enqueue(&self, msg: NewMessage) -> Result<i64> {
        self.tx(move |tx| outbox::enqueue(tx, &msg)).await
    }

    async fn outbox_acquire(
        &self,
        connection: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<OutboxState>> {
        let (connection, owner) = (connection.to_string(), owner.to_string());
        self.tx(move |tx| outbox::acquire(tx, &connection, &owner, now_ms, lease_ms)).await
    }

    async fn outbox_release(&self, connection: &str, owner: &str) -> Result<()> {
        let (connection, owner) = (connection.to_string(), owner.to_string());
        self.call(move |conn| outbox::release(conn, &connection, &owner)).await
    }

    async fn outbox_queue(&self, connection: &str, limit: usize) -> Result<Vec<QueuedMessage>> {
        let connection = connection.to_string();
        self.call(move |conn| outbox::queue(conn, &connection, limit)).await
    }

    async fn outbox_claim(&self, claims: Vec<SendClaim>) -> Result<bool> {
        self.tx(move |tx| outbox::claim(tx, &claims)).await
    }

    async fn outbox_complete(&self, done: Vec<SendCompletion>) -> Result<Vec<i64>> {
        self.tx(move |tx| {
            let mut woken = Vec::new();
            for d in &done {
                woken.extend(outbox::complete(tx, d)?);
            }
            Ok(woken)
        })
        .await
    }

    async fn outbox_fail(&self, failed: Vec<(i64, String, String)>, now_ms: i64) -> Result<Vec<i64>> {
        self.tx(move |tx| outbox::fail(tx, &failed, now_ms)).await
    }

    async fn outbox_status(&self, connection: &str) -> Result<OutboxStatus> {
        let connection = connection.to_string();
        self.call(move |conn| outbox::status(conn, &connection)).await
    }

    async fn outbox_connections(&self) -> Result<Vec<String>> {
        self.call(|conn| outbox::connections(conn)).await
    }

    async fn digest(&self, id: &str) -> Result<Option<DigestRow>> {
        let id = id.to_string();
        self.call(move |conn| outbox::digest(conn, &id)).await
    }

    async fn dead_letters(&self, filter: LetterFilter) -> Result<Vec<DeadLetter>> {
        self.call(move |conn| letters::list(conn, &filter)).await
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterDetail>> {
        self.call(move |conn| letters::detail(conn, id)).await
    }

    async fn redrive(&self, ids: Vec<i64>, now_ms: i64) -> Result<Vec<Redriven>> {
        self.tx(move |tx| letters::redrive(tx, &ids, now_ms)).await
    }

    async fn alerts(&self, filter: AlertFilter) -> Result<Vec<AlertRow>> {
        self.call(move |conn| alerts::list(conn, &filter)).await
    }

    async fn put_silence(&self, silence: Silence) -> Result<()> {
        self.tx(move |tx| alerts::put_silence(tx, &silence)).await
    }

    async fn silences(&self, ended_since: Option<i64>) -> Result<Vec<Silence>> {
        self.call(move |conn| alerts::silences(conn, ended_since)).await
    }

    async fn silence(&self, id: &str) -> Result<Option<Silence>> {
        let id = id.to_string();
        self.call(move |conn| alerts::silence(conn, &id)).await
    }

    async fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Option<Silence>> {
        let id = id.to_string();
        self.tx(move |tx| alerts::expire_silence(tx, &id, now_ms)).await
    }

    async fn ended_silences(&self, now_ms: i64) -> Result<Vec<String>> {
        self.call(move |conn| alerts::ended_silences(conn, now_ms)).await
    }

    async fn silenced_alerts(&self, silence: &str) -> Result<Vec<SilencedAlert>> {
        let id = silence.to_string();
        self.call(move |conn| alerts::silenced_alerts(conn, &id)).await
    }

    async fn release_silence(&self, silence: &str, releases: Vec<(i64, Release)>, now_ms: i64) -> Result<usize> {
        let id = silence.to_string();
        self.tx(move |tx| alerts::release_silence(tx, &id, releases, now_ms)).await
    }

    async fn create_token(&self, token: TokenRow, audit: NewAudit) -> Result<bool> {
        self.tx(move |tx| access::create_token(tx, &token, &audit, magpie_core::now_ms())).await
    }

    async fn delete_token(&self, name: &str, audit: NewAudit) -> Result<bool> {
        let name = name.to_string();
        self.tx(move |tx| access::delete_token(tx, &name, &audit, magpie_core::now_ms())).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.call(access::tokens).await
    }

    async fn record_audit(&self, entries: Vec<NewAudit>) -> Result<()> {
        self.tx(move |tx| {
            let now = magpie_core::now_ms();
            entries.iter().try_for_each(|a| access::record(tx, a, now))
        })
        .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>> {
        self.call(move |conn| access::audit(conn, &filter)).await
    }

    async fn trace(&self, event_id: &str) -> Result<Option<Trace>> {
        let event_id = event_id.to_string();
        self.call(move |conn| trace::trace(conn, &event_id)).await
    }
}

/// A `SELECT … WHERE` built from optional conditions, with numbered parameters.
pub(crate) struct Query {
    sql: String,
    args: Vec<rusqlite::types::Value>,
}

impl Query {
    /// Starts `SELECT {columns} FROM {table} WHERE 1 = 1`.
    pub(crate) fn select(columns: &str, table: &str) -> Query {
        Query { sql: format!("SELECT {columns} FROM {table} WHERE 1 = 1"), args: Vec::new() }
    }

    /// Adds ` AND {condition} ?n` with `value` as parameter n.
    pub(crate) fn and(&mut self, condition: &str, value: impl Into<rusqlite::types::Value>) -> &mut Query {
        self.args.push(value.into());
        self.sql.push_str(&format!(" AND {condition} ?{}", self.args.len()));
        self
    }

    /// Adds the ordering and the limit, and runs the query.
    pub(crate) fn rows<T>(
        mut self,
        conn: &Connection,
        order: &str,
        limit: usize,
        read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.args.push((limit.max(1) as i64).into());
        self.sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", self.args.len()));
        let mut stmt = conn.prepare(&self.sql).map_err(db)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(self.args), read).map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }
}

/// Reads a JSON column.
pub(crate) fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads a JSON column into a type.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A JSON column's text.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
