//! The composition root: reads configuration, opens the store, wires the core to the HTTP
//! front, and runs the server. The `cairn` binary is a thin CLI over this; the end-to-end tests
//! start the server through the same [`start`], so what they test is what ships.

mod config;
mod server;

pub use config::{Config, ConfigError, LogFormat};
pub use server::{Running, open_store, start};
