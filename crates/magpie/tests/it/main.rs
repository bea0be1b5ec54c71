//! End-to-end tests: the real `magpie` binary as server, robot simulator and CLI.

mod bad_input;
mod crash;
mod demo;
mod harness;
mod hooks;
mod ingest;
mod offline;
mod retries;
