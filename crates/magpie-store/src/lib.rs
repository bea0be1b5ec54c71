//! Magpie storage: configuration, event log, job queue, traces
