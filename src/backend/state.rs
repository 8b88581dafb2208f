//! backend::state: the session state the server reports — current database, sql_mode,
//! character sets, autocommit — read from the session-tracking records of every OK packet,
//! and the rewrite of those OK packets into what the client asked to see.
//!
//! Security: the guard lexes and resolves statements with this state, so it comes from the
//! server and never from myveil's reading of statement text. Each backend connection is
//! set up with `tracking_setup`, which turns on tracking of the variables below and makes
//! the server report their current values once. Where the server does not report a change
//! (`SET @@name` without a scope word, see `may_hide_state`), the state is read back with
//! `STATE_QUERY`.

use std::collections::{BTreeMap, HashSet};

use mysql_common::constants::StatusFlags;

use crate::wire::packets::{
    self, SESSION_TRACK_SCHEMA, SESSION_TRACK_SYSTEM_VARIABLES, TrackedOk, parse_tracked_ok,
    rebuild_ok, state_records,
};

/// Variables myveil needs reported. Tracking also covers the client's own defaults (read
/// from the server), so records a client would have seen directly are there to pass on.
pub const TRACKED_VARIABLES: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "sql_mode",
    "time_zone",
];

/// The variables `STATE_QUERY` reads, in its column order (after the database).
const STATE_COLUMNS: &[&str] = &[
    "sql_mode",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "autocommit",
];

/// Reads the session state directly (not from tracking): the database, the variables of
/// `STATE_COLUMNS`, then the tracking settings, to tell whether tracking is still intact.
pub const STATE_QUERY: &str = "SELECT DATABASE(), @@session.sql_mode, \
    @@session.character_set_client, @@session.character_set_connection, \
    @@session.character_set_results, @@session.collation_connection, @@session.autocommit, \
    @@session.session_track_system_variables, @@session.session_track_schema";

/// Builds the statement that sets tracking up on a backend session: the variables myveil
/// needs (plus `client_defaults`, what clients get by default), the schema, and a report of
/// the current values (each variable set to itself, which the tracker reports).
pub fn tracking_setup(client_defaults: &VarSet) -> String {
    let mut names: Vec<&str> = TRACKED_VARIABLES.to_vec();
    let all = match client_defaults {
        VarSet::All => true,
        VarSet::Names(extra) => {
            for n in extra {
                if !names.contains(&n.as_str()) && is_variable_name(n) {
                    names.push(n);
                }
            }
            false
        }
    };
    let list = if all { "*".to_owned() } else { names.join(",") };
    format!(
        "SET @@session.session_track_system_variables = '{list}', \
         @@session.session_track_schema = ON, \
         @@session.sql_mode = @@session.sql_mode, \
         @@session.character_set_client = @@session.character_set_client, \
         @@session.character_set_results = @@session.character_set_results, \
         @@session.collation_connection = @@session.collation_connection, \
         @@session.autocommit = @@session.autocommit"
    )
}

fn is_variable_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A set of system variable names (session_track_system_variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarSet {
    All,
    Names(HashSet<String>),
}

impl VarSet {
    /// Reads a session_track_system_variables value (`*` or a comma list).
    pub fn parse(list: &str) -> Self {
        if list.split(',').any(|n| n.trim() == "*") {
            return VarSet::All;
        }
        VarSet::Names(
            list.split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    fn contains(&self, name: &[u8]) -> bool {
        match self {
            VarSet::All => true,
            VarSet::Names(n) => {
                std::str::from_utf8(name).is_ok_and(|name| n.contains(&name.to_ascii_lowercase()))
            }
        }
    }
}

/// What the server's tracking gives a client by default (its global settings), which is
/// what a client asking for CLIENT_SESSION_TRACK would see on a direct connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingDefaults {
    pub variables: VarSet,
    pub schema: bool,
}

impl Default for TrackingDefaults {
    /// MariaDB 10.11's defaults.
    fn default() -> Self {
        Self {
            variables: VarSet::parse(
                "autocommit,character_set_client,character_set_connection,character_set_results,time_zone",
            ),
            schema: true,
        }
    }
}

/// What a client sees of session tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTracking {
    /// The client did not ask for CLIENT_SESSION_TRACK: OK packets carry no state.
    Off,
    /// It did: the records its settings (the server's defaults, or what it set) give it.
    On(TrackingDefaults),
    /// It did and the statement being answered may change its settings: records pass as
    /// the server sent them (myveil reads the new settings after the response).
    Unfiltered,
}

/// Whether a statement may change session-tracking settings (`session_track_*`): a byte
/// search, deliberately wider than needed (it also matches inside literals), since a match
/// only costs a re-read of the settings after the statement.
pub fn mentions_tracking(text: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"session_track_";
    text.windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// Whether a statement may change session state the server does not report. MariaDB
/// (10.11) leaves `SET @@name = …` without a scope word out of its session tracking, though
/// the value changes (`@@session.name` and `SET name` are reported); and SQL-level EXECUTE
/// runs text myveil may not have read. A byte search, wider than needed: a match only costs
/// reading the state again after the statement (see `STATE_QUERY`).
pub fn may_hide_state(text: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        text.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    (has(b"@@") && has(b"set")) || has(b"execute")
}

bitflags::bitflags! {
    /// The sql_mode flags that change how statements are read.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct ModeFlags: u32 {
        const ANSI_QUOTES = 1;
        const NO_BACKSLASH_ESCAPES = 2;
        const IGNORE_SPACE = 4;
        const PIPES_AS_CONCAT = 8;
        const HIGH_NOT_PRECEDENCE = 16;
        /// Oracle compatibility: another grammar (sql_yacc_ora).
        const ORACLE = 32;
        const MSSQL = 64;
        const EMPTY_STRING_IS_NULL = 128;
    }
}

/// A session's sql_mode, as the server reports it (combination names already expanded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlMode {
    pub text: String,
    pub flags: ModeFlags,
}

