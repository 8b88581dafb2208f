//! telemetry: tracing setup. Logs carry connection spans, statement fingerprints, names,
//! codes and timings — never SQL literals, row values, passwords or keys.

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Libraries whose debug output quotes SQL text or values: silenced whatever the level.
const QUIET_TARGETS: [&str; 3] = ["sqlparser=off", "mysql_async=warn", "mysql_common=warn"];

/// Installs the global subscriber; `RUST_LOG` wins over the configured level.
pub fn init(level: &str) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Security: sqlparser logs every statement it parses (literals included) at debug level;
    // those records must never reach myveil's logs, even at TRACE.
    for directive in QUIET_TARGETS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
