//! The Magpie runtime: HTTP API, ingest, router, workers
