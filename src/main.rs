//! myveil command line: serve, check, and user management.

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
    /// Create the master key and a keyring for the policy's protected columns (keys_dir).
    Keygen,
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
        Command::User { command } => user(config, command),
        Command::Admin { command } => admin(config, command),
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
                    }
                }
            }
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        if let Some(admin) = &shared.config.admin {
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
            tokio::spawn(async move {
                if let Err(e) = myveil::admin::serve(state, listener, stop).await {
                    tracing::error!(error = %e, "admin port failed");
                }
            });
        }
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
    use myveil::crypto::keyring::{Keyring, Purpose};

    let Some(protection) = &config.protection else {
        bail!("the configuration has no [protection] section (policy_dir, keys_dir)");
    };
    let policy = myveil::policy::Policy::load_dir(&config.resolve(&protection.policy_dir))?;
    let keys = policy.required_keys();
    let wanted: Vec<(Purpose, &str)> = keys.iter().map(|(p, s)| (*p, s.as_str())).collect();
    let dir = config.resolve(&protection.keys_dir);
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
