//! The composition root: reads configuration, opens the store, wires the core to the HTTP
//! front, and runs the server. The `cairn` binary is a thin CLI over this; the end-to-end tests
//! start the server through the same [`start`], so what they test is what ships.

pub mod audit_log;
mod config;
pub mod import;
pub mod keys;
mod server;
mod store;
pub mod tls;
pub mod tokens;

pub use config::{Config, ConfigError, LogFormat, MasterKeySecret};
pub use server::{Running, start};
pub use store::open_store;
