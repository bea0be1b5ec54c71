//! End-to-end tests: the real `magpie` binary as server, robot simulator and CLI.

mod alerts;
mod archive;
mod bad_input;
mod console;
mod crash;
mod dead_letters;
mod demo;
mod exposure;
mod front_door;
mod harness;
mod hooks;
mod ingest;
mod offline;
mod openapi;
mod retries;
mod routing;
mod sandbox;
mod security;
mod storm;
mod versions;
