//! myveil command line: serve, check, keygen, user and admin management, backups,
//! migrations.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use myveil::auth::UserStore;
use myveil::config::Config;
use myveil::frontend::{self, Shared};

#[derive(Parser)]
#[command(
    name = "myveil",
    version,
    about = "Transparent encrypting proxy for MySQL and MariaDB"
)]
struct Cli {
    /// Configuration file (TOML); MYVEIL_SECTION__KEY variables override its values.
    #[arg(
        long,
        short,
        global = true,
        env = "MYVEIL_CONFIG",
        default_value = "myveil.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve,
    /// Validate the configuration, users, credentials and TLS files, and log in to the backend
    /// with every account.
    Check,
    /// Create the master key and a keyring for the policy's protected columns (keys_dir), and
    /// the backup keys ([backup] public_key, signing_key); existing backup keys are kept.
    Keygen,
    /// Encrypted, signed backups of the configured databases.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Manage administrators of the admin port ([admin] users_file).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage proxy users (the users file named in the configuration).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Bring the plaintext columns of an existing database under the policy.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Rotate, re-encrypt with and retire data keys; see what uses each.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Per key: purpose, scope, state, seals made, and how many cells use it (reads every
    /// protected column unless --no-scan).
    Status {
        #[arg(long)]
        no_scan: bool,
    },
    /// Make a new primary data key (per column key in use, or for one column): new writes
    /// seal under it, older keys still open. Then reload every instance (kill -HUP, or
    /// POST /v1/keys/reload) and run `keys reencrypt`.
    Rotate {
        /// Only this column (`db.table.column` or `table.column`).
        #[arg(long)]
        column: Option<String>,
        /// Also a new blind-index key (searches match either index until re-encryption).
        #[arg(long)]
        blind_index: bool,
        /// Rotate the master key instead: every data key is wrapped again, no data changes.
        #[arg(long, conflicts_with_all = ["column", "blind_index"])]
        kek: bool,
    },
    /// Re-seal every cell under an older key with the primary (and refill blind indexes),
    /// online, batched, throttled, checkpointed and resumable like `migrate apply`. Blind-index
    /// keys no cell uses any more stop being searched.
    Reencrypt {
        /// Rows a second at most (0: as fast as the server takes them).
        #[arg(long, default_value_t = myveil::migrate::plan::DEFAULT_RATE)]
        rate: u64,
        /// Rows per batch.
        #[arg(long, default_value_t = myveil::migrate::apply::DEFAULT_BATCH)]
        batch: usize,
    },
    /// Retire a key no cell uses any more (refused while one does, or while it is primary).
    Retire { id: u32 },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Show, for every policy column, what its table needs (the exact DDL and how the server
    /// runs it), its rows, and an estimate of time and extra space. Changes nothing.
    Plan {
        /// Rows sealed a second, for the time estimate.
        #[arg(long, default_value_t = myveil::migrate::plan::DEFAULT_RATE)]
        rate: u64,
        /// Rows sampled per column for its average length (0: none).
        #[arg(long, default_value_t = 10_000)]
        sample: u64,
    },
    /// Seal the existing plaintext of every policy column online: the plan's DDL, then
    /// batches by primary key, throttled and checkpointed (run it again to resume). Apps
    /// keep working through myveil meanwhile.
    Apply {
        /// Rows a second at most (0: as fast as the server takes them).
        #[arg(long, default_value_t = myveil::migrate::plan::DEFAULT_RATE)]
        rate: u64,
        /// Rows per batch.
        #[arg(long, default_value_t = myveil::migrate::apply::DEFAULT_BATCH)]
        batch: usize,
    },
    /// Decrypt every policy column back to plaintext where it is (the undo of apply). Needs
    /// --decrypt-to-plaintext. Then take the columns out of the policy, reload, and run it
    /// again for cells written meanwhile.
    Revert {
        /// Yes: write the plaintext of every protected cell back into the database.
        #[arg(long)]
        decrypt_to_plaintext: bool,
        #[arg(long, default_value_t = myveil::migrate::plan::DEFAULT_RATE)]
        rate: u64,
        #[arg(long, default_value_t = myveil::migrate::apply::DEFAULT_BATCH)]
        batch: usize,
    },
    /// Read every cell of every policy column and report cells that are not envelopes, are
    /// under an unknown or retired key, do not open, or whose blind index does not match.
    /// Exits non-zero on any.
    Verify,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add an administrator: role admin, operator or auditor.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List administrators and roles.
    List,
    /// Remove an administrator.
    Remove { name: String },
    /// Change an administrator's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Enroll a TOTP second factor (prints the secret and otpauth URI once), or remove it.
    Totp {
        name: String,
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Dump the configured databases ([backup] databases) into a new backup file.
    Create {
        /// Directory to write to (default: [backup] dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Database to dump instead of the configured ones (repeatable).
        #[arg(long = "database")]
        databases: Vec<String>,
    },
    /// Check a backup's signature, digests and chunks; with the private key, decrypt it too.
    Verify {
        file: PathBuf,
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// Ed25519 verifying key to trust (default: [backup] verify_key, or signing_key.pub).
        #[arg(long)]
        verify_key: Option<PathBuf>,
    },
    /// Restore a backup into a database (offline; needs the RSA private key).
    Restore {
        file: PathBuf,
        #[arg(long)]
        private_key: PathBuf,
        /// Target database; created when missing, refused when not empty unless --force.
        #[arg(long)]
        into: String,
        /// Which database of the backup (needed when it holds several).
        #[arg(long)]
        database: Option<String>,
        /// Replace the target's tables, views, routines and triggers that the backup holds.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        verify_key: Option<PathBuf>,
    },
    /// List the backups in [backup] dir with their manifests.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        verify_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user with a role; the password is prompted for, or read from stdin.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and roles.
    List,
    /// Remove a user.
    Remove { name: String },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config =
        Config::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Check => check(config),
        Command::Keygen => keygen(config),
        Command::Backup { command } => backup(config, command),
        Command::User { command } => user(config, command),
        Command::Admin { command } => admin(config, command),
        Command::Migrate { command } => migrate(config, command),
        Command::Keys { command } => keys(config, command),
    }
}

fn migrate(config: Config, command: MigrateCommand) -> Result<()> {
    match command {
        MigrateCommand::Apply { rate, batch } => {
            myveil::telemetry::init(&config.log.level);
            let shared = Shared::new(config)?;
            let (reports, _) =
                run_job(&shared, myveil::migrate::apply::Mode::Encrypt, rate, batch)?;
            let mut out = std::io::stdout().lock();
            for r in &reports {
                writeln!(
                    out,
                    "{}.{} ({}): {} cells sealed, {} already sealed, {} left to newer writes, {:.1} s",
                    r.database,
                    r.table,
                    r.columns.join(", "),
                    r.sealed,
                    r.already,
                    r.raced,
                    r.seconds
                )?;
            }
            writeln!(
                out,
                "done: every cell is an envelope; the columns are marked done (plaintext cells are refused from now on). \
                 Old plaintext may linger in InnoDB's free space, undo log, binary logs and backups: rebuild the tables \
                 (OPTIMIZE TABLE) and rotate those out."
            )?;
            Ok(())
        }
        MigrateCommand::Revert {
            decrypt_to_plaintext,
            rate,
            batch,
        } => {
            if !decrypt_to_plaintext {
                bail!(
                    "revert writes the plaintext of every protected cell back into the database: \
                     give --decrypt-to-plaintext to mean it"
                );
            }
            myveil::telemetry::init(&config.log.level);
            let shared = Shared::new(config)?;
            let (reports, _) = run_job(&shared, myveil::migrate::apply::Mode::Revert, rate, batch)?;
            let mut out = std::io::stdout().lock();
            for r in &reports {
                writeln!(
                    out,
                    "{}.{} ({}): {} cells back to plaintext, {:.1} s",
                    r.database,
                    r.table,
                    r.columns.join(", "),
                    r.sealed,
                    r.seconds
                )?;
            }
            writeln!(
                out,
                "the columns stay mixed (read either way): take them out of the policy, reload every instance, \
                 and run revert again for cells written through myveil meanwhile"
            )?;
            Ok(())
        }
        MigrateCommand::Verify => {
            use myveil::migrate::verify;
            let shared = Shared::new(config)?;
            let protection = shared.protection.load_full();
            let keyring = shared
                .keyring
                .load_full()
                .context("no keyring: run `myveil keygen` first")?;
            let line = ProgressLine::new();
            let progress = |scope: &str, cells: u64| {
                if line.tty {
                    line.text(&format!("verifying {scope}: {cells} cells"));
                }
            };
            let reports = runtime()?.block_on(async {
                let mut conn = mysql_async::Conn::new(shared.control_opts()?)
                    .await
                    .context("control connection")?;
                let r = verify::verify(&mut conn, &protection.policy, &keyring, &progress)
                    .await
                    .context("reading the protected columns");
                let _ = conn.disconnect().await;
                r
            });
            line.done();
            let reports = reports?;
            std::io::stdout()
                .lock()
                .write_all(verify::render(&reports).as_bytes())?;
            let bad: u64 = reports.iter().map(|r| r.problems()).sum();
            if bad > 0 {
                bail!("{bad} cells are not as they must be (above)");
            }
            Ok(())
        }
        MigrateCommand::Plan { rate, sample } => {
            use myveil::migrate::plan;
            let shared = Shared::new(config)?;
            let protection = shared.protection.load_full();
            let (server, plans) = runtime()?.block_on(async {
                let mut conn = mysql_async::Conn::new(shared.control_opts()?)
                    .await
                    .context("control connection")?;
                let (server, tables) = plan::load(&mut conn, &protection.policy, sample)
                    .await
                    .context("reading information_schema")?;
                let _ = conn.disconnect().await;
                let plans = plan::plan(&protection.policy, &tables, server, rate);
                Ok::<_, anyhow::Error>((server, plans))
            })?;
            let mut out = std::io::stdout().lock();
            out.write_all(plan::render(&plans, server, rate).as_bytes())?;
            if plans.iter().any(|p| !p.blockers.is_empty()) {
                bail!("some columns cannot be migrated as they are (BLOCKED above)");
            }
            Ok(())
        }
    }
}

/// Runs `migrate apply`, `keys reencrypt` or `migrate revert` with a progress line on a
/// terminal, a log line every 5 s otherwise.
fn run_job(
    shared: &Shared,
    mode: myveil::migrate::apply::Mode,
    rate: u64,
    batch: usize,
) -> Result<(
    Vec<myveil::migrate::apply::TableReport>,
    Arc<myveil::crypto::keyring::Keyring>,
)> {
    use myveil::migrate::apply;
    let protection = shared.protection.load_full();
    let keyring = shared
        .keyring
        .load_full()
        .context("no keyring: run `myveil keygen` first")?;
    let line = ProgressLine::new();
    let logged = std::sync::Mutex::new(std::time::Instant::now());
    let verb = match mode {
        apply::Mode::Encrypt => "migrate apply",
        apply::Mode::Reencrypt => "keys reencrypt",
        apply::Mode::Revert => "migrate revert",
    };
    let progress = |p: &apply::Progress| {
        if line.tty {
            let pct = p
                .rows
                .saturating_mul(100)
                .checked_div(p.total)
                .map(|pct| format!(" {:>3}%", pct.min(100)))
                .unwrap_or_default();
            line.text(&format!(
                "{verb}: {}.{} {}{pct} {} rows, {:.0} rows/s",
                p.database, p.table, p.phase, p.rows, p.rate
            ));
        } else if let Ok(mut last) = logged.lock()
            && (last.elapsed().as_secs() >= 5 || p.phase == "done")
        {
            *last = std::time::Instant::now();
            tracing::info!(database = %p.database, table = %p.table, phase = p.phase, rows = p.rows, total = p.total, rate = p.rate as u64, "{verb}");
        }
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let options = apply::Options { rate, batch };
    let reports = runtime()?.block_on(async {
        apply::run(
            mode,
            shared.control_opts()?,
            &protection.policy,
            &keyring,
            &options,
            &progress,
            &cancel,
        )
        .await
        .map_err(anyhow::Error::from)
    });
    line.done();
    // Its seals count against the keys' budget, as the proxy's do (added to usage.toml).
    if let Err(e) = keyring.save_usage() {
        tracing::warn!(error = %e, "could not save key usage counts");
    }
    Ok((reports?, keyring))
}

/// Reads every protected column (migrate verify's scan) for what uses each key.
fn scan_cells(
    shared: &Shared,
    keyring: &myveil::crypto::keyring::Keyring,
) -> Result<Vec<myveil::migrate::verify::ColumnReport>> {
    let protection = shared.protection.load_full();
    let line = ProgressLine::new();
    let progress = |scope: &str, cells: u64| {
        if line.tty {
            line.text(&format!("reading {scope}: {cells} cells"));
        }
    };
    let r = runtime()?.block_on(async {
        let mut conn = mysql_async::Conn::new(shared.control_opts()?)
            .await
            .context("control connection")?;
        let r = myveil::migrate::verify::verify(&mut conn, &protection.policy, keyring, &progress)
            .await
            .context("reading the protected columns");
        let _ = conn.disconnect().await;
        r
    });
    line.done();
    r
}

/// The live instances of `ring`'s keyring that have not loaded its generation, and whether
/// `myveil.instances` can tell: it is made where missing, and until it is two heartbeats
/// old an instance may not have reported into it yet.
fn stale_instances(
    shared: &Shared,
    ring: &myveil::crypto::keyring::Keyring,
) -> Result<(bool, Vec<myveil::migrate::state::Instance>)> {
    use mysql_async::prelude::Queryable;
    use myveil::migrate::state;
    runtime()?.block_on(async {
        let mut conn = mysql_async::Conn::new(shared.control_opts()?)
            .await
            .context("control connection")?;
        state::ensure(&mut conn)
            .await
            .context("creating the myveil schema")?;
        let age: Option<Option<i64>> = conn
            .query_first(
                "SELECT TIMESTAMPDIFF(SECOND, CREATE_TIME, CURRENT_TIMESTAMP) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'myveil' AND TABLE_NAME = 'instances'",
            )
            .await?;
        let known = age
            .flatten()
            .is_some_and(|a| a >= 2 * state::INSTANCE_HEARTBEAT.as_secs() as i64);
        let stale = state::stale_instances(&mut conn, &ring.identity(), &ring.generation())
            .await
            .context("reading myveil.instances")?;
        let _ = conn.disconnect().await;
        Ok((known, stale))
    })
}

/// One line per instance: where it runs and when it last reported.
fn instance_list(list: &[myveil::migrate::state::Instance]) -> String {
    list.iter()
        .map(|i| {
            format!(
                "{} pid {} (keyring generation {}, reported {} s ago)",
                i.host, i.pid, i.generation, i.age
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Cells (column keys) and blind indexes (blind-index keys) per key id.
fn cells_by_key(reports: &[myveil::migrate::verify::ColumnReport]) -> BTreeMap<u32, u64> {
    let mut by: BTreeMap<u32, u64> = BTreeMap::new();
    for r in reports {
        for (k, n) in r.keys.iter().chain(&r.blind_keys) {
            *by.entry(*k).or_default() += n;
        }
    }
    by
}

fn keys(config: Config, command: KeysCommand) -> Result<()> {
    use myveil::crypto::keyring::{Keyring, Purpose, Status};
    let p = config
        .protection
        .as_ref()
        .context("no [protection] table in the configuration")?;
    let dir = config.resolve(&p.keys_dir);
    let reload = "reload every instance: kill -HUP each `myveil serve`, or POST /v1/keys/reload";
    match command {
        KeysCommand::Rotate {
            column,
            blind_index,
            kek,
        } => {
            let mut ring = Keyring::load(&dir).context("loading the keyring")?;
            let mut out = std::io::stdout().lock();
            if kek {
                ring.rotate_kek().context("rotating the master key")?;
                writeln!(
                    out,
                    "master key rotated: every data key is wrapped under the new one, no data changed \
                     (the old pair is kept as *.prev); {reload}"
                )?;
                return Ok(());
            }
            let policy = myveil::policy::Policy::load_dir(&config.resolve(&p.policy_dir))?;
            let cols: Vec<&myveil::policy::Protected> = match &column {
                None => policy.columns().iter().collect(),
                Some(name) => {
                    let parts: Vec<&str> = name.split('.').collect();
                    let (db, table, col) = match parts.as_slice() {
                        [d, t, c] => (Some(*d), *t, *c),
                        [t, c] => (None, *t, *c),
                        _ => bail!("--column is db.table.column or table.column"),
                    };
                    let found: Vec<_> = policy
                        .columns()
                        .iter()
                        .filter(|c| {
                            c.table == table
                                && c.column.eq_ignore_ascii_case(col)
                                && db.is_none_or(|d| c.database.as_deref().is_none_or(|x| x == d))
                        })
                        .collect();
                    if found.is_empty() {
                        bail!("no policy column {name}");
                    }
                    found
                }
            };
            let mut purposes = vec![Purpose::Column];
            if blind_index {
                purposes.push(Purpose::BlindIndex);
            }
            let mut made: Vec<(u32, Purpose, String)> = Vec::new();
            for purpose in purposes {
                for col in &cols {
                    if purpose == Purpose::BlindIndex && col.blind_index.is_none() {
                        continue;
                    }
                    // All columns: each key in use gets a successor (a shared `*` key once).
                    // One column: a key of its own, so the others keep theirs.
                    let scope = match (&column, ring.primary(purpose, col.key_scope())) {
                        (None, Some((id, _))) => ring
                            .info(id)
                            .map_or_else(|| col.key_scope().to_owned(), |i| i.scope.clone()),
                        _ => col.key_scope().to_owned(),
                    };
                    if made.iter().any(|(_, p, s)| *p == purpose && *s == scope) {
                        continue;
                    }
                    let id = ring.add(purpose, &scope, Status::Primary);
                    made.push((id, purpose, scope));
                }
            }
            ring.save().context("writing the keyring")?;
            for (id, purpose, scope) in &made {
                writeln!(out, "key {id}: new primary {purpose:?} key for {scope}")?;
            }
            // Instances report the keyring they run with into myveil.instances, which
            // `keys retire` reads: made here, so that they have by then.
            let made_table = Shared::new(config.clone())
                .map_err(anyhow::Error::from)
                .and_then(|shared| stale_instances(&shared, &ring));
            if let Err(e) = made_table {
                writeln!(
                    out,
                    "(could not reach the backend to make myveil.instances: {e:#}; `keys retire` makes it)"
                )?;
            }
            writeln!(
                out,
                "older keys still open (and blind-index keys are still searched); {reload}, then run `myveil keys reencrypt`"
            )?;
            Ok(())
        }
        KeysCommand::Status { no_scan } => {
            let shared = Shared::new(config)?;
            let ring = shared
                .keyring
                .load_full()
                .context("no keyring: run `myveil keygen` first")?;
            let by = if no_scan {
                None
            } else {
                Some(cells_by_key(&scan_cells(&shared, &ring)?))
            };
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>4}  {:<12} {:<28} {:<12} {:>12} {:>12}",
                "id", "purpose", "scope", "state", "seals", "cells"
            )?;
            for i in ring.infos() {
                let cells = match (&by, i.purpose) {
                    (Some(by), Purpose::Column | Purpose::BlindIndex) => {
                        by.get(&i.id).copied().unwrap_or(0).to_string()
                    }
                    _ => "-".into(),
                };
                writeln!(
                    out,
                    "{:>4}  {:<12} {:<28} {:<12} {:>12} {:>12}",
                    i.id,
                    format!("{:?}", i.purpose),
                    i.scope,
                    format!("{:?}", i.status),
                    ring.uses(i.id),
                    cells
                )?;
            }
            if !no_scan {
                // Read only: a status needs no DDL rights (retire makes the table).
                let all = runtime()?.block_on(async {
                    let mut conn = mysql_async::Conn::new(shared.control_opts()?).await?;
                    let all = myveil::migrate::state::instances(&mut conn, &ring.identity()).await;
                    let _ = conn.disconnect().await;
                    Ok::<_, anyhow::Error>(all?)
                })?;
                writeln!(
                    out,
                    "instances of this keyring (generation {}):",
                    ring.generation()
                )?;
                if all.is_empty() {
                    writeln!(
                        out,
                        "  none reported in the last {} s",
                        myveil::migrate::state::INSTANCE_LIVE_SECS
                    )?;
                }
                for i in &all {
                    let state = if i.generation == ring.generation() {
                        "current"
                    } else {
                        "stale: reload it"
                    };
                    writeln!(out, "  {}: {state}", instance_list(std::slice::from_ref(i)))?;
                }
            }
            Ok(())
        }
        KeysCommand::Reencrypt { rate, batch } => {
            myveil::telemetry::init(&config.log.level);
            let shared = Shared::new(config)?;
            let (reports, ring) = run_job(
                &shared,
                myveil::migrate::apply::Mode::Reencrypt,
                rate,
                batch,
            )?;
            let mut out = std::io::stdout().lock();
            for r in &reports {
                writeln!(
                    out,
                    "{}.{} ({}): {} cells re-sealed or re-indexed, {} left to newer writes, {:.1} s",
                    r.database,
                    r.table,
                    r.columns.join(", "),
                    r.sealed,
                    r.raced,
                    r.seconds
                )?;
            }
            // Blind-index keys no index is under any more stop being searched.
            let by = cells_by_key(&scan_cells(&shared, &ring)?);
            let mut file = Keyring::load(&dir).context("loading the keyring")?;
            // Security: an instance still on an older keyring may index under the key being
            // demoted; its rows would then not be found. Nothing is demoted until all have
            // reloaded.
            let (known, stale) = stale_instances(&shared, &file)?;
            if !known || !stale.is_empty() {
                writeln!(
                    out,
                    "blind-index keys left as they are: {}; {reload}, then run `myveil keys reencrypt` again",
                    if known {
                        format!(
                            "instances still on an older keyring: {}",
                            instance_list(&stale)
                        )
                    } else {
                        "myveil.instances is new, and instances may not have reported into it yet"
                            .to_owned()
                    }
                )?;
                return Ok(());
            }
            let mut demoted = Vec::new();
            let idle: Vec<u32> = file
                .infos()
                .filter(|i| {
                    i.purpose == Purpose::BlindIndex
                        && i.status == Status::Active
                        && by.get(&i.id).copied().unwrap_or(0) == 0
                })
                .map(|i| i.id)
                .collect();
            for id in idle {
                file.set_status(id, Status::DecryptOnly);
                demoted.push(id.to_string());
            }
            if !demoted.is_empty() {
                file.save().context("writing the keyring")?;
                writeln!(
                    out,
                    "blind-index keys {} hold no index any more: no longer searched; {reload}",
                    demoted.join(", ")
                )?;
            }
            Ok(())
        }
        KeysCommand::Retire { id } => {
            let shared = Shared::new(config)?;
            let ring = shared
                .keyring
                .load_full()
                .context("no keyring: run `myveil keygen` first")?;
            let info = ring
                .info(id)
                .cloned()
                .with_context(|| format!("no key {id}"))?;
            if info.status == Status::Primary {
                bail!(
                    "key {id} is the primary {:?} key for {}: rotate first",
                    info.purpose,
                    info.scope
                );
            }
            if matches!(info.purpose, Purpose::Column | Purpose::BlindIndex) {
                let n = cells_by_key(&scan_cells(&shared, &ring)?)
                    .get(&id)
                    .copied()
                    .unwrap_or(0);
                if n > 0 {
                    bail!("{n} cells still use key {id}: run `myveil keys reencrypt` first");
                }
            }
            // Security: an instance that has not reloaded since the key stopped being
            // primary may still seal under it.
            let file = Keyring::load(&dir).context("loading the keyring")?;
            let (known, stale) = stale_instances(&shared, &file)?;
            if !known {
                bail!(
                    "instances report the keyring they run with to myveil.instances, which is new: \
                     run this again in {} s, once each had time to report",
                    2 * myveil::migrate::state::INSTANCE_HEARTBEAT.as_secs()
                );
            }
            if !stale.is_empty() {
                bail!(
                    "{} instance(s) of this keyring have not loaded it since it changed: {}; {reload}, then run this again",
                    stale.len(),
                    instance_list(&stale)
                );
            }
            let mut file = file;
            file.set_status(id, Status::Retired);
            file.save().context("writing the keyring")?;
            writeln!(
                std::io::stdout().lock(),
                "key {id} retired: it opens nothing from now on; {reload}"
            )?;
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(config: Config) -> Result<()> {
    myveil::telemetry::init(&config.log.level);
    runtime()?.block_on(async {
        let listener = frontend::bind(&config).await?;
        let shared = Arc::new(Shared::new(config)?);
        tracing::info!(address = %listener.local_addr()?, backend = %shared.config.backend.address, "myveil listening");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin_state = match &shared.config.admin {
            Some(admin) => {
                let state = Arc::new(myveil::admin::AdminState::new(
                    shared.clone(),
                    &myveil::limits::LimitClock::default(),
                )?);
                let listener = tokio::net::TcpListener::bind(admin.address)
                    .await
                    .with_context(|| format!("admin port {}", admin.address))?;
                let https = admin.tls_cert.is_some();
                tracing::info!(address = %listener.local_addr()?, https, "admin port listening");
                let stop = stop_rx.clone();
                let served = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = myveil::admin::serve(served, listener, stop).await {
                        tracing::error!(error = %e, "admin port failed");
                    }
                });
                Some(state)
            }
            None => None,
        };
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let signals_shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => {
                        match signals_shared.reload_users() {
                            Ok(n) => tracing::info!(users = n, "users reloaded"),
                            Err(e) => tracing::error!(error = %e, "users reload failed; keeping the old users"),
                        }
                        // Keys first: a new policy may need a key a rotation just made.
                        match signals_shared.reload_keys() {
                            Ok(n) => tracing::info!(keys = n, "keys reloaded"),
                            Err(e) => tracing::error!(error = %e, "keys reload failed; keeping the old keys"),
                        }
                        match signals_shared.reload_policy() {
                            Ok(n) => tracing::info!(columns = n, "policy reloaded"),
                            Err(e) => tracing::error!(error = %e, "policy reload failed; keeping the old policy"),
                        }
                        if let Some(state) = admin_state.clone() {
                            // bcrypt runs in the load (the decoy hash): off the async workers.
                            match tokio::task::spawn_blocking(move || state.reload_admins()).await {
                                Ok(Ok(n)) => tracing::info!(admins = n, "admins reloaded"),
                                Ok(Err(e)) => tracing::error!(error = %e, "admins reload failed; keeping the old admins"),
                                Err(e) => tracing::error!(error = %e, "admins reload failed"),
                            }
                        }
                    }
                }
            }
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        frontend::serve(listener, shared, stop_rx).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn check(config: Config) -> Result<()> {
    let shared = Shared::new(config)?;
    let users = shared.users.load();
    for user in users.users() {
        if !shared.config.roles.contains_key(&user.role) {
            bail!(
                "user {} has role {}, which the configuration does not define",
                user.name,
                user.role
            );
        }
    }
    let problems = runtime()?.block_on(async {
        for (name, account) in &shared.config.backend.accounts {
            let password = shared.config.account_password(name)?;
            shared
                .pool
                .probe(name, &account.user, &password)
                .await
                .with_context(|| format!("logging in to the backend as account {name}"))?;
        }
        let protection = shared.protection.load_full();
        if !protection.is_active() {
            return Ok::<_, anyhow::Error>(Vec::new());
        }
        let mut conn = mysql_async::Conn::new(shared.control_opts()?)
            .await
            .context("control connection")?;
        let snapshot = myveil::backend::schema::load(&mut conn, &protection.policy)
            .await
            .context("reading information_schema")?;
        let _ = conn.disconnect().await;
        {
            let mut err = std::io::stderr().lock();
            for d in &snapshot.dependents {
                let on = d
                    .on_table
                    .as_deref()
                    .map(|t| format!(" (fires on {t}; statements on {t} are refused)"))
                    .unwrap_or_else(|| " (statements naming it are refused)".to_owned());
                writeln!(
                    err,
                    "warning: {} {}.{} reaches protected data through {}{on}",
                    d.kind, d.database, d.name, d.reads
                )?;
            }
        }
        Ok(myveil::backend::schema::check(
            &snapshot,
            &protection.policy,
        ))
    })?;
    if !problems.is_empty() {
        let mut err = std::io::stderr().lock();
        for p in &problems {
            writeln!(err, "schema: {p}")?;
        }
        bail!(
            "{} schema problem(s) with the protected columns",
            problems.len()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration OK: {} roles, {} users, {} backend accounts, {} protected columns",
        shared.config.roles.len(),
        users.users().count(),
        shared.config.backend.accounts.len(),
        shared.protection.load().policy.columns().len()
    )?;
    Ok(())
}

fn keygen(config: Config) -> Result<()> {
    use myveil::backup::keys::Generated;
    use myveil::crypto::keyring::{Keyring, Purpose};

    let public = config.resolve(&config.backup.public_key);
    let signing = config.resolve(&config.backup.signing_key);
    let generated = myveil::backup::keys::generate(&public, &signing)?;
    {
        let mut out = std::io::stdout().lock();
        for g in &generated {
            match g {
                Generated::Written(p) => writeln!(out, "wrote backup key {} (0600)", p.display())?,
                Generated::Kept(p) => writeln!(out, "kept backup key {}", p.display())?,
            }
        }
        if generated.iter().any(|g| {
            matches!(g, Generated::Written(p) if p == &myveil::backup::keys::private_key_path(&public))
        }) {
            writeln!(
                out,
                "move {} off the proxy host: it is only needed to restore (keys/README.md)",
                myveil::backup::keys::private_key_path(&public).display()
            )?;
        }
    }
    let Some(protection) = &config.protection else {
        return Ok(());
    };
    let policy = myveil::policy::Policy::load_dir(&config.resolve(&protection.policy_dir))?;
    let keys = policy.required_keys();
    let wanted: Vec<(Purpose, &str)> = keys.iter().map(|(p, s)| (*p, s.as_str())).collect();
    let dir = config.resolve(&protection.keys_dir);
    if dir.join(myveil::crypto::keyring::MASTER_KEY_FILE).exists() {
        // Keys are never overwritten: rotating or adding keys is a keyring operation.
        writeln!(
            std::io::stdout().lock(),
            "kept the column keyring in {} (it already exists; keygen never overwrites keys)",
            dir.display()
        )?;
        return Ok(());
    }
    let ring = Keyring::generate(&dir, &wanted)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} (0600): {} keys",
        dir.display(),
        ring.infos().count()
    )?;
    for info in ring.infos() {
        writeln!(
            out,
            "  key {:>3}  {:<12} {:<24} {:?}",
            info.id,
            format!("{:?}", info.purpose),
            info.scope,
            info.status
        )?;
    }
    Ok(())
}

fn admin(config: Config, command: AdminCommand) -> Result<()> {
    use myveil::admin::users::{AdminRole, AdminStore, MIN_BCRYPT_COST};
    let Some(admin) = &config.admin else {
        bail!("the configuration has no [admin] section");
    };
    let path = config.resolve(&admin.users_file);
    let cost = config.users.bcrypt_cost.max(MIN_BCRYPT_COST);
    let mut store = AdminStore::load(&path)?;
    let mut out = std::io::stdout().lock();
    match command {
        AdminCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let role =
                AdminRole::parse(&role).context("role must be admin, operator or auditor")?;
            let password = read_password(password_stdin)?;
            store.add(&name, role, password.as_bytes(), cost)?;
            store.save(&path)?;
            writeln!(out, "added admin {name} with role {}", role.name())?;
        }
        AdminCommand::List => {
            for a in store.admins() {
                writeln!(out, "{}\t{}", a.name, a.role.name())?;
            }
        }
        AdminCommand::Remove { name } => {
            store.remove(&name)?;
            store.save(&path)?;
            writeln!(out, "removed admin {name}")?;
        }
        AdminCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            store.set_password(&name, password.as_bytes(), cost)?;
            store.save(&path)?;
            writeln!(out, "password changed for admin {name}")?;
        }
        AdminCommand::Totp { name, disable } => {
            if disable {
                store.disable_totp(&name)?;
                store.save(&path)?;
                writeln!(out, "second factor removed for admin {name}")?;
            } else {
                let secret = store.enroll_totp(&name)?;
                store.save(&path)?;
                writeln!(out, "secret: {secret}")?;
                writeln!(
                    out,
                    "uri: {}",
                    myveil::admin::totp::uri(&admin.issuer, &name, &secret)
                )?;
            }
        }
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> Result<Zeroizing<String>> {
    if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned());
        return Ok(trimmed);
    }
    let first = Zeroizing::new(rpassword::prompt_password("Password: ")?);
    let second = Zeroizing::new(rpassword::prompt_password("Again: ")?);
    if *first != *second {
        bail!("passwords do not match");
    }
    Ok(first)
}

fn user(config: Config, command: UserCommand) -> Result<()> {
    let path = config.resolve(&config.users.file);
    let cost = config.users.bcrypt_cost;
    let mut store = UserStore::load(&path)?;
    let mut out = std::io::stdout().lock();
    match command {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            if !config.roles.contains_key(&role) {
                bail!(
                    "role {role} is not defined in the configuration (roles: {})",
                    config.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            let password = read_password(password_stdin)?;
            store.add(&name, &role, password.as_bytes(), cost)?;
            store.save(&path)?;
            writeln!(out, "added {name} with role {role}")?;
        }
        UserCommand::List => {
            for u in store.users() {
                writeln!(out, "{}\t{}", u.name, u.role)?;
            }
        }
        UserCommand::Remove { name } => {
            store.remove(&name)?;
            store.save(&path)?;
            writeln!(out, "removed {name}")?;
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            store.set_password(&name, password.as_bytes(), cost)?;
            store.save(&path)?;
            writeln!(out, "password changed for {name}")?;
        }
    }
    Ok(())
}

/// Paths of the verifying key: the flag, else [backup] verify_key, else signing_key.pub.
fn verify_key(config: &Config, flag: Option<PathBuf>) -> Result<myveil::backup::VerifyKey> {
    let path = flag
        .or_else(|| config.backup.verify_key.clone())
        .map(|p| config.resolve(&p))
        .unwrap_or_else(|| {
            myveil::backup::keys::verify_key_path(&config.resolve(&config.backup.signing_key))
        });
    myveil::backup::VerifyKey::load(&path).context("loading the backup verifying key")
}

/// A terminal progress line on stderr, redrawn at most ten times a second; silent when
/// stderr is not a terminal.
struct ProgressLine {
    tty: bool,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ProgressLine {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            tty: std::io::stderr().is_terminal(),
            last: std::sync::Mutex::new(None),
        }
    }

    fn show(&self, p: &myveil::backup::Progress<'_>) {
        use myveil::backup::Phase;
        if !self.tty {
            return;
        }
        if p.phase == Phase::Finish {
            self.done();
            return;
        }
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.last.lock() {
            if last.is_some_and(|t| now.duration_since(t).as_millis() < 100) {
                return;
            }
            *last = Some(now);
        }
        let mib = p.bytes as f64 / (1 << 20) as f64;
        let what = match p.phase {
            Phase::Dump => "dumping",
            Phase::Verify => "verifying",
            Phase::Restore => "restoring",
            Phase::Finish => "",
        };
        let pct = p
            .total_bytes
            .filter(|t| *t > 0)
            .map(|t| format!(" {:>3}%", p.bytes.saturating_mul(100) / t))
            .unwrap_or_default();
        let table = if p.table.is_empty() {
            String::new()
        } else {
            format!(" {}.{} {} rows", p.database, p.table, p.rows)
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{what}{pct} {mib:.1} MiB{table}");
        let _ = err.flush();
    }

    /// A line of text, at most ten times a second.
    fn text(&self, text: &str) {
        if !self.tty {
            return;
        }
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.last.lock() {
            if last.is_some_and(|t| now.duration_since(t).as_millis() < 100) {
                return;
            }
            *last = Some(now);
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{text}");
        let _ = err.flush();
    }

    fn done(&self) {
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

fn backup(config: Config, command: BackupCommand) -> Result<()> {
    let line = ProgressLine::new();
    let show = |p: &myveil::backup::Progress<'_>| line.show(p);
    let result = backup_command(&config, command, &show);
    line.done();
    result
}

fn backup_command(
    config: &Config,
    command: BackupCommand,
    show: myveil::backup::ProgressFn<'_>,
) -> Result<()> {
    use myveil::backup;
    match command {
        BackupCommand::Create { out, databases } => {
            let policy = match &config.protection {
                Some(p) => Some(myveil::policy::Policy::load_dir(
                    &config.resolve(&p.policy_dir),
                )?),
                None => None,
            };
            let opts = backup::CreateOptions {
                opts: backup::connect_opts(config)?,
                databases: if databases.is_empty() {
                    config.backup.databases.clone()
                } else {
                    databases
                },
                dir: out.unwrap_or_else(|| config.resolve(&config.backup.dir)),
                public_key: config.resolve(&config.backup.public_key),
                signing_key: config.resolve(&config.backup.signing_key),
                source_host: config.backend.address.clone(),
                policy,
                retention: config.backup.retention,
            };
            let created = runtime()?.block_on(backup::create(&opts, show))?;
            let mut o = std::io::stdout().lock();
            writeln!(
                o,
                "wrote {} ({} bytes)",
                created.path.display(),
                created.bytes
            )?;
            writeln!(o, "  sha256 {}", created.file_sha256)?;
            print_manifest(&mut o, &created.manifest)?;
            for r in &created.removed {
                writeln!(o, "removed {} (retention)", r.display())?;
            }
        }
        BackupCommand::Verify {
            file,
            private_key,
            verify_key: vk,
        } => {
            let trusted = verify_key(config, vk)?;
            let key = private_key
                .map(|p| backup::UnwrapKey::load(&p))
                .transpose()?;
            let v = backup::verify(&file, &trusted, key.as_ref(), show)?;
            let mut o = std::io::stdout().lock();
            writeln!(
                o,
                "{}: OK (signature by {}, digests, {} chunks{})",
                file.display(),
                trusted.id,
                v.manifest.chunks,
                if v.decrypted {
                    ", decrypted and plaintext digest checked"
                } else {
                    "; pass --private-key to decrypt too"
                }
            )?;
            print_manifest(&mut o, &v.manifest)?;
        }
        BackupCommand::Restore {
            file,
            private_key,
            into,
            database,
            force,
            verify_key: vk,
        } => {
            let opts = backup::RestoreOptions {
                opts: backup::connect_opts(config)?,
                file,
                verify_key: verify_key(config, vk)?,
                private_key,
                into,
                database,
                force,
            };
            let r = runtime()?.block_on(backup::restore(&opts, show))?;
            let mut o = std::io::stdout().lock();
            writeln!(
                o,
                "restored {} into {}: {} tables, {} rows, {} views, {} routines, {} triggers",
                r.source,
                r.database,
                r.tables.len(),
                r.tables.iter().map(|t| t.rows).sum::<u64>(),
                r.views,
                r.routines,
                r.triggers
            )?;
            if r.key_ids.is_empty() {
                writeln!(o, "no protected cells: no myveil keys needed")?;
            } else {
                writeln!(
                    o,
                    "the myveil serving {} needs key ids: {}",
                    r.database,
                    r.key_ids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
        }
        BackupCommand::List {
            dir,
            verify_key: vk,
        } => {
            let trusted = verify_key(config, vk).ok();
            let dir = dir.unwrap_or_else(|| config.resolve(&config.backup.dir));
            let items = backup::list(&dir, trusted.as_ref())?;
            let mut o = std::io::stdout().lock();
            if items.is_empty() {
                writeln!(o, "no backups in {}", dir.display())?;
            }
            for item in items {
                let sig = match item.signature_ok {
                    Some(true) => "signature ok",
                    Some(false) => "SIGNATURE BAD",
                    None => "signature not checked",
                };
                writeln!(o, "{} ({} bytes, {sig})", item.path.display(), item.bytes)?;
                match (&item.manifest, &item.error) {
                    (Some(m), _) => print_manifest(&mut o, m)?,
                    (None, Some(e)) => writeln!(o, "  unreadable: {e}")?,
                    (None, None) => {}
                }
            }
        }
    }
    Ok(())
}

fn print_manifest(o: &mut impl Write, m: &myveil::backup::Manifest) -> Result<()> {
    writeln!(
        o,
        "  backup {} created {} from {} ({})",
        m.backup_id, m.created_at, m.source_host, m.server_version
    )?;
    for d in &m.databases {
        writeln!(
            o,
            "  database {}: {} tables, {} rows, {} views, {} routines, {} triggers",
            d.name,
            d.tables.len(),
            d.tables.iter().map(|t| t.rows).sum::<u64>(),
            d.views.len(),
            d.routines.len(),
            d.triggers.len()
        )?;
    }
    if !m.key_ids.is_empty() {
        writeln!(
            o,
            "  key ids in protected columns: {}",
            m.key_ids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}
