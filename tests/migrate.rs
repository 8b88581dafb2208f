//! Migrations of existing plaintext tables, against the live server: every DDL step that
//! `migrate plan` prints runs as printed (its ALGORITHM clause included: the server refuses
//! a step it cannot run that way), and afterwards `check` finds nothing to report.

mod common;

use common::{TestDb, direct};
use mysql_async::prelude::*;
use myveil::migrate::plan::{self, Algorithm, Approach};
use myveil::policy::Policy;

fn policy(db: &str) -> Policy {
    let mut p = Policy::default();
    p.add_toml(
        &format!(
            r#"
[[column]]
database = "{db}"
table = "people"
column = "email"
type = "varchar(100)"
storage = "base64"
blind_index = "email_bidx"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "people"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "people"
column = "note"
type = "text"
storage = "base64"
roles = {{ app = "plaintext" }}
[[column]]
database = "{db}"
table = "nokey"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext" }}
"#
        ),
        "test",
    )
    .expect("policy");
    p
}

#[tokio::test]
async fn every_planned_step_runs_on_the_server_and_leaves_nothing_to_fix() {
    let db = TestDb::create("migplan").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, \
         ssn VARCHAR(16) NOT NULL DEFAULT '', note TEXT, KEY (email)) ENGINE=InnoDB",
    )
    .await
    .expect("create");
    c.query_drop("CREATE TABLE nokey (ssn VARCHAR(16)) ENGINE=InnoDB")
        .await
        .expect("create");
    for i in 0..50 {
        c.exec_drop(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            (
                i,
                format!("p{i}@example.com"),
                format!("{i:03}-45-6789"),
                "a note",
            ),
        )
        .await
        .expect("insert");
    }
    c.query_drop("ANALYZE TABLE people").await.expect("analyze");
    let policy = policy(&db.name);
    let (server, tables) = plan::load(&mut c, &policy, 1_000).await.expect("load");
    let plans = plan::plan(&policy, &tables, server, 1_000);
    let text = plan::render(&plans, server, 1_000);
    let of = |t: &str, col: &str| {
        plans
            .iter()
            .find(|p| p.table == t && p.column == col)
            .unwrap_or_else(|| panic!("a plan for {t}.{col}:\n{text}"))
    };
    // What each column needs, as a user would read it.
    assert_eq!(of("people", "email").approach, Approach::Widen, "{text}");
    assert_eq!(of("people", "ssn").approach, Approach::Shadow, "{text}");
    assert_eq!(of("people", "note").approach, Approach::Shadow, "{text}");
    assert!(
        of("nokey", "ssn")
            .blockers
            .iter()
            .any(|b| b.contains("primary key")),
        "{text}"
    );
    assert!(of("people", "ssn").rows > 0, "{text}");
    assert!(text.contains("ALGORITHM="), "{text}");
    // Nothing changed yet: plan only reads.
    let before: Vec<(String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people' ORDER BY ORDINAL_POSITION",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert_eq!(before.len(), 4);

    // Run the DDL as printed, with the copy into a shadow column done by hand (apply's
    // batches are tested below).
    for p in plans.iter().filter(|p| p.blockers.is_empty()) {
        for s in &p.steps {
            match &s.sql {
                Some(sql) => c
                    .query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}\n{text}")),
                None if s.kind != plan::StepKind::ShadowFill => {
                    assert_eq!(s.algorithm, Algorithm::Backfill)
                }
                None => {
                    c.query_drop(format!(
                        "UPDATE `{}`.`{}` SET `{col}__myveil` = `{col}`",
                        p.database,
                        p.table,
                        col = p.column
                    ))
                    .await
                    .expect("copy");
                }
            }
        }
    }
    let snapshot = myveil::backend::schema::load(&mut c, &policy)
        .await
        .expect("snapshot");
    let problems: Vec<String> = myveil::backend::schema::check(&snapshot, &policy)
        .into_iter()
        .filter(|p| !p.contains("nokey"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    // The old plaintext columns are gone; the widened one kept its rows.
    let left: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people' AND COLUMN_NAME LIKE '%myveil%'",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert!(left.is_empty(), "{left:?}");
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM people WHERE email LIKE 'p%@example.com'")
        .await
        .expect("count");
    assert_eq!(n, Some(50));
    // Planned again, nothing is left to change.
    let (server, tables) = plan::load(&mut c, &policy, 0).await.expect("load");
    let again = plan::plan(&policy, &tables, server, 1_000);
    for p in again.iter().filter(|p| p.table == "people") {
        assert!(
            p.steps.iter().all(|s| s.sql.is_none()),
            "{}",
            plan::render(&again, server, 1_000)
        );
    }
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// Log lines of this test binary (the proxy runs in-process).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_what_check_knows_and_a_too_narrow_write_names_the_fix() {
    let logs = Logs::default();
    let _ = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let db = TestDb::create("narrow").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop("CREATE TABLE narrow (id INT PRIMARY KEY, ssn VARCHAR(20))")
        .await
        .expect("create");
    let (_dir, protection) = common::protection(&format!(
        r#"
[[column]]
database = "{}"
table = "narrow"
column = "ssn"
type = "char(11)"
storage = "base64"
roles = {{ app = "plaintext" }}
"#,
        db.name
    ));
    let proxy = common::Proxy::start_with(common::Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    // At start: one line for the problem `check` would report.
    let mut logged = String::new();
    for _ in 0..100 {
        logged = logs.text();
        if logged.contains("narrow.ssn") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = logged
        .lines()
        .find(|l| l.contains("narrow.ssn"))
        .unwrap_or_else(|| panic!("no problem logged:\n{logged}"));
    assert!(
        line.contains("WARN") && line.contains("holds 20") && line.contains("migrate plan"),
        "{line}"
    );
    // A write that cannot fit gets myveil's error, naming the column and the fix.
    let mut app = proxy.app(Some(&db.name)).await;
    let err = app
        .query_drop("INSERT INTO narrow VALUES (1, '123-45-6789')")
        .await
        .expect_err("too narrow");
    let mysql_async::Error::Server(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.code, 1406, "{}", e.message);
    assert!(
        e.message
            .contains("myveil: column narrow.ssn is too narrow")
            && e.message.contains("myveil migrate plan"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("123-45"), "{}", e.message);
    // Nothing reached the table, and the session goes on.
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM narrow")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    let one: Option<u64> = app.query_first("SELECT 1").await.expect("select");
    assert_eq!(one, Some(1));
    app.disconnect().await.ok();
    proxy.signal_stop();
    proxy.join().await;
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// The server allows one migration or re-encryption at a time (its advisory lock): the
/// tests that run them take turns.
static ONE_JOB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value a row is born with (the plaintext table is filled by the server from these).
fn born(id: u64) -> (String, String, Option<String>) {
    (
        format!("p{id}@example.com"),
        format!("{:03}-45-{:04}", id % 1000, id % 10_000),
        (!id.is_multiple_of(7)).then(|| format!("note {id}: allergic to penicillin")),
    )
}

const BORN_SQL: &str = "CONCAT('p', seq, '@example.com'), \
    CONCAT(LPAD(seq % 1000, 3, '0'), '-45-', LPAD(seq % 10000, 4, '0')), \
    IF(seq % 7 = 0, NULL, CONCAT('note ', seq, ': allergic to penicillin'))";

/// A digest of every row as (id, email, ssn, note), in id order.
fn digest_rows(rows: &[(u64, String, String, Option<String>)]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (id, e, s, n) in rows {
        h.update(format!("{id}|{e}|{s}|{}\n", n.as_deref().unwrap_or("\\N")).as_bytes());
    }
    hex::encode(h.finalize())
}

/// A policy column of the proxy's policy, by name.
fn myveil_col(proxy: &common::Proxy, name: &str) -> myveil::policy::Protected {
    proxy
        .shared
        .protection
        .load()
        .policy
        .columns()
        .iter()
        .find(|c| c.column == name)
        .expect("policy column")
        .clone()
}

fn myveil_cmd(config: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_myveil"));
    c.arg("--config").arg(config).args(args);
    c.stdin(std::process::Stdio::null());
    c
}

/// Waits until `myveil.jobs` shows `job` of the table past `rows` (or the child exits).
async fn wait_for_job(
    c: &mut mysql_async::Conn,
    db: &str,
    job: &str,
    rows: u64,
    child: &mut std::process::Child,
) -> bool {
    // Long enough for a large table's earlier phases (MYVEIL_MIGRATE_ROWS).
    for _ in 0..1200 + rows / 50 {
        let done: Option<u64> = c
            .exec_first(
                "SELECT rows_done FROM myveil.jobs WHERE db = ? AND tbl = 'people' AND job = ?",
                (db, job),
            )
            .await
            .unwrap_or(None);
        if done.is_some_and(|d| d >= rows) {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// Whether a statement lost a lock to the migration's batch (a deadlock victim, or a lock
/// wait timeout): rolled back, nothing written, as any application must expect.
fn lost_a_lock(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205)
}

/// Whether a server error is myveil's "column not ready" (a write to a column a migration
/// has not widened or swapped in yet, or before its blind-index column exists).
fn too_narrow(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s)
        if matches!(s.code, 1406 | 1366 | 1054) && s.message.starts_with("myveil: "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_seals_a_live_table_under_load_and_resumes_after_kill() {
    let _turn = ONE_JOB.lock().await;
    let rows: u64 = std::env::var("MYVEIL_MIGRATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rate: u64 = std::env::var("MYVEIL_MIGRATE_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000);
    let db = TestDb::create("migapply").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, \
         ssn VARCHAR(16) NOT NULL DEFAULT '', note TEXT, KEY (email)) ENGINE=InnoDB",
    )
    .await
    .expect("create");
    let mut from = 1;
    while from <= rows {
        let to = (from + 99_999).min(rows);
        c.query_drop(format!(
            "INSERT INTO people SELECT seq, {BORN_SQL} FROM seq_{from}_to_{to}"
        ))
        .await
        .expect("fill");
        from = to + 1;
    }
    c.query_drop("ANALYZE TABLE people").await.expect("analyze");
    // The model: what every row holds; the server's plaintext agrees with it before.
    let mut model: std::collections::BTreeMap<u64, (String, String, Option<String>)> =
        (1..=rows).map(|id| (id, born(id))).collect();
    let read_all = |rows: Vec<(u64, String, String, Option<String>)>| digest_rows(&rows);
    let before: Vec<(u64, String, String, Option<String>)> = c
        .query("SELECT id, email, ssn, note FROM people ORDER BY id")
        .await
        .expect("read");
    let flat = |m: &std::collections::BTreeMap<u64, (String, String, Option<String>)>| {
        m.iter()
            .map(|(id, (e, s, n))| (*id, e.clone(), s.clone(), n.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read_all(before),
        digest_rows(&flat(&model)),
        "the model is the table"
    );

    let (_keys, protection) = common::protection(&format!(
        r#"
[[column]]
database = "{db}"
table = "people"
column = "email"
type = "varchar(100)"
storage = "base64"
blind_index = "email_bidx"
roles = {{ app = "plaintext", reporting = {{ mask = "email" }} }}
[[column]]
database = "{db}"
table = "people"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext", reporting = "ciphertext" }}
[[column]]
database = "{db}"
table = "people"
column = "note"
type = "text"
storage = "base64"
roles = {{ app = "plaintext" }}
"#,
        db = db.name
    ));
    let proxy = common::Proxy::start_with(common::Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    let config = proxy.path("myveil.toml");

    // A run killed in the middle of copying into a shadow column, one killed in the middle
    // of sealing, and one that finishes.
    let rate_arg = rate.to_string();
    let args = [
        "migrate",
        "apply",
        "--rate",
        rate_arg.as_str(),
        "--batch",
        "500",
    ];
    let started = std::time::Instant::now();
    let mut first = myveil_cmd(&config, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("apply");
    // The load, from the moment the proxy knows the columns are mixed (before, plaintext
    // cells of a policy column are refused): an app and a reporting role through myveil.
    for _ in 0..400 {
        if proxy
            .shared
            .schema
            .load()
            .mixed
            .contains(&myveil_col(&proxy, "note"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ops = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load_started = std::time::Instant::now();
    let load = {
        let stop = stop.clone();
        let ops = ops.clone();
        let mut app = proxy.app(Some(&db.name)).await;
        let mut reporter = mysql_async::Conn::new(
            proxy
                .opts(common::OTHER_USER, common::OTHER_PASSWORD)
                .db_name(Some(&db.name)),
        )
        .await
        .expect("reporter");
        let mut model = std::mem::take(&mut model);
        let shared = proxy.shared.clone();
        tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut next_id = rows + 1;
            let (mut writes, mut refused, mut reads) = (0u64, 0u64, 0u64);
            let started = std::time::Instant::now();
            let mut i = 0u64;
            // Writes of ssn (too narrow for an envelope until it is retyped through its
            // shadow) are refused only until the proxy knows the copy into the shadow has
            // begun: from then on, through the swap and after, every one must go through.
            let mut ready = false;
            let ready_ssn = |ready: &mut bool| {
                let snapshot = shared.schema.load();
                *ready |= snapshot
                    .copying
                    .iter()
                    .any(|(_, t, c)| t == "people" && c == "ssn");
                *ready
            };
            let narrow_ok = |e: &mysql_async::Error, ready: bool, what: &str| {
                assert!(!ready, "{what} refused after the copy began: {e}");
                too_narrow(e)
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ready = ready_ssn(&mut ready);
                let id = rng.random_range(1..=rows);
                match i % 5 {
                    0 => {
                        let email = format!("changed{i}@example.org");
                        match app
                            .exec_drop("UPDATE people SET email = ? WHERE id = ?", (&email, id))
                            .await
                        {
                            Ok(()) => {
                                model.get_mut(&id).expect("row").0 = email;
                                writes += 1;
                            }
                            // A deadlock victim is rolled back, as without myveil.
                            Err(e) if lost_a_lock(&e) => refused += 1,
                            Err(e) => panic!("email update: {e}"),
                        }
                    }
                    1 => {
                        let (ssn, note) = (
                            format!("{:03}-99-{:04}", i % 1000, i % 10_000),
                            format!("rewritten {i}"),
                        );
                        match app
                            .exec_drop(
                                "UPDATE people SET ssn = ?, note = ? WHERE id = ?",
                                (&ssn, &note, id),
                            )
                            .await
                        {
                            Ok(()) => {
                                let r = model.get_mut(&id).expect("row");
                                r.1 = ssn;
                                r.2 = Some(note);
                                writes += 1;
                            }
                            Err(e) if lost_a_lock(&e) || narrow_ok(&e, ready, "ssn update") => {
                                refused += 1
                            }
                            Err(e) => panic!("ssn update: {e}"),
                        }
                    }
                    2 => {
                        let row = (
                            format!("new{next_id}@example.net"),
                            "123-00-0000".to_owned(),
                            Some(format!("new {next_id}")),
                        );
                        match app
                            .exec_drop(
                                "INSERT INTO people (id, email, ssn, note) VALUES (?, ?, ?, ?)",
                                (next_id, &row.0, &row.1, &row.2),
                            )
                            .await
                        {
                            Ok(()) => {
                                model.insert(next_id, row);
                                writes += 1;
                            }
                            Err(e) if lost_a_lock(&e) || narrow_ok(&e, ready, "insert") => {
                                refused += 1
                            }
                            Err(e) => panic!("insert: {e}"),
                        }
                        next_id += 1;
                    }
                    3 => {
                        // The app reads plaintext, whether the row is sealed yet or not.
                        let got: Option<(String, String, Option<String>)> = app
                            .exec_first("SELECT email, ssn, note FROM people WHERE id = ?", (id,))
                            .await
                            .unwrap_or_else(|e| panic!("read {id}: {e}"));
                        assert_eq!(got.as_ref(), model.get(&id), "row {id} through myveil");
                        // And finds it by its email, sealed or not.
                        let email = model[&id].0.clone();
                        let found: Vec<u64> = app
                            .exec("SELECT id FROM people WHERE email = ?", (&email,))
                            .await
                            .unwrap_or_else(|e| panic!("search: {e}"));
                        assert_eq!(found, vec![id], "search for row {id}");
                        reads += 1;
                    }
                    _ => {
                        // The reporting role: a mask and an envelope, never the plaintext.
                        let got: Option<(String, Vec<u8>)> = reporter
                            .exec_first("SELECT email, ssn FROM people WHERE id = ?", (id,))
                            .await
                            .unwrap_or_else(|e| panic!("reporter read {id}: {e}"));
                        let (email, ssn) = got.expect("row");
                        let (plain_email, plain_ssn, _) = &model[&id];
                        assert_ne!(&email, plain_email, "masked");
                        assert!(
                            ssn.starts_with(b"MV\x01\x01"),
                            "ciphertext role gets an envelope"
                        );
                        assert!(!String::from_utf8_lossy(&ssn).contains(plain_ssn.as_str()));
                        reads += 1;
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            app.disconnect().await.ok();
            reporter.disconnect().await.ok();
            (model, writes, refused, reads, secs)
        })
    };
    assert!(
        wait_for_job(&mut c, &db.name, "copy:ssn", rows / 3, &mut first).await,
        "the first run copies"
    );
    first.kill().expect("kill -9");
    let _ = first.wait();
    let mut second = myveil_cmd(&config, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("apply");
    assert!(
        wait_for_job(&mut c, &db.name, "encrypt", rows / 3, &mut second).await,
        "the second run seals"
    );
    second.kill().expect("kill -9");
    let _ = second.wait();
    // While one runs, another is refused (the lock).
    let third = myveil_cmd(&config, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("apply");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let rival = myveil_cmd(&config, &args).output().expect("rival");
    assert!(!rival.status.success());
    assert!(
        String::from_utf8_lossy(&rival.stderr).contains("holds the lock"),
        "{}",
        String::from_utf8_lossy(&rival.stderr)
    );
    // Its peak memory, sampled while it runs (VmHWM is the high-water mark).
    let pid = third.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = tokio::task::spawn_blocking(move || third.wait_with_output())
        .await
        .expect("join")
        .expect("third run");
    let _ = sampler.join();
    let elapsed = started.elapsed().as_secs_f64();
    let (ops_during, secs_during) = (
        ops.load(std::sync::atomic::Ordering::Relaxed),
        load_started.elapsed().as_secs_f64(),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The load goes on a while over the finished columns (its throughput without a
    // migration), then stops.
    let after = std::time::Duration::from_secs_f64((secs_during / 4.0).clamp(0.3, 20.0));
    tokio::time::sleep(after).await;
    let ops_after = ops.load(std::sync::atomic::Ordering::Relaxed) - ops_during;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (model, writes, refused, reads, secs) = load.await.expect("load ran without a failure");
    let during_rate = ops_during as f64 / secs_during;
    let after_rate = ops_after as f64 / after.as_secs_f64();
    eprintln!(
        "MIGRATE rows={rows} elapsed_s={elapsed:.1} rows_per_s={:.0} peak_rss_kib={} load_ops_per_s_during={during_rate:.0} after={after_rate:.0} ratio={:.2}",
        rows as f64 / elapsed,
        peak.load(std::sync::atomic::Ordering::Relaxed),
        during_rate / after_rate.max(1e-9)
    );
    eprintln!(
        "migrated {rows} rows in {elapsed:.1} s (two runs killed); load: {writes} writes, {refused} refused (deadlocks, or before the copy into a shadow began), {reads} reads in {secs:.1} s"
    );
    assert!(writes > 0 && reads > 0);

    // At rest: envelopes only, and no plaintext in any form anywhere in the table.
    let bad: Option<u64> = c
        .query_first(
            "SELECT COUNT(*) FROM people WHERE LEFT(email, 4) <> 'TVYB' OR LEFT(ssn, 4) <> X'4D560101' \
             OR (note IS NOT NULL AND LEFT(note, 4) <> 'TVYB') OR email_bidx IS NULL",
        )
        .await
        .expect("count");
    assert_eq!(bad, Some(0), "every cell sealed and indexed");
    let cols: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people'",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert!(!cols.iter().any(|c| c.contains("myveil")), "{cols:?}");
    let order: Option<String> = c
        .exec_first(
            "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'people'",
            (&db.name,),
        )
        .await
        .expect("order");
    assert_eq!(
        order.as_deref(),
        Some("id,email,ssn,note,email_bidx"),
        "swapped-in columns stand where the old ones stood"
    );
    let triggers: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (&db.name,),
        )
        .await
        .expect("triggers");
    assert_eq!(triggers, Some(0));
    // Sampled rows' values, raw and as hex and base64, nowhere in any cell of the table.
    {
        use base64::Engine as _;
        let t0 = std::time::Instant::now();
        let samples = if rows > 100_000 { 8 } else { 30 };
        for id in (1..=rows).step_by((rows / samples).max(1) as usize) {
            let (e, s, n) = &model[&id];
            for p in [Some(e), Some(s), n.as_ref()].into_iter().flatten() {
                let forms = [
                    p.clone(),
                    hex::encode(p),
                    hex::encode_upper(p),
                    base64::engine::general_purpose::STANDARD.encode(p),
                ];
                let hits: Option<u64> = c
                    .exec_first(
                        "SELECT COUNT(*) FROM people WHERE \
                         LOCATE(?, CONCAT_WS('|', email, ssn, note, HEX(ssn), email_bidx)) > 0 OR \
                         LOCATE(?, CONCAT_WS('|', email, ssn, note, HEX(ssn), email_bidx)) > 0 OR \
                         LOCATE(?, CONCAT_WS('|', email, ssn, note, HEX(ssn), email_bidx)) > 0 OR \
                         LOCATE(?, CONCAT_WS('|', email, ssn, note, HEX(ssn), email_bidx)) > 0",
                        (&forms[0], &forms[1], &forms[2], &forms[3]),
                    )
                    .await
                    .expect("search at rest");
                assert_eq!(hits, Some(0), "plaintext of row {id} at rest");
            }
        }
        eprintln!("at-rest scan: {:.1} s", t0.elapsed().as_secs_f64());
    }
    // Through myveil: exactly the model (no write lost or reverted), found by search.
    let mut app = proxy.app(Some(&db.name)).await;
    let after: Vec<(u64, String, String, Option<String>)> = app
        .query("SELECT id, email, ssn, note FROM people ORDER BY id")
        .await
        .expect("read through myveil");
    assert_eq!(after.len(), model.len());
    assert_eq!(
        digest_rows(&after),
        digest_rows(&flat(&model)),
        "every row as written"
    );
    let some = &model[&(rows / 2)].0;
    let found: Vec<u64> = app
        .exec("SELECT id FROM people WHERE email = ?", (some,))
        .await
        .expect("search");
    assert_eq!(found, vec![rows / 2]);
    // Done: a plaintext cell written around myveil is now refused, not shown.
    c.query_drop("UPDATE people SET ssn = '000-00-0000' WHERE id = 1")
        .await
        .expect("direct write");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let refused = app
        .query_first::<String, _>("SELECT ssn FROM people WHERE id = 1")
        .await
        .expect_err("plaintext in a done column");
    assert!(!refused.to_string().contains("000-00"), "{refused}");
    // verify finds that cell, and nothing else.
    let v = myveil_cmd(&config, &["migrate", "verify"])
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(!v.status.success(), "{text}");
    assert!(
        text.contains("people.ssn: FAILED") && text.contains("1 cells not an envelope"),
        "{text}"
    );
    assert!(
        text.contains("people.email: ok") && text.contains("people.note: ok"),
        "{text}"
    );
    assert!(!text.contains("000-00"), "{text}");
    c.exec_drop("UPDATE people SET ssn = ? WHERE id = 1", (&model[&1].1,))
        .await
        .expect("direct write");
    let v = myveil_cmd(&config, &["migrate", "apply", "--rate", "0"])
        .output()
        .expect("apply again");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let v = myveil_cmd(&config, &["migrate", "verify"])
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // A rotation of every key, and the table re-encrypted under the new ones (timed).
    let v = myveil_cmd(&config, &["keys", "rotate", "--blind-index"])
        .output()
        .expect("rotate");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    proxy.shared.reload_keys().expect("reload");
    let t0 = std::time::Instant::now();
    let v = myveil_cmd(&config, &["keys", "reencrypt", "--rate", "0"])
        .output()
        .expect("reencrypt");
    let secs = t0.elapsed().as_secs_f64();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    eprintln!(
        "REENCRYPT rows={} seconds={secs:.1} rows_per_s={:.0}",
        model.len(),
        model.len() as f64 / secs
    );
    let v = myveil_cmd(&config, &["migrate", "verify"])
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(v.status.success(), "{text}");
    assert!(
        !text.contains("older key"),
        "every index under the new key: {text}"
    );
    let some = &model[&(rows / 3)].0;
    let found: Vec<u64> = app
        .exec("SELECT id FROM people WHERE email = ?", (some,))
        .await
        .expect("search");
    assert_eq!(found, vec![rows / 3]);
    app.disconnect().await.ok();
    proxy.signal_stop();
    proxy.join().await;
    forget_migration(c, db).await;
}

/// Drops the test's database and its rows in the `myveil` schema.
async fn forget_migration(mut c: mysql_async::Conn, db: TestDb) {
    c.exec_drop("DELETE FROM myveil.columns WHERE db = ?", (&db.name,))
        .await
        .ok();
    c.exec_drop("DELETE FROM myveil.jobs WHERE db = ?", (&db.name,))
        .await
        .ok();
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// Runs the CLI and returns (success, stdout, stderr).
fn run_cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = myveil_cmd(config, args).output().expect("run myveil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row found by its email through myveil.
async fn all_found(app: &mut mysql_async::Conn, emails: &std::collections::BTreeMap<u64, String>) {
    for (id, email) in emails.iter().step_by(7) {
        let found: Vec<u64> = app
            .exec("SELECT id FROM people WHERE email = ?", (email,))
            .await
            .expect("search");
        assert_eq!(found, vec![*id], "search for {email}");
        let text: Vec<u64> = app
            .query(format!("SELECT id FROM people WHERE email = '{email}'"))
            .await
            .expect("search");
        assert_eq!(text, vec![*id], "text search for {email}");
    }
}

/// The key ids the status lists for a purpose and scope, with their state and cells.
fn key_rows(status: &str, purpose: &str, scope: &str) -> Vec<(u32, String, String)> {
    status
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[1] == purpose && f[2] == scope)
                .then(|| (f[0].parse().ok(), f[3].to_owned(), f[5].to_owned()))
                .and_then(|(id, st, cells)| id.map(|id| (id, st, cells)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reencrypt_and_retire_with_searches_right_at_every_step() {
    let _turn = ONE_JOB.lock().await;
    let db = TestDb::create("keyrot").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, email VARCHAR(400) NOT NULL, \
         email_bidx BINARY(32), KEY (email_bidx)) ENGINE=InnoDB",
    )
    .await
    .expect("create");
    let (_keys, protection) = common::protection(&format!(
        r#"
[[column]]
database = "{db}"
table = "people"
column = "email"
type = "varchar(100)"
storage = "base64"
blind_index = "email_bidx"
roles = {{ app = "plaintext" }}
"#,
        db = db.name
    ));
    let proxy = common::Proxy::start_with(common::Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    let config = proxy.path("myveil.toml");
    let mut app = proxy.app(Some(&db.name)).await;
    let mut emails = std::collections::BTreeMap::new();
    for id in 1..=300u64 {
        let e = format!("user{id}@example.com");
        app.exec_drop("INSERT INTO people (id, email) VALUES (?, ?)", (id, &e))
            .await
            .expect("insert");
        emails.insert(id, e);
    }
    all_found(&mut app, &emails).await;
    let (_, status, _) = run_cli(&config, &["keys", "status"]);
    let old_col = key_rows(&status, "Column", "*");
    let old_blind = key_rows(&status, "BlindIndex", "*");
    assert_eq!(old_col.len(), 1, "{status}");
    assert_eq!(old_col[0].2, "300", "{status}");
    assert_eq!(old_blind[0].2, "300", "{status}");
    let (old_col, old_blind) = (old_col[0].0, old_blind[0].0);

    // Rotation: new writes under the new keys, every row still found.
    let (ok, out, err) = run_cli(&config, &["keys", "rotate", "--blind-index"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        proxy.shared.reload_keys().expect("reload"),
        5,
        "3 keys and 2 new"
    );
    for id in 301..=350u64 {
        let e = format!("user{id}@example.com");
        app.exec_drop("INSERT INTO people (id, email) VALUES (?, ?)", (id, &e))
            .await
            .expect("insert");
        emails.insert(id, e);
    }
    all_found(&mut app, &emails).await;
    let (_, status, _) = run_cli(&config, &["keys", "status"]);
    let new_col = key_rows(&status, "Column", "*")
        .into_iter()
        .find(|(_, st, _)| st == "Primary")
        .expect("new primary");
    assert_eq!(new_col.2, "50", "{status}");
    // The old key is still used: it cannot be retired.
    let (ok, _, err) = run_cli(&config, &["keys", "retire", &old_col.to_string()]);
    assert!(!ok && err.contains("300 cells still use key"), "{err}");

    // Re-encryption while the app writes: nothing lost, every row found throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = proxy.app(Some(&db.name)).await;
        tokio::spawn(async move {
            let mut changed = std::collections::BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = 1 + (i * 37) % 350;
                let e = format!("moved{i}@example.org");
                w.exec_drop("UPDATE people SET email = ? WHERE id = ?", (&e, id))
                    .await
                    .expect("update");
                changed.insert(id, e);
            }
            w.disconnect().await.ok();
            changed
        })
    };
    // Instances report their keyring into myveil.instances (made by the rotation where it
    // was missing); the demotion at the end of reencrypt waits until that table is two
    // heartbeats old, so that every instance had time to report.
    let young: Option<Option<i64>> = c
        .query_first(
            "SELECT 10 - TIMESTAMPDIFF(SECOND, CREATE_TIME, CURRENT_TIMESTAMP) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'myveil' AND TABLE_NAME = 'instances'",
        )
        .await
        .expect("table age");
    if let Some(wait) = young.flatten().filter(|w| *w >= 0) {
        tokio::time::sleep(std::time::Duration::from_secs(wait as u64 + 1)).await;
    }
    let (ok, out, err) = run_cli(
        &config,
        &["keys", "reencrypt", "--rate", "400", "--batch", "50"],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changed = writer.await.expect("writer");
    assert!(ok, "{out}{err}");
    assert!(out.contains("no longer searched"), "{out}");
    emails.extend(changed);
    all_found(&mut app, &emails).await;
    // The demotion changed the keyring, and the proxy has not loaded it: no key retires
    // while it may still seal under an old one (it reports its keyring in myveil.instances).
    let (ok, _, err) = run_cli(&config, &["keys", "retire", &old_col.to_string()]);
    assert!(
        !ok && err.contains("have not loaded it since it changed")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let (_, status, _) = run_cli(&config, &["keys", "status"]);
    assert!(status.contains("stale: reload it"), "{status}");
    assert!(proxy.shared.reload_keys().is_ok());
    all_found(&mut app, &emails).await;
    let (ok, out, _) = run_cli(&config, &["migrate", "verify"]);
    assert!(ok, "{out}");
    assert!(!out.contains(&format!("key {old_col}:")), "{out}");

    // Retired, once the proxy reported the reload, the old keys open nothing; everything
    // still reads and is found.
    for id in [old_col, old_blind] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (ok, out, err) = run_cli(&config, &["keys", "retire", &id.to_string()]);
            if ok {
                break;
            }
            assert!(
                err.contains("have not loaded it") && std::time::Instant::now() < deadline,
                "{out}{err}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(proxy.shared.reload_keys().is_ok());
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (_, status, _) = run_cli(&config, &["keys", "status"]);
    assert!(!status.contains("stale"), "{status}");
    assert!(proxy.shared.reload_keys().is_ok());
    all_found(&mut app, &emails).await;
    let all: Vec<(u64, String)> = app
        .query("SELECT id, email FROM people ORDER BY id")
        .await
        .expect("read");
    assert_eq!(all.len(), emails.len());
    for (id, e) in &all {
        assert_eq!(Some(e), emails.get(id));
    }
    let (_, status, _) = run_cli(&config, &["keys", "status"]);
    assert!(
        key_rows(&status, "Column", "*")
            .iter()
            .any(|(id, st, _)| *id == old_col && st == "Retired"),
        "{status}"
    );
    // The master key: every data key wrapped again, nothing else changes.
    let (ok, out, err) = run_cli(&config, &["keys", "rotate", "--kek"]);
    assert!(ok, "{out}{err}");
    assert!(proxy.shared.reload_keys().is_ok());
    all_found(&mut app, &emails).await;
    let (ok, out, _) = run_cli(&config, &["migrate", "verify"]);
    assert!(ok, "{out}");
    // Revert: only when meant; then plaintext at rest, read (and found) through myveil as
    // before, and apply seals it all again.
    let (ok, _, err) = run_cli(&config, &["migrate", "revert"]);
    assert!(!ok && err.contains("--decrypt-to-plaintext"), "{err}");
    let (ok, out, err) = run_cli(
        &config,
        &["migrate", "revert", "--decrypt-to-plaintext", "--rate", "0"],
    );
    assert!(ok, "{out}{err}");
    let plain: Option<u64> = c
        .query_first(
            "SELECT COUNT(*) FROM people WHERE email LIKE '%@example.%' AND email_bidx IS NULL",
        )
        .await
        .expect("count");
    assert_eq!(
        plain,
        Some(emails.len() as u64),
        "plaintext at rest after revert"
    );
    let email_col = myveil_col(&proxy, "email");
    for _ in 0..200 {
        if proxy.shared.schema.load().mixed.contains(&email_col) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    all_found(&mut app, &emails).await;
    let (ok, out, err) = run_cli(&config, &["migrate", "apply", "--rate", "0"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run_cli(&config, &["migrate", "verify"]);
    assert!(ok, "{out}");
    all_found(&mut app, &emails).await;
    c.exec_drop("DELETE FROM myveil.columns WHERE db = ?", (&db.name,))
        .await
        .ok();
    c.exec_drop("DELETE FROM myveil.jobs WHERE db = ?", (&db.name,))
        .await
        .ok();
    app.disconnect().await.ok();
    proxy.signal_stop();
    proxy.join().await;
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// Waits until the proxy's schema snapshot satisfies `cond` (or gives up after 60 s).
async fn until_snapshot(
    proxy: &common::Proxy,
    what: &str,
    cond: impl Fn(&myveil::backend::schema::Snapshot) -> bool,
) {
    for _ in 0..1200 {
        if cond(&proxy.shared.schema.load()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the proxy never saw {what}");
}

/// A column retyped through a shadow column (VARCHAR(16) cannot hold an envelope in
/// place): statements prepared before the window, in it and after the swap all read and
/// write the values the app wrote, and the database holds no plaintext of a write made in
/// the window (the old column gets NULL, the shadow an envelope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_a_shadow_window_go_to_the_shadow_and_prepared_statements_follow() {
    let _turn = ONE_JOB.lock().await;
    let db = TestDb::create("migshadow").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, ssn VARCHAR(16) NOT NULL, note VARCHAR(20)) ENGINE=InnoDB",
    )
    .await
    .expect("create");
    c.query_drop(
        "INSERT INTO t SELECT seq, CONCAT('ssn-', seq), CONCAT('n', seq) FROM seq_1_to_2000",
    )
    .await
    .expect("fill");
    let (_keys, protection) = common::protection(&format!(
        r#"
[[column]]
database = "{db}"
table = "t"
column = "ssn"
type = "varchar(16)"
roles = {{ app = "plaintext", reporting = {{ mask = "last-four" }} }}
"#,
        db = db.name
    ));
    let proxy = common::Proxy::start_with(common::Setup {
        extra: protection,
        ..Default::default()
    })
    .await;
    let config = proxy.path("myveil.toml");
    // Slow: the copy takes a while, so the window can be looked at.
    let apply = myveil_cmd(
        &config,
        &["migrate", "apply", "--rate", "300", "--batch", "50"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("apply");
    let ssn = myveil_col(&proxy, "ssn");
    until_snapshot(&proxy, "the column mixed", |s| s.mixed.contains(&ssn)).await;
    let mut app = proxy.app(Some(&db.name)).await;
    let sel = app
        .prep("SELECT ssn FROM t WHERE id = ?")
        .await
        .expect("prepare");
    let upd = app
        .prep("UPDATE t SET ssn = ? WHERE id = ?")
        .await
        .expect("prepare");
    let get = async |app: &mut mysql_async::Conn, st: &mysql_async::Statement, id: u64| {
        app.exec_first::<Option<String>, _, _>(st, (id,))
            .await
            .unwrap_or_else(|e| panic!("read {id}: {e}"))
            .flatten()
    };
    assert_eq!(get(&mut app, &sel, 1).await.as_deref(), Some("ssn-1"));

    until_snapshot(&proxy, "the copy into the shadow", |s| {
        s.copying.iter().any(|(_, t, c)| t == "t" && c == "ssn")
    })
    .await;
    // In the window: the statements prepared before it, text, and `*`.
    app.exec_drop(&upd, ("in-window-5", 5u64))
        .await
        .expect("prepared write in the window");
    app.query_drop("UPDATE t SET ssn = 'in-window-6' WHERE id = 6")
        .await
        .expect("text write in the window");
    app.exec_drop(&upd, (Option::<String>::None, 7u64))
        .await
        .expect_err("NULL into a NOT NULL column is refused as directly");
    app.query_drop("INSERT INTO t (id, ssn, note) VALUES (3001, 'new-3001', 'x')")
        .await
        .expect("insert in the window");
    assert_eq!(get(&mut app, &sel, 5).await.as_deref(), Some("in-window-5"));
    // An upsert, through the window.
    app.query_drop(
        "INSERT INTO t (id, ssn) VALUES (9, 'upsert-9') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)",
    )
    .await
    .expect("upsert in the window");
    // A write around myveil that changes the case only (the column compares
    // case-insensitively): the copy triggers take it all the same.
    c.query_drop("UPDATE t SET ssn = 'SSN-10' WHERE id = 10")
        .await
        .expect("direct write in the window");
    let star: Vec<(u64, String, Option<String>)> = app
        .query("SELECT * FROM t WHERE id IN (6, 3001) ORDER BY id")
        .await
        .expect("star in the window");
    assert_eq!(
        star,
        vec![
            (6, "in-window-6".into(), Some("n6".into())),
            (3001, "new-3001".into(), Some("x".into()))
        ]
    );
    let during = app
        .prep("SELECT id, ssn FROM t WHERE id = ?")
        .await
        .expect("prepare in the window");
    // At rest: the old column NULL, the shadow an envelope, no plaintext in any form.
    type Raw = (u64, Option<Vec<u8>>, Option<Vec<u8>>);
    let raw: Vec<Raw> = c
        .query("SELECT id, ssn, ssn__myveil FROM t WHERE id IN (5, 6, 3001) ORDER BY id")
        .await
        .expect("raw");
    for (id, old, shadow) in &raw {
        assert_eq!(old, &None, "row {id}: the old column holds no plaintext");
        let s = shadow.as_deref().unwrap_or_default();
        assert!(s.starts_with(b"MV\x01\x01"), "row {id}: an envelope");
        let text = String::from_utf8_lossy(s);
        for p in ["in-window", "new-3001"] {
            use base64::Engine as _;
            assert!(!text.contains(p));
            assert!(!hex::encode(s).contains(&hex::encode(p)));
            assert!(
                !base64::engine::general_purpose::STANDARD
                    .encode(s)
                    .contains(&base64::engine::general_purpose::STANDARD.encode(p))
            );
        }
    }
    // A masked role reads the mask of a value written in the window.
    let mut reporter = mysql_async::Conn::new(
        proxy
            .opts(common::OTHER_USER, common::OTHER_PASSWORD)
            .db_name(Some(&db.name)),
    )
    .await
    .expect("reporter");
    let masked: Option<String> = reporter
        .query_first("SELECT ssn FROM t WHERE id = 5")
        .await
        .expect("masked read");
    assert!(
        masked
            .as_deref()
            .is_some_and(|m| m != "in-window-5" && m.ends_with("ow-5")),
        "{masked:?}"
    );
    reporter.disconnect().await.ok();

    let out = tokio::task::spawn_blocking(move || apply.wait_with_output())
        .await
        .expect("join")
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_snapshot(&proxy, "the swap", |s| s.shadows.is_empty()).await;
    // After the swap: every statement, whenever it was prepared.
    assert_eq!(get(&mut app, &sel, 5).await.as_deref(), Some("in-window-5"));
    let row: Option<(u64, String)> = app.exec_first(&during, (6u64,)).await.expect("read");
    assert_eq!(row, Some((6, "in-window-6".into())));
    app.exec_drop(&upd, ("after-8", 8u64))
        .await
        .expect("write after");
    assert_eq!(get(&mut app, &sel, 8).await.as_deref(), Some("after-8"));
    assert_eq!(get(&mut app, &sel, 1999).await.as_deref(), Some("ssn-1999"));
    assert_eq!(get(&mut app, &sel, 9).await.as_deref(), Some("upsert-9"));
    assert_eq!(get(&mut app, &sel, 10).await.as_deref(), Some("SSN-10"));
    // NOT NULL again, and nothing of the migration left in the table.
    let cols: Vec<(String, String)> = c
        .exec(
            "SELECT COLUMN_NAME, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION",
            (&db.name,),
        )
        .await
        .expect("columns");
    assert_eq!(
        cols,
        vec![
            ("id".into(), "NO".into()),
            ("ssn".into(), "NO".into()),
            ("note".into(), "YES".into())
        ]
    );
    let triggers: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
            (&db.name,),
        )
        .await
        .expect("triggers");
    assert_eq!(triggers, Some(0));
    let v = myveil_cmd(&config, &["migrate", "verify"])
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let plain: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM t WHERE LEFT(ssn, 4) <> X'4D560101'")
        .await
        .expect("count");
    assert_eq!(plain, Some(0));
    app.disconnect().await.ok();
    proxy.signal_stop();
    proxy.join().await;
    forget_migration(c, db).await;
}
