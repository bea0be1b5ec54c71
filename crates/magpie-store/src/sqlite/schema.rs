//! The SQLite schema and its migrations (`PRAGMA user_version`).
//!
//! Version 1 is the first release's schema (delivery attempts per job, no outbox); version 2 adds
//! the outbox (messages, sends, outboxes), dead letters, replays and the archive's indexes. A
//! version-1 database is migrated in place: delivered sends become delivered messages (so a job
//! that runs again does not send them again), attempts become sends, failed jobs dead letters.
//! Version 3 counts, per job, the runs in a row that a process death interrupted (`POISON`), and
//! indexes the events each bus has yet to route (each bus routes on its own; the `cursors` table
//! is no longer read). Version 4 records whether an event has a dotted key (`"a.b": 1`), so the
//! router may stop reading an event early only when it has none (a dotted key further on could
//! name a field a rule looks at). Version 5 adds the alert lifecycle: each event's alert status
//! and default key (`events.alert_status`, `events.alert_key`), what routing did with it
//! (`events.routing`: silenced, deduplicated…), the alert a job tells (`jobs.alert`), and the
//! `alerts` and `silences` tables. Events stored before it are not alerts. Version 6 versions
//! flows: every saved flow is a row of `flow_versions` (a draft until published), the live one's
//! number is `objects.version`, and each job records the version it runs (`jobs.flow_version`);
//! flows stored before it become their version 1, published. Version 7 adds the tokens created
//! through the API, the audit log, and each event's and message's hop count (`hops`: how many
//! times it has come back through a Magpie, to stop loops).

use rusqlite::{Connection, OptionalExtension};

use super::db;
use crate::Result;

/// The schema version this code writes.
pub const VERSION: i64 = 7;

/// The current schema, for a new database.
const SCHEMA: &str = r#"
CREATE TABLE objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bus TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    routed INTEGER NOT NULL DEFAULT 0,
    matched TEXT,
    type TEXT,
    subject TEXT,
    UNIQUE (bus, id)
);
CREATE INDEX events_by_id ON events (id);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE jobs (
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
    updated_at INTEGER NOT NULL,
    replay TEXT
);
CREATE INDEX jobs_due ON jobs (status, next_attempt_at);
CREATE INDEX jobs_by_event ON jobs (event_seq);
CREATE TABLE steps (
    job_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
"#;

/// What version 2 adds to version 1.
const V2: &str = r#"
CREATE INDEX events_by_bus_time ON events (bus, received_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    path TEXT NOT NULL,
    connection TEXT NOT NULL,
    flow TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_status TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    solo INTEGER NOT NULL DEFAULT 0,
    digest_id TEXT,
    redrive_of INTEGER,
    error_type TEXT,
    error TEXT,
    enqueued_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (job_id, ordinal, generation)
);
CREATE INDEX messages_queue ON messages (connection, status, id);
CREATE TABLE sends (
    id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    platform TEXT NOT NULL,
    folded INTEGER NOT NULL,
    url TEXT NOT NULL,
    request TEXT NOT NULL,
    digest TEXT,
    status_code INTEGER,
    response TEXT,
    outcome TEXT NOT NULL,
    error_type TEXT,
    error TEXT,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE send_messages (
    send_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (message_id, send_id)
);
CREATE INDEX send_messages_by_send ON send_messages (send_id);
CREATE TABLE outboxes (
    connection TEXT PRIMARY KEY,
    owner TEXT,
    lease_until INTEGER,
    limiter TEXT NOT NULL DEFAULT '{}',
    paused_until INTEGER,
    pause_reason TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    folded INTEGER NOT NULL DEFAULT 0,
    digests INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    bus TEXT NOT NULL,
    rule TEXT NOT NULL,
    flow TEXT NOT NULL,
    ordinal INTEGER,
    step TEXT,
    message_id INTEGER,
    connection TEXT,
    error_type TEXT NOT NULL,
    error TEXT NOT NULL,
    caught INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    redriven_at INTEGER,
    previous INTEGER
);
CREATE INDEX dead_letters_open ON dead_letters (status, id);
CREATE INDEX dead_letters_by_job ON dead_letters (job_id);
CREATE INDEX dead_letters_by_event ON dead_letters (event_seq);
"#;

/// What version 3 adds to version 2.
const V3: &str = r#"
ALTER TABLE jobs ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_unrouted ON events (bus, seq) WHERE routed = 0;
"#;

/// What version 4 adds to version 3. Events stored before it may have dotted keys.
const V4: &str = r#"
ALTER TABLE events ADD COLUMN dotted INTEGER NOT NULL DEFAULT 1;
"#;

/// What version 5 adds to version 4.
const V5: &str = r#"
ALTER TABLE events ADD COLUMN alert_status TEXT;
ALTER TABLE events ADD COLUMN alert_key TEXT;
ALTER TABLE events ADD COLUMN routing TEXT;
ALTER TABLE jobs ADD COLUMN alert TEXT;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bus TEXT NOT NULL,
    rule TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    first_fired_at INTEGER,
    last_fired_at INTEGER,
    fired_count INTEGER NOT NULL,
    last_told_at INTEGER,
    resolved_at INTEGER,
    silenced_by TEXT,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (bus, rule, key)
);
CREATE INDEX alerts_by_state ON alerts (state, updated_at);
CREATE INDEX alerts_silenced ON alerts (silenced_by) WHERE silenced_by IS NOT NULL;
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    bus TEXT,
    pattern TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0
);
"#;

