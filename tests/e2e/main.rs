//! End-to-end: the real server over real HTTP, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod audit;
mod bundles;
mod conformance;
mod consent;
mod errors;
mod fhir_crud;
mod hardening;
mod operations;
mod phi;
mod rest;
mod robustness;
mod rotation;
mod search;
