//! telemetry::metrics: process-wide counters, gauges and histograms on plain atomics (no locks
//! on the statement path), rendered in the Prometheus text exposition format for `/metrics`.
//!
//! Labels are fixed small sets (statement kinds, limiter kinds), never user-supplied strings,
//! so the output stays bounded and carries no names, values or SQL.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// What a client command was, for the per-kind counters and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Prepare,
    Execute,
    Other,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Query, Kind::Prepare, Kind::Execute, Kind::Other];

    fn label(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Prepare => "prepare",
            Kind::Execute => "execute",
            Kind::Other => "other",
        }
    }
}

/// Which limiter turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    AdminLogin,
    AdminApi,
    MysqlAuth,
}

impl Limited {
    const ALL: [Limited; 3] = [Limited::AdminLogin, Limited::AdminApi, Limited::MysqlAuth];

    fn label(self) -> &'static str {
        match self {
            Limited::AdminLogin => "admin_login",
            Limited::AdminApi => "admin_api",
            Limited::MysqlAuth => "mysql_auth",
        }
    }
}

struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Buckets are stored non-cumulative; rendering adds them up.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// Every metric myveil exports.
pub struct Metrics {
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    statements: [AtomicU64; 4],
    latency: [Histogram; 4],
    encrypted: AtomicU64,
    decrypted: AtomicU64,
    decrypt_failures: AtomicU64,
    refusals: AtomicU64,
    plan_hits: AtomicU64,
    plan_misses: AtomicU64,
    auth_failures: AtomicU64,
    token_logins: AtomicU64,
    rate_limited: [AtomicU64; 3],
    admin_requests: AtomicU64,
    backend_waiting: AtomicI64,
    backend_full: AtomicU64,
    prepared_again: AtomicU64,
}

/// The process's metrics.
pub static METRICS: Metrics = Metrics::new();