/// What version 6 adds to version 5 (flows already stored become their published version 1).
const V6: &str = r#"
ALTER TABLE objects ADD COLUMN version INTEGER;
ALTER TABLE jobs ADD COLUMN flow_version INTEGER;
CREATE TABLE flow_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    published_at INTEGER,
    PRIMARY KEY (name, version)
);
INSERT INTO flow_versions (name, version, body, saved_at, published_at)
    SELECT key, 1, body, updated_at, updated_at FROM objects WHERE kind = 'flow';
UPDATE objects SET version = 1 WHERE kind = 'flow';
"#;

/// What version 7 adds to version 6: tokens created through the API, the audit log, and how many
/// times an event has been through Magpie (`hops`, to stop loops).
const V7: &str = r#"
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_by_who ON audit (who, id);
ALTER TABLE events ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
"#;

/// Moves a version-1 database's data to version 2 (after [`V2`] created the new tables).
const V1_TO_V2: &str = r#"
ALTER TABLE events ADD COLUMN type TEXT;
ALTER TABLE events ADD COLUMN subject TEXT;
UPDATE events SET type = json_extract(body, '$.type'), subject = json_extract(body, '$.subject')
    WHERE json_valid(body);
ALTER TABLE jobs ADD COLUMN replay TEXT;
-- A delivered send stays delivered: a run that resumes must not send it again.
INSERT INTO messages (job_id, ordinal, generation, path, connection, flow, event_id, event_type, kind, message,
                      policy, status, attempts, not_before, deadline, enqueued_at, received_at, finished_at)
    SELECT a.job_id, a.ordinal, 0, '', a.connection, j.flow, j.event_id, '', 'markdown',
           '{"kind":"markdown","title":null,"content":""}', '{}', 'delivered', 0, 0, 0,
           MIN(a.started_at), MIN(a.started_at), MAX(a.started_at)
    FROM attempts a JOIN jobs j ON j.id = a.job_id
    WHERE a.outcome = 'delivered' GROUP BY a.job_id, a.ordinal;
INSERT INTO sends (id, connection, platform, folded, url, request, status_code, response, outcome, error_type,
                   error, started_at, duration_ms)
    SELECT 'v1-' || a.id, a.connection, a.platform, 1, a.url, a.request, a.status_code, a.response,
           CASE a.outcome WHEN 'delivered' THEN 'delivered' ELSE 'failed' END, a.error_type, a.error,
           a.started_at, a.duration_ms
    FROM attempts a JOIN messages m ON m.job_id = a.job_id AND m.ordinal = a.ordinal;
INSERT INTO send_messages (send_id, message_id)
    SELECT 'v1-' || a.id, m.id FROM attempts a JOIN messages m ON m.job_id = a.job_id AND m.ordinal = a.ordinal;
-- Jobs that ended with an uncaught error are dead letters.
INSERT INTO dead_letters (status, job_id, event_seq, event_id, bus, rule, flow, error_type, error, caught, created_at)
    SELECT 'open', id, event_seq, event_id, bus, rule, flow,
           CASE WHEN instr(COALESCE(last_error, ''), ': ') > 0 THEN substr(last_error, 1, instr(last_error, ': ') - 1)
                ELSE 'FLOW:UNKNOWN' END,
           COALESCE(last_error, ''), 0, updated_at
    FROM jobs WHERE status = 'failed';
DROP TABLE attempts;
"#;

fn user_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)
}

fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(found.is_some())
}

/// Brings the database to [`VERSION`], in one transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let mut version = user_version(conn)?;
    if version == 0 && has_table(conn, "events")? {
        // The first release set no version.
        version = 1;
    }
    if version > VERSION {
        return Err(crate::StoreError::Database(format!(
            "the database has schema version {version}, newer than this Magpie's {VERSION}: upgrade Magpie"
        )));
    }
    if version == VERSION {
        return Ok(());
    }
    let tx = conn.transaction().map_err(db)?;
    if version == 0 {
        tx.execute_batch(SCHEMA).map_err(db)?;
        tx.execute_batch(V2).map_err(db)?;
    } else if version == 1 {
        tx.execute_batch(V2).map_err(db)?;
        tx.execute_batch(V1_TO_V2).map_err(db)?;
    }
    if version < 3 {
        tx.execute_batch(V3).map_err(db)?;
    }
    if version < 4 {
        tx.execute_batch(V4).map_err(db)?;
    }
    if version < 5 {
        tx.execute_batch(V5).map_err(db)?;
    }
    if version < 6 {
        tx.execute_batch(V6).map_err(db)?;
    }
    tx.execute_batch(V7).map_err(db)?;
    tx.pragma_update(None, "user_version", VERSION).map_err(db)?;
    tx.commit().map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first release's schema, as it created databases.
    const V1: &str = r#"
