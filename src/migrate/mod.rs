//! migrate: bringing an existing database's plaintext columns under protection.
//!
//! `plan` reads the live tables of the policy's columns (types, lengths, character sets,
//! keys, row estimates) and says, per column, what its table needs before envelopes fit:
//! the column widened or retyped, the blind-index column and its index, a default that is
//! not NULL dropped. Each step is the exact DDL with the algorithm the server runs it with
//! (INSTANT or INPLACE where MariaDB or MySQL allow it, else through a shadow column that
//! `apply` fills), and the table's rows with an estimate of time and extra space.

pub mod apply;
pub mod plan;
pub mod state;
pub mod verify;
