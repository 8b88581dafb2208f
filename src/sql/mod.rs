//! sql: statement text handling — the lexer (the server's reading of the text), the
//! statements and the parser's view of each, analysis and rewrite of statements that can
//! reach protected data, and the literal-free fingerprint used in logs.

pub mod analyze;
pub mod charset;
mod charset_tables;
mod fingerprint;
pub mod lex;
pub mod rewrite;
pub mod view;

pub use fingerprint::{UNREADABLE, fingerprint};
