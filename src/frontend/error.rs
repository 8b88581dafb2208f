//! frontend::error: the one mapping from what myveil refuses or fails at to the MySQL error
//! packet the client gets — codes and SQLSTATEs in one table, messages with names only.

use super::transform::Failure;
use crate::guard::Refusal;
use crate::wire::packets::{
    ER_COLUMNACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_NOT_SUPPORTED_YET, ER_UNKNOWN_ERROR,
    ErrorReply,
};

/// ER_PARSE_ERROR: what the server answers for text it cannot read.
pub const ER_PARSE_ERROR: u16 = 1064;

/// The error packet for a guard refusal, for `user`.
pub fn refusal(r: &Refusal, user: &str) -> ErrorReply {
    match r {
        Refusal::Denied { .. } => {
            ErrorReply::new(ER_COLUMNACCESS_DENIED_ERROR, b"42000", r.to_string())
        }
        Refusal::NotSupported { message } => {
            ErrorReply::new(ER_NOT_SUPPORTED_YET, b"42000", message.as_str())
        }
        Refusal::Syntax { .. } => ErrorReply::new(ER_PARSE_ERROR, b"42000", r.to_string()),
        Refusal::StoreSchema { schema } => ErrorReply::new(
            ER_DBACCESS_DENIED_ERROR,
            b"42000",
            format!("Access denied for user '{user}' to database '{schema}'"),
        ),
    }
}

/// The error packet for a result myveil cannot give the client.
pub fn failure(f: &Failure) -> ErrorReply {
    match f {
        Failure::Denied { scope } => ErrorReply::new(
            ER_COLUMNACCESS_DENIED_ERROR,
            b"42000",
            format!("myveil: {scope}: access denied for this role"),
        ),
        Failure::Cell { scope, reason } => ErrorReply::new(
            ER_UNKNOWN_ERROR,
            b"HY000",
            format!("myveil: {scope}: {reason}"),
        ),
        Failure::Malformed => ErrorReply::new(
            ER_UNKNOWN_ERROR,
            b"HY000",
            "myveil: cannot read a row from the backend",
        ),
        Failure::Conflict { scope } => ErrorReply::new(
            ER_NOT_SUPPORTED_YET,
            b"42000",
            format!(
                "myveil: {scope}: the result's columns do not come from where the statement says; name the columns plainly"
            ),
        ),
        Failure::Shape => ErrorReply::new(
            ER_NOT_SUPPORTED_YET,
            b"42000",
            "myveil: cannot place the protected columns in this result; list the columns instead of *",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_code() {
        let cases = [
            (
                Refusal::Denied {
                    target: "t.c".into(),
                },
                1143,
            ),
            (Refusal::not_supported("x"), 1235),
            (
                Refusal::Syntax {
                    message: "x".into(),
                },
                1064,
            ),
            (
                Refusal::StoreSchema {
                    schema: "myveil".into(),
                },
                1044,
            ),
        ];
        for (r, code) in cases {
            assert_eq!(refusal(&r, "app").code, code, "{r:?}");
        }
        assert_eq!(failure(&Failure::Shape).code, 1235);
        assert_eq!(
            failure(&Failure::Denied {
                scope: "t.c".into()
            })
            .code,
            1143
        );
    }
}
