//! The silences that have not ended, compiled into one matcher, swapped on change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use magpie_pattern::{Matcher, Pattern};
use magpie_store::{Silence, Store, StoreError};

/// The silences that have not ended, compiled.
#[derive(Default)]
pub struct SilenceSet {
    matcher: Option<Matcher<String>>,
    silences: HashMap<String, Silence>,
}

impl SilenceSet {
    /// Compiles silences (a stored pattern that no longer parses is skipped, and logged).
    pub fn build(list: Vec<Silence>) -> SilenceSet {
        let mut patterns = Vec::new();
        let mut silences = HashMap::new();
        for s in list {
            match Pattern::parse(&s.pattern) {
                Ok(p) => patterns.push((s.id.clone(), p)),
                Err(e) => {
                    tracing::error!(silence = %s.id, error = %e, "a stored silence's pattern is invalid; it is ignored")
                }
            }
            silences.insert(s.id.clone(), s);
        }
        let matcher = (!patterns.is_empty()).then(|| Matcher::build(patterns));
        SilenceSet { matcher, silences }
    }

    /// Whether there is no silence at all.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// The silence in force at `now` on `bus` that matches the stored event `json` (the
    /// smallest id if several do).
    pub fn matching(&self, bus: &str, json: &[u8], dotted: bool, now: i64) -> Option<String> {
        let m = self.matcher.as_ref()?;
        let mut ids = Vec::new();
        let read = if dotted { m.matches_json(json, &mut ids) } else { m.matches_json_undotted(json, &mut ids) };
        if read.is_err() {
            return None;
        }
        ids.into_iter()
            .filter(|id| {
                self.silences.get(id).is_some_and(|s| s.active(now) && s.bus.as_deref().is_none_or(|b| b == bus))
            })
            .min()
    }
}

/// The shared, swappable silence set.
#[derive(Default)]
pub struct Silences {
    current: RwLock<Arc<SilenceSet>>,
}

impl Silences {
    /// The set in force.
    pub fn get(&self) -> Arc<SilenceSet> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the silences that have not ended from the store and swaps them in.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let list = store.silences(Some(magpie_core::now_ms())).await?;
        let set = SilenceSet::build(list);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }
}
