//! myveil: a transparent encrypting proxy for MySQL and MariaDB.
//!
//! ```text
//! client ──TCP/TLS──▶ frontend::session (greeting, auth against auth::UserStore, role)
//!                         │  backend connection leased before the greeting (its id is the
//!                         │  client's connection id), bound after auth (backend::Pool)
//!                         ▼
//!                     command loop ── each command forwarded as a packet ──▶ MySQL/MariaDB
//!                         ◀── frontend::relay: response framed by a small state machine,
//!                             forwarded as raw bytes (wire::PacketConn)
//! ```
//! `wire` holds the packet codec, handshake packets, auth plugin arithmetic and TLS;
//! `config` the validated configuration; `sql` the statement fingerprint used in logs;
//! `backup` the encrypted, signed dumps and the offline restore (control plane, beside the
//! data path).

pub mod admin;
pub mod auth;
pub mod backend;
pub mod backup;
pub mod config;
pub mod crypto;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod limits;
pub mod migrate;
pub mod policy;
pub mod secure_file;
pub mod sql;
pub mod telemetry;
pub mod tokens;
pub mod wire;