impl SqlMode {
    pub fn parse(text: &str) -> Self {
        let mut flags = ModeFlags::empty();
        for name in text.split(',') {
            flags |= match name.trim().to_ascii_uppercase().as_str() {
                "ANSI_QUOTES" => ModeFlags::ANSI_QUOTES,
                "NO_BACKSLASH_ESCAPES" => ModeFlags::NO_BACKSLASH_ESCAPES,
                "IGNORE_SPACE" => ModeFlags::IGNORE_SPACE,
                "PIPES_AS_CONCAT" => ModeFlags::PIPES_AS_CONCAT,
                "HIGH_NOT_PRECEDENCE" => ModeFlags::HIGH_NOT_PRECEDENCE,
                "ORACLE" => ModeFlags::ORACLE,
                "MSSQL" => ModeFlags::MSSQL,
                "EMPTY_STRING_IS_NULL" => ModeFlags::EMPTY_STRING_IS_NULL,
                _ => ModeFlags::empty(),
            };
        }
        Self {
            text: text.to_owned(),
            flags,
        }
    }

    pub fn has(&self, f: ModeFlags) -> bool {
        self.flags.contains(f)
    }
}

/// The state of one backend session as its server reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The current database (None: no database selected).
    pub database: Option<String>,
    pub sql_mode: SqlMode,
    /// character_set_client: how the server reads statement bytes.
    pub client_charset: String,
    /// character_set_results (None: results are not converted).
    pub results_charset: Option<String>,
    pub autocommit: bool,
    /// Every tracked variable's last reported value, by lower-case name.
    pub variables: BTreeMap<String, String>,
    /// True once the server reported the variables above (setup ran); false means the
    /// session's state is not known and nothing that depends on it can be decided.
    pub known: bool,
    /// Bumped on every change, so caches keyed on the state can tell.
    pub generation: u64,
}

/// A backend OK packet that could not be read: the session cannot be trusted further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed session state in an OK packet")]
pub struct Malformed;

impl SessionState {
    /// A session that starts in `database` (the state is not known until the setup's report).
    pub fn starting_in(database: Option<&[u8]>) -> Self {
        Self {
            database: database.map(|d| String::from_utf8_lossy(d).into_owned()),
            ..Self::default()
        }
    }