CREATE TABLE objects (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, bus TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, time_ms INTEGER NOT NULL, received_at INTEGER NOT NULL, routed INTEGER NOT NULL DEFAULT 0, matched TEXT, UNIQUE (bus, id));
CREATE INDEX events_by_id ON events (id);
CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, event_seq INTEGER NOT NULL, event_id TEXT NOT NULL, bus TEXT NOT NULL, rule TEXT NOT NULL, flow TEXT NOT NULL, status TEXT NOT NULL, runs INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL, lease_until INTEGER, last_error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX jobs_due ON jobs (status, next_attempt_at);
CREATE INDEX jobs_by_event ON jobs (event_seq);
CREATE TABLE steps (job_id INTEGER NOT NULL, ordinal INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (job_id, ordinal));
CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, ordinal INTEGER NOT NULL, attempt INTEGER NOT NULL, connection TEXT NOT NULL, platform TEXT NOT NULL, url TEXT NOT NULL, request TEXT NOT NULL, status_code INTEGER, response TEXT, outcome TEXT NOT NULL, error_type TEXT, error TEXT, started_at INTEGER NOT NULL, duration_ms INTEGER NOT NULL);
INSERT INTO events (bus, id, body, time_ms, received_at, routed, matched) VALUES ('default', 'e1', '{"id":"e1","type":"t1","subject":"s1","source":"x"}', 1, 1, 1, '["r"]');
INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, runs, next_attempt_at, created_at, updated_at) VALUES (1, 'e1', 'default', 'r', 'f', 'pending', 1, 5, 1, 1);
INSERT INTO jobs (event_seq, event_id, bus, rule, flow, status, runs, next_attempt_at, last_error, created_at, updated_at) VALUES (1, 'e1', 'default', 'r', 'g', 'failed', 1, 5, 'APP:BOOM: it broke', 1, 2);
INSERT INTO attempts (job_id, ordinal, attempt, connection, platform, url, request, status_code, response, outcome, error_type, error, started_at, duration_ms) VALUES (1, 2, 1, 'c', 'wecom', 'http://x', '{}', 200, '{"errcode":-1}', 'failed', 'WECOM:REMOTE', 'busy', 10, 1);
INSERT INTO attempts (job_id, ordinal, attempt, connection, platform, url, request, status_code, response, outcome, error_type, error, started_at, duration_ms) VALUES (1, 2, 2, 'c', 'wecom', 'http://x', '{}', 200, '{"errcode":0}', 'delivered', NULL, NULL, 20, 1);
INSERT INTO objects (kind, key, body, updated_at) VALUES ('flow', 'f', '{"name":"f","steps":[]}', 7);
"#;

    #[test]
    fn a_first_release_database_is_migrated_without_losing_what_was_delivered() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), VERSION);
        let (status, ordinal): (String, i64) = conn
            .query_row("SELECT status, ordinal FROM messages WHERE job_id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((status.as_str(), ordinal), ("delivered", 2));
        let sends: i64 = conn.query_row("SELECT COUNT(*) FROM send_messages", [], |r| r.get(0)).unwrap();
        assert_eq!(sends, 2, "both attempts stay in the trace");
        let (ty, subject): (String, String) =
            conn.query_row("SELECT type, subject FROM events", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((ty.as_str(), subject.as_str()), ("t1", "s1"));
        let letter: (String, String) =
            conn.query_row("SELECT error_type, flow FROM dead_letters", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(letter, ("APP:BOOM".to_string(), "g".to_string()));
        assert!(!has_table(&conn, "attempts").unwrap());
        // A flow stored before versions is its version 1, published and live.
        let v: (i64, Option<i64>, i64) = conn
            .query_row(
                "SELECT v.version, v.published_at, o.version FROM flow_versions v \
                 JOIN objects o ON o.kind = 'flow' AND o.key = v.name WHERE v.name = 'f'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(v, (1, Some(7), 1));
        migrate(&mut conn).unwrap(); // idempotent
    }

    #[test]
    fn a_new_database_gets_the_current_schema_and_a_newer_one_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert!(has_table(&conn, "messages").unwrap() && has_table(&conn, "dead_letters").unwrap());
        conn.pragma_update(None, "user_version", VERSION + 1).unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
