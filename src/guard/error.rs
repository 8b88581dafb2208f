//! guard::error: why the guard refuses a statement. Typed, with names and never values;
//! frontend::error turns each into its MySQL error packet.

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The role may not see (or write) a column: ER_COLUMNACCESS_DENIED_ERROR.
    #[error("myveil: {target}: access denied for this role")]
    Denied { target: String },
    /// What the statement does with protected data cannot be protected: ER_NOT_SUPPORTED_YET.
    #[error("{message}")]
    NotSupported { message: String },
    /// The server would not read the statement either: ER_PARSE_ERROR.
    #[error("myveil: {message}")]
    Syntax { message: String },
    /// myveil's own schema: ER_DBACCESS_DENIED_ERROR.
    #[error("Access denied to database '{schema}'")]
    StoreSchema { schema: String },
}

impl Refusal {
    pub fn not_supported(message: impl Into<String>) -> Self {
        Refusal::NotSupported {
            message: format!("myveil: {}", message.into()),
        }
    }

    /// What to log: the kind and the name it is about, never a value.
    pub fn target(&self) -> &str {
        match self {
            Refusal::Denied { target } => target,
            Refusal::StoreSchema { schema } => schema,
            Refusal::NotSupported { .. } | Refusal::Syntax { .. } => "",
        }
    }
}

impl From<crate::sql::analyze::Refusal> for Refusal {
    fn from(r: crate::sql::analyze::Refusal) -> Self {
        if r.denied {
            Refusal::Denied { target: r.target }
        } else {
            Refusal::NotSupported {
                message: r.to_string(),
            }
        }
    }
}