    /// Applies the records of one OK packet.
    fn apply(&mut self, records: &[(u8, &[u8])]) -> Result<(), Malformed> {
        for (kind, data) in records {
            match *kind {
                SESSION_TRACK_SYSTEM_VARIABLES => {
                    let (name, value) = packets::variable_record(data).ok_or(Malformed)?;
                    self.variable(
                        &String::from_utf8_lossy(name),
                        &String::from_utf8_lossy(value),
                    );
                }
                SESSION_TRACK_SCHEMA => {
                    let db = packets::schema_record(data).ok_or(Malformed)?;
                    self.database =
                        (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
                }
                _ => {}
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Takes one variable's value.
    /// Values are kept in one spelling whether tracking or `STATE_QUERY` read them (a
    /// multiplexed session compares them with another connection's).
    fn variable(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        let mut value = value;
        match name.as_str() {
            "sql_mode" => self.sql_mode = SqlMode::parse(value),
            "character_set_client" => self.client_charset = value.to_ascii_lowercase(),
            "character_set_results" => {
                self.results_charset = match value.to_ascii_lowercase().as_str() {
                    "" | "null" => {
                        value = "NULL";
                        None
                    }
                    v => Some(v.to_owned()),
                };
            }
            "autocommit" => {
                self.autocommit = value.eq_ignore_ascii_case("on") || value == "1";
                value = if self.autocommit { "ON" } else { "OFF" };
            }
            _ => {}
        }
        self.variables.insert(name, value.to_owned());
    }

    /// Takes the row of `STATE_QUERY`; returns whether the session's tracking is still what
    /// myveil set up (every variable it reads is tracked, and the schema).
    pub fn apply_state_row(&mut self, row: &[Option<Vec<u8>>]) -> Result<bool, Malformed> {
        if row.len() != STATE_COLUMNS.len() + 3 {
            return Err(Malformed);
        }
        fn text(v: &Option<Vec<u8>>) -> Option<std::borrow::Cow<'_, str>> {
            v.as_deref().map(String::from_utf8_lossy)
        }
        self.database = text(&row[0]).map(|d| d.into_owned());
        for (name, value) in STATE_COLUMNS.iter().zip(&row[1..]) {
            self.variable(name, text(value).as_deref().unwrap_or(""));
        }
        self.generation = self.generation.wrapping_add(1);
        let n = STATE_COLUMNS.len();
        let tracked = VarSet::parse(text(&row[n + 1]).as_deref().unwrap_or(""));
        let schema = text(&row[n + 2]).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("on"));
        let intact = schema
            && match &tracked {
                VarSet::All => true,
                VarSet::Names(names) => TRACKED_VARIABLES.iter().all(|v| names.contains(*v)),
            };
        Ok(intact)
    }

    /// Reads the state records of the setup statement's OK packet.
    pub fn apply_setup(&mut self, ok: &[u8]) -> Result<(), Malformed> {
        self.known = self.apply_report(ok)?;
        Ok(())
    }

    /// Applies a report of the state (the setup's, or STATE_REPORT's); whether it named
    /// every variable myveil needs.
    pub fn apply_report(&mut self, ok: &[u8]) -> Result<bool, Malformed> {
        let parsed = parse_tracked_ok(ok).ok_or(Malformed)?;
        let records = state_records(parsed.state).ok_or(Malformed)?;
        self.apply(&records)?;
        let named: Vec<&[u8]> = records
            .iter()
            .filter(|(kind, _)| *kind == SESSION_TRACK_SYSTEM_VARIABLES)
            .filter_map(|(_, data)| packets::variable_record(data).map(|(name, _)| name))
            .collect();
        Ok([
            "sql_mode",
            "character_set_client",
            "character_set_results",
            "autocommit",
        ]
        .iter()
        .all(|v| named.iter().any(|n| n.eq_ignore_ascii_case(v.as_bytes()))))
    }

    /// Takes the state changes of a backend OK packet and returns what the client gets in
    /// its place (None: the packet goes to the client as it is).
    pub fn track_ok(
        &mut self,
        payload: &[u8],
        client: &ClientTracking,
    ) -> Result<Option<Vec<u8>>, Malformed> {
        let Some(ok) = parse_tracked_ok(payload) else {
            return Err(Malformed);
        };
        if !ok
            .status
            .contains(StatusFlags::SERVER_SESSION_STATE_CHANGED)
        {
            return Ok(None);
        }
        let records = state_records(ok.state).ok_or(Malformed)?;
        self.apply(&records)?;
        Ok(Some(for_client(&ok, &records, client)))
    }
}

/// Variables the server reports but no session can set.
const READ_ONLY: &[&str] = &[
    "in_transaction",
    "warning_count",
    "error_count",
    "last_gtid",
];

/// What brings a connection to another session's variables (`restore_sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// They are the same already.
    Same,
    /// This statement.
    Sql(String),
    /// A value no statement of myveil's writes (the connection logs in again instead).
    Cannot,
}

/// The statement that brings a connection whose server reported state `from` to the
/// variables of state `to`. The database is not in it (COM_INIT_DB, first). Values are written as the
/// server reported them, numbers bare and the rest quoted for `from`'s sql_mode (the
/// statement is read under it); a variable `from` has and `to` does not goes back to its
/// DEFAULT. A character set goes before its collation, which is written again after it.
pub fn restore_sql(from: &SessionState, to: &SessionState) -> Restore {
    let mut names: std::collections::BTreeSet<&str> = to
        .variables
        .iter()
        .filter(|(n, v)| from.variables.get(*n) != Some(v))
        .map(|(n, _)| n.as_str())
        .chain(
            from.variables
                .keys()
                .filter(|n| !to.variables.contains_key(*n))
                .map(String::as_str),
        )
        .filter(|n| !READ_ONLY.contains(n))
        .collect();
    for n in names.clone() {
        if let Some(of) = n.strip_prefix("character_set_")
            && let Some((c, _)) = to.variables.get_key_value(&format!("collation_{of}"))
        {
            names.insert(c.as_str());
        }
    }
    if names.is_empty() {
        return Restore::Same;
    }
    let rank = |n: &str| {
        u8::from(!n.starts_with("character_set_"))
            + u8::from(!n.starts_with("collation_") && !n.starts_with("character_set_"))
    };
    let mut ordered: Vec<&str> = names.into_iter().collect();
    ordered.sort_by_key(|n| rank(n));
    let backslashes = !from.sql_mode.has(ModeFlags::NO_BACKSLASH_ESCAPES);
    let mut sql = String::from("SET ");
    for (i, name) in ordered.iter().enumerate() {
        if !is_variable_name(name) {
            return Restore::Cannot;
        }
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("@@session.");
        sql.push_str(name);
        sql.push_str(" = ");
        match to.variables.get(*name) {
            None => sql.push_str("DEFAULT"),
            Some(v) if *name == "character_set_results" && v == "NULL" => sql.push_str("NULL"),
            Some(v) if is_number(v) => sql.push_str(v),
            Some(v) => {
                if !v.is_ascii() || v.bytes().any(|b| b.is_ascii_control()) {
                    return Restore::Cannot;
                }
                sql.push('\'');
                for c in v.chars() {
                    match c {
                        '\'' => sql.push_str("''"),
                        '\\' if backslashes => sql.push_str("\\\\"),
                        c => sql.push(c),
                    }
                }
                sql.push('\'');
            }
        }
    }
    Restore::Sql(sql)
}

fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a connection in state `have` is in state `want` for a session: the same
/// database and every variable of `want` at its value.
pub fn restored(have: &SessionState, want: &SessionState) -> bool {
    have.database == want.database
        && want
            .variables
            .iter()
            .filter(|(n, _)| !READ_ONLY.contains(&n.as_str()))
            .all(|(n, v)| have.variables.get(n) == Some(v))
}

/// The OK packet as a client with `client` tracking would get it from the server.
fn for_client(ok: &TrackedOk<'_>, records: &[(u8, &[u8])], client: &ClientTracking) -> Vec<u8> {
    let wants = match client {
        ClientTracking::Off => return rebuild_ok(ok, &[], false),
        ClientTracking::Unfiltered => return rebuild_ok(ok, records, true),
        ClientTracking::On(wants) => wants,
    };
    let kept: Vec<(u8, &[u8])> = records
        .iter()
        .filter(|(kind, data)| match *kind {
            SESSION_TRACK_SYSTEM_VARIABLES => packets::variable_record(data)
                .is_some_and(|(name, _)| wants.variables.contains(name)),
            SESSION_TRACK_SCHEMA => wants.schema,
            // Other kinds (state change, transaction) follow the server's own settings,
            // which myveil does not change.
            _ => true,
        })
        .copied()
        .collect();
    rebuild_ok(ok, &kept, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SET sql_mode='ANSI_QUOTES'` then `SET NAMES latin1` and `USE test`, as MariaDB 10.11
    /// answered them with tracking on (captured).
    const MODE_OK: &[u8] =
        b"\x00\x00\x00\x02\xc0\x00\x00\x00\x17\x00\x15\x08sql_mode\x0bANSI_QUOTES";
    const NAMES_OK: &[u8] = b"\x00\x00\x00\x02\xc0\x00\x00\x00\x40\x00\x20\x18character_set_connection\x06latin1\x00\x1c\x14character_set_client\x06latin1";
    const USE_OK: &[u8] = b"\x00\x00\x00\x02\xc0\x00\x00\x00\x07\x01\x05\x04test";

    #[test]
    fn a_restore_writes_what_differs_in_an_order_the_server_keeps() {
        let with = |vars: &[(&str, &str)], mode: &str| {
            let mut s = SessionState::default();
            for (n, v) in vars {
                s.variable(n, v);
            }
            s.sql_mode = SqlMode::parse(mode);
            s
        };
        let to = with(
            &[
                ("time_zone", "+05:00"),
                ("sort_buffer_size", "1048576"),
                ("collation_connection", "latin1_bin"),
                ("character_set_connection", "latin1"),
                ("lc_time_names", "it'a\\b"),
                ("autocommit", "1"),
            ],
            "",
        );
        let from = with(
            &[
                ("character_set_connection", "utf8mb4"),
                ("collation_connection", "latin1_bin"),
                ("div_precision_increment", "7"),
                ("autocommit", "ON"),
            ],
            "",
        );
        assert_eq!(
            restore_sql(&from, &to),
            Restore::Sql(
                "SET @@session.character_set_connection = 'latin1', \
                 @@session.collation_connection = 'latin1_bin', \
                 @@session.div_precision_increment = DEFAULT, \
                 @@session.lc_time_names = 'it''a\\\\b', \
                 @@session.sort_buffer_size = 1048576, @@session.time_zone = '+05:00'"
                    .into()
            )
        );
        // Under NO_BACKSLASH_ESCAPES a backslash is itself.
        let nbe = with(&[("autocommit", "ON")], "NO_BACKSLASH_ESCAPES");
        let to = with(&[("lc_time_names", "a\\b")], "");
        assert_eq!(
            restore_sql(&nbe, &to),
            Restore::Sql(
                "SET @@session.autocommit = DEFAULT, @@session.lc_time_names = 'a\\b'".into()
            )
        );
        assert_eq!(restore_sql(&to, &to), Restore::Same);
        let odd = with(&[("time_zone", "caf\u{e9}")], "");
        assert_eq!(restore_sql(&nbe, &odd), Restore::Cannot);
        assert!(restored(&to, &to));
        assert!(!restored(&nbe, &to));
    }

    #[test]
    fn state_follows_what_the_server_reports() {
        let mut s = SessionState::starting_in(Some(b"shop"));
        let off = ClientTracking::Off;
        let out = s.track_ok(MODE_OK, &off).expect("ok").expect("rewritten");
        assert_eq!(out, b"\x00\x00\x00\x02\x80\x00\x00");
        assert!(s.sql_mode.has(ModeFlags::ANSI_QUOTES));
        assert!(!s.sql_mode.has(ModeFlags::NO_BACKSLASH_ESCAPES));
        s.track_ok(NAMES_OK, &off).expect("ok");
        assert_eq!(s.client_charset, "latin1");
        s.track_ok(USE_OK, &off).expect("ok");
        assert_eq!(s.database.as_deref(), Some("test"));
        let plain = b"\x00\x01\x00\x02\x00\x00\x00";
        assert_eq!(s.track_ok(plain, &off), Ok(None));
        assert!(s.track_ok(&MODE_OK[..MODE_OK.len() - 3], &off).is_err());
    }

    #[test]
    fn tracking_clients_get_the_records_their_settings_give() {
        let mut s = SessionState::default();
        let on = ClientTracking::On(TrackingDefaults::default());
        // sql_mode is not in the default list: the record is dropped, the flag cleared.
        assert_eq!(
            s.track_ok(MODE_OK, &on).expect("ok").expect("rewritten"),
            b"\x00\x00\x00\x02\x80\x00\x00"
        );
        // character sets are: kept as sent.
        assert_eq!(
            s.track_ok(NAMES_OK, &on).expect("ok").expect("rewritten"),
            NAMES_OK
        );
        assert_eq!(
            s.track_ok(USE_OK, &on).expect("ok").expect("rewritten"),
            USE_OK
        );
        let no_schema = ClientTracking::On(TrackingDefaults {
            variables: VarSet::All,
            schema: false,
        });
        assert_eq!(
            s.track_ok(USE_OK, &no_schema)
                .expect("ok")
                .expect("rewritten"),
            b"\x00\x00\x00\x02\x80\x00\x00"
        );
        assert_eq!(
            s.track_ok(MODE_OK, &no_schema)
                .expect("ok")
                .expect("rewritten"),
            MODE_OK
        );
    }

    #[test]
    fn modes_are_read_from_the_expanded_list() {
        let m = SqlMode::parse("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI");
        assert!(
            m.has(ModeFlags::ANSI_QUOTES | ModeFlags::PIPES_AS_CONCAT | ModeFlags::IGNORE_SPACE)
        );
        assert!(SqlMode::parse("no_backslash_escapes").has(ModeFlags::NO_BACKSLASH_ESCAPES));
        assert_eq!(SqlMode::parse("").flags, ModeFlags::empty());
    }

    #[test]
    fn setup_lists_the_client_defaults_too() {
        let d = TrackingDefaults::default();
        let sql = tracking_setup(&d.variables);
        assert!(sql.contains("sql_mode,time_zone") || sql.contains("sql_mode"));
        assert!(sql.contains("character_set_results"));
        assert!(tracking_setup(&VarSet::All).contains("'*'"));
        let odd = VarSet::parse("autocommit,bad'name");
        assert!(!tracking_setup(&odd).contains("bad"));
    }
}
