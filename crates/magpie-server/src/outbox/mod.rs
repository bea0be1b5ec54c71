//! The outbox: the stage between the flow runner and the connectors.
//!
//! Every robot message goes into the durable queue of its connection (store rows, one transaction
//! per change). One drainer per connection — on the node holding the connection's lease — sends
//! the queue at the platform's rate ([`limiter`]), folds a backlog into digests ([`plan`]), pauses
//! after a rate-limit answer, retries failures with backoff and turns what cannot be delivered
//! into dead letters ([`outcome`]); then it wakes the jobs that waited for their messages.
//!
//! It knows connections and messages, not flows: what a message says was decided by its flow, and
//! what the run does next is the worker's business.

mod drainer;
pub mod limiter;
pub mod outcome;
pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::AppState;

/// How long a node holds a connection's outbox without renewing it.
const LEASE: Duration = Duration::from_secs(30);
/// How often the supervisor looks for connections with queued messages and no drainer here.
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);
/// A drainer with nothing to do for this long lets its lease go and stops.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// The drainers running on this node, one per connection.
#[derive(Default)]
pub struct Outbox {
    drainers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.drainers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Tells the connection's drainer that its queue changed, starting one if none runs here.
pub fn wake(state: &Arc<AppState>, connection: &str) {
    let mut drainers = state.outbox.lock();
    if let Some(n) = drainers.get(connection) {
        n.notify_one();
        return;
    }
    let notify = Arc::new(Notify::new());
    drainers.insert(connection.to_string(), notify.clone());
    drop(drainers);
    tokio::spawn(drainer::drain(state.clone(), connection.to_string(), notify));
}

/// Forgets a drainer that stopped (only if it is the one registered).
fn forget(state: &AppState, connection: &str, notify: &Arc<Notify>) {
    let mut drainers = state.outbox.lock();
    if drainers.get(connection).is_some_and(|n| Arc::ptr_eq(n, notify)) {
        drainers.remove(connection);
    }
}

/// Starts drainers for the connections with queued messages, now and every few seconds (messages
/// left by a restart, or by a node whose lease ran out).
pub(crate) async fn supervise(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        match state.store.outbox_connections().await {
            Ok(conns) => {
                for c in conns {
                    if !state.outbox.lock().contains_key(&c) {
                        wake(&state, &c);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "listing outboxes failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
