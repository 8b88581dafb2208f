//! sql: statement text handling — the quick lexical scan, analysis and rewrite of statements
//! that name protected data, and the literal-free fingerprint used in logs.

pub mod analyze;
mod fingerprint;
pub mod lex;
pub mod prepare;
pub mod rewrite;

pub use fingerprint::fingerprint;