/// Counts an open client session for as long as it lives.
pub struct ConnectionGuard(());

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        METRICS.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Self {
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            statements: [const { AtomicU64::new(0) }; 4],
            latency: [const { Histogram::new() }; 4],
            encrypted: AtomicU64::new(0),
            decrypted: AtomicU64::new(0),
            decrypt_failures: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            plan_hits: AtomicU64::new(0),
            plan_misses: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            token_logins: AtomicU64::new(0),
            rate_limited: [const { AtomicU64::new(0) }; 3],
            admin_requests: AtomicU64::new(0),
            backend_waiting: AtomicI64::new(0),
            backend_full: AtomicU64::new(0),
            prepared_again: AtomicU64::new(0),
        }
    }

    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
        ConnectionGuard(())
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Relaxed)
    }

    fn index(kind: Kind) -> usize {
        Kind::ALL.iter().position(|&k| k == kind).unwrap_or(3)
    }

    /// One client command answered, with its round-trip time through myveil.
    pub fn statement(&self, kind: Kind, elapsed: Duration) {
        let i = Self::index(kind);
        self.statements[i].fetch_add(1, Relaxed);
        self.latency[i].observe(elapsed);
    }

    pub fn encrypted(&self) {
        self.encrypted.fetch_add(1, Relaxed);
    }
    pub fn decrypted(&self) {
        self.decrypted.fetch_add(1, Relaxed);
    }
    pub fn decrypt_failed(&self) {
        self.decrypt_failures.fetch_add(1, Relaxed);
    }
    pub fn refused(&self) {
        self.refusals.fetch_add(1, Relaxed);
    }
    /// A statement on protected data decided from a cached plan (`hit`), or analyzed.
    pub fn plan(&self, hit: bool) {
        if hit {
            self.plan_hits.fetch_add(1, Relaxed);
        } else {
            self.plan_misses.fetch_add(1, Relaxed);
        }
    }
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }
    pub fn token_login(&self) {
        self.token_logins.fetch_add(1, Relaxed);
    }
    pub fn rate_limited(&self, what: Limited) {
        let i = Limited::ALL.iter().position(|&l| l == what).unwrap_or(0);
        self.rate_limited[i].fetch_add(1, Relaxed);
    }
    pub fn admin_request(&self) {
        self.admin_requests.fetch_add(1, Relaxed);
    }

    /// A client starts (1) or stops (-1) waiting for a backend connection.
    pub fn backend_wait(&self, delta: i64) {
        self.backend_waiting.fetch_add(delta, Relaxed);
    }

    /// A client was turned away: every backend connection of its account was in use.
    pub fn backend_full(&self) {
        self.backend_full.fetch_add(1, Relaxed);
    }

    /// A multiplexed session's statement was prepared on another backend connection.
    pub fn prepared_again(&self) {
        self.prepared_again.fetch_add(1, Relaxed);
    }

    /// Statements prepared again so far.
    pub fn prepared_again_count(&self) -> u64 {
        self.prepared_again.load(Relaxed)
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "myveil_connections_open",
            "gauge",
            "Client sessions open now.",
            self.connections_open.load(Relaxed).to_string(),
        );
        one(
            "myveil_connections_total",
            "counter",
            "Client sessions accepted.",
            self.connections_total.load(Relaxed).to_string(),
        );
        one(
            "myveil_encrypt_total",
            "counter",
            "Values sealed for protected columns.",
            self.encrypted.load(Relaxed).to_string(),
        );
        one(
            "myveil_decrypt_total",
            "counter",
            "Values opened from protected columns.",
            self.decrypted.load(Relaxed).to_string(),
        );
        one(
            "myveil_decrypt_failures_total",
            "counter",
            "Stored values that failed to open (tampered, wrong column, unknown key).",
            self.decrypt_failures.load(Relaxed).to_string(),
        );
        one(
            "myveil_refusals_total",
            "counter",
            "Statements refused before reaching the database.",
            self.refusals.load(Relaxed).to_string(),
        );
        one(
            "myveil_plan_cache_hits_total",
            "counter",
            "Statements on protected data rewritten from a cached plan, without parsing.",
            self.plan_hits.load(Relaxed).to_string(),
        );
        one(
            "myveil_plan_cache_misses_total",
            "counter",
            "Statements on protected data analyzed (no plan of their form, or none usable).",
            self.plan_misses.load(Relaxed).to_string(),
        );
        one(
            "myveil_auth_failures_total",
            "counter",
            "Failed MySQL-port logins.",
            self.auth_failures.load(Relaxed).to_string(),
        );
        one(
            "myveil_token_logins_total",
            "counter",
            "MySQL-port logins with a SQL token.",
            self.token_logins.load(Relaxed).to_string(),
        );
        one(
            "myveil_backend_waiting_clients",
            "gauge",
            "Clients waiting now for a backend connection (their account is at max_backend_connections).",
            self.backend_waiting.load(Relaxed).to_string(),
        );
        one(
            "myveil_backend_full_total",
            "counter",
            "Clients turned away with \"Too many connections\": the wait queue was full or their wait ended.",
            self.backend_full.load(Relaxed).to_string(),
        );
        one(
            "myveil_statements_prepared_again_total",
            "counter",
            "Prepared statements of multiplexed sessions prepared again on another backend connection.",
            self.prepared_again.load(Relaxed).to_string(),
        );
        one(
            "myveil_admin_requests_total",
            "counter",
            "Requests to the admin port.",
            self.admin_requests.load(Relaxed).to_string(),
        );

        let _ = writeln!(
            out,
            "# HELP myveil_rate_limited_total Requests turned away by a rate limit.\n# TYPE myveil_rate_limited_total counter"
        );
        for (i, l) in Limited::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "myveil_rate_limited_total{{limit=\"{}\"}} {}",
                l.label(),
                self.rate_limited[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP myveil_statements_total Client commands answered, by kind.\n# TYPE myveil_statements_total counter"
        );
        for (i, k) in Kind::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "myveil_statements_total{{kind=\"{}\"}} {}",
                k.label(),
                self.statements[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP myveil_statement_duration_seconds Time from a command's arrival to its last reply packet.\n# TYPE myveil_statement_duration_seconds histogram"
        );
        for (i, k) in Kind::ALL.iter().enumerate() {
            let h = &self.latency[i];
            let mut cumulative = 0;
            for (b, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[b].load(Relaxed);
                let _ = writeln!(
                    out,
                    "myveil_statement_duration_seconds_bucket{{kind=\"{}\",le=\"{bound}\"}} {cumulative}",
                    k.label()
                );
            }
            let count = h.count.load(Relaxed);
            let _ = writeln!(
                out,
                "myveil_statement_duration_seconds_bucket{{kind=\"{}\",le=\"+Inf\"}} {count}",
                k.label()
            );
            let _ = writeln!(
                out,
                "myveil_statement_duration_seconds_sum{{kind=\"{}\"}} {}",
                k.label(),
                h.sum_ns.load(Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "myveil_statement_duration_seconds_count{{kind=\"{}\"}} {count}",
                k.label()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counted() {
        let m = Metrics::new();
        m.statement(Kind::Query, Duration::from_micros(80));
        m.statement(Kind::Query, Duration::from_millis(3));
        m.statement(Kind::Query, Duration::from_secs(10));
        m.statement(Kind::Execute, Duration::from_micros(300));
        m.rate_limited(Limited::MysqlAuth);
        let text = m.render();
        for line in [
            "myveil_statements_total{kind=\"query\"} 3",
            "myveil_statement_duration_seconds_bucket{kind=\"query\",le=\"0.0001\"} 1",
            "myveil_statement_duration_seconds_bucket{kind=\"query\",le=\"0.005\"} 2",
            "myveil_statement_duration_seconds_bucket{kind=\"query\",le=\"2.5\"} 2",
            "myveil_statement_duration_seconds_bucket{kind=\"query\",le=\"+Inf\"} 3",
            "myveil_statement_duration_seconds_count{kind=\"execute\"} 1",
            "myveil_rate_limited_total{limit=\"mysql_auth\"} 1",
            "myveil_rate_limited_total{limit=\"admin_api\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }
}
