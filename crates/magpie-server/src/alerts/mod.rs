//! The alert lifecycle around the router: silences in force (a matcher the router asks which
//! silence keeps an event quiet), and telling once the alerts a silence kept quiet when it ends.
//!
//! The state machine itself is `magpie_core::alert` and runs inside the store's routing
//! transaction; this module owns neither routing nor delivery: it only decides which flows to
//! tell when a silence ends, and hands that to the store.

mod release;
mod silences;

pub(crate) use release::run;
pub use silences::{SilenceSet, Silences};
