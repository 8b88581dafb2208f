//! frontend::statements: a session's prepared statements as the guard left them — the
//! protocol-level ones on protected data (by statement id, with their cursors), what
//! MariaDB's "last prepared statement" id stands for, and the SQL-level ones (by name).

use std::collections::HashMap;

use super::prepared::Prepared;
use crate::guard::{Effect, SqlPrepared};
use crate::sql::analyze::Shape;

/// MariaDB: "the statement prepared last" (used by execute-direct and bulk clients).
pub const LAST_STATEMENT: u32 = u32::MAX;

/// What the backend's statement id -1 is, as far as myveil knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    None,
    Protected(u32),
    Plain,
    /// The last prepare failed: what -1 means is not known here.
    Failed,
}

/// An open cursor of a protected statement: the column definitions its execute sent, and
/// where its columns come from.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub defs: Vec<Vec<u8>>,
    pub shape: Shape,
}

#[derive(Debug)]
pub struct Statements {
    protected: HashMap<u32, Prepared>,
    cursors: HashMap<u32, Cursor>,
    last: Last,
    /// SQL-level prepared statements, by lower-case name.
    pub sql: HashMap<String, SqlPrepared>,
    /// Pinned mode: the backend's id of a statement prepared again under a new plan, by
    /// the id its client knows.
    backend: HashMap<u32, u32>,
    /// Pinned mode: a statement was prepared again since the client's last prepare, so the
    /// backend's -1 is not the client's.
    last_moved: bool,
}

impl Default for Statements {
    fn default() -> Self {
        Self {
            protected: HashMap::new(),
            cursors: HashMap::new(),
            last: Last::None,
            sql: HashMap::new(),
            backend: HashMap::new(),
            last_moved: false,
        }
    }
}

impl Statements {
    /// The id to look protected state up by. MariaDB's -1 becomes the protected statement
    /// prepared last; Err when it may name a protected statement myveil cannot tell.
    pub fn key(&self, id: u32) -> Result<u32, ()> {
        if id != LAST_STATEMENT {
            return Ok(id);
        }
        if self.last_moved {
            // Security: -1 then names another statement on the backend; only a protected
            // last statement can be given its own id.
            return match self.last {
                Last::Protected(p) => Ok(p),
                _ => Err(()),
            };
        }
        match self.last {
            Last::Protected(p) => Ok(p),
            Last::Plain => Ok(id),
            Last::None | Last::Failed if self.protected.is_empty() => Ok(id),
            Last::None | Last::Failed => Err(()),
        }
    }

    pub fn protected(&mut self, id: u32) -> Option<&mut Prepared> {
        self.protected.get_mut(&id)
    }

    pub fn is_protected(&self, id: u32) -> bool {
        self.protected.contains_key(&id)
    }

    pub fn prepared_protected(&mut self, id: u32, p: Prepared) {
        self.protected.insert(id, p);
        self.last = Last::Protected(id);
        self.last_moved = false;
    }

    pub fn prepared_plain(&mut self, ok: bool) {
        self.last = if ok { Last::Plain } else { Last::Failed };
        self.last_moved = false;
    }

    pub fn closed(&mut self, id: u32) {
        self.protected.remove(&id);
        self.cursors.remove(&id);
        self.backend.remove(&id);
    }

    /// Pinned mode: the backend's id for the client's statement `id`, where it differs.
    pub fn backend_id(&self, id: u32) -> Option<u32> {
        self.backend.get(&id).copied()
    }

    /// Pinned mode: the client's statement `id` is now the backend's `backend` (prepared
    /// again, which makes it the backend's -1).
    pub fn remap(&mut self, id: u32, backend: u32) {
        if id == backend {
            self.backend.remove(&id);
        } else {
            self.backend.insert(id, backend);
        }
        self.last_moved = true;
    }

    /// Pinned mode: the id a COM_STMT_* payload naming `raw` must carry to the backend,
    /// where it is not `raw` (a statement prepared again, or -1 once that moved it).
    pub fn explicit(&self, raw: u32) -> Option<u32> {
        let id = self.key(raw).ok()?;
        match self.backend.get(&id) {
            Some(b) => Some(*b),
            None if raw == LAST_STATEMENT && self.last_moved => Some(id),
            None => None,
        }
    }

    pub fn cursor(&self, id: u32) -> Option<&Cursor> {
        self.cursors.get(&id)
    }

    pub fn open_cursor(&mut self, id: u32, c: Cursor) {
        self.cursors.insert(id, c);
    }

    pub fn close_cursor(&mut self, id: u32) {
        self.cursors.remove(&id);
    }

    /// The backend forgot every prepared statement (change user, reset; it may reuse ids).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Applies what the guard decided about SQL-level prepared statements.
    /// Forgets SQL-level prepared statements whose PREPARE or DEALLOCATE may not have run
    /// (the query ended in an error): EXECUTE of them is refused until prepared again.
    pub fn forget(&mut self, names: &[String]) {
        for n in names {
            self.sql.remove(n);
        }
    }

    pub fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Prepared(name, p) => {
                    self.sql.insert(name, p);
                }
                Effect::Deallocated(name) => {
                    self.sql.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_prepared_again_moves_the_backends_last_statement() {
        let mut s = Statements::default();
        s.prepared_protected(5, Prepared::default());
        s.prepared_plain(true);
        assert_eq!(s.key(LAST_STATEMENT), Ok(LAST_STATEMENT));
        // Statement 5 prepared again as the backend's 9: the backend's -1 is 9 now, not the
        // plain statement the client prepared last.
        s.remap(5, 9);
        assert_eq!(s.explicit(5), Some(9));
        assert_eq!(s.key(LAST_STATEMENT), Err(()));
        assert_eq!(s.explicit(LAST_STATEMENT), None);
        // A new prepare makes -1 the client's again.
        s.prepared_protected(6, Prepared::default());
        assert_eq!(s.key(LAST_STATEMENT), Ok(6));
        assert_eq!(s.explicit(LAST_STATEMENT), None);
        // The last statement prepared again itself: -1 goes as its explicit id.
        s.remap(6, 11);
        assert_eq!(s.key(LAST_STATEMENT), Ok(6));
        assert_eq!(s.explicit(LAST_STATEMENT), Some(11));
        s.remap(5, 12);
        assert_eq!(
            s.explicit(LAST_STATEMENT),
            Some(11),
            "-1 is still statement 6"
        );
        s.closed(6);
        assert_eq!(s.explicit(6), None);
    }
}
