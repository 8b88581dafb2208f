//! myveil command line: serve, check, keygen, user and admin management, backups,
//! migrations.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
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
    }
}

fn migrate(config: Config, command: MigrateCommand) -> Result<()> {
    match command {
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
