//! In-process evaluation on a bounded set of blocking threads (tests and tools).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use magpie_flow::{Compiled, Program};
use serde_json::Value;
use tokio::sync::Semaphore;

pub(crate) struct Local {
    threads: usize,
    slots: Arc<Semaphore>,
    cache: Arc<Mutex<HashMap<u64, Arc<Compiled>>>>,
}

impl Local {
    pub(crate) fn new(threads: usize) -> Local {
        Local { threads, slots: Arc::new(Semaphore::new(threads)), cache: Arc::default() }
    }

    pub(crate) fn describe(&self) -> String {
        format!("in process, on {} threads (no memory bound)", self.threads)
    }

    pub(crate) async fn eval(&self, program: Arc<Program>, msg: Value) -> Result<Value, String> {
        let Ok(slot) = self.slots.clone().acquire_owned().await else { return Err("the sandbox is shut down".into()) };
        let cache = self.cache.clone();
        let run = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let cached = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&program.id()).cloned();
            let compiled = match cached {
                Some(c) => c,
                None => {
                    let c = Arc::new(Compiled::build(program.source())?);
                    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() >= 4_096 {
                        cache.clear();
                    }
                    cache.insert(program.id(), c.clone());
                    c
                }
            };
            compiled.eval(&msg)
        });
        run.await.map_err(|e| format!("the evaluation failed: {e}"))?
    }
}
