//! Encrypted backups against the real MariaDB: a round trip of tables (NULLs, 4-byte UTF-8,
//! a blob over 1 MiB, ciphertext cells, a generated column), a view, a trigger and routines
//! into a new database with identical checksums; every kind of tampering refused with nothing
//! restored; list and retention; and the CLI end to end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{TestDb, direct, direct_opts, opts_of};
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use myveil::backup::{self, CreateOptions, RestoreOptions, UnwrapKey, VerifyKey, no_progress};

struct Keys {
    public: PathBuf,
    private: PathBuf,
    signing: PathBuf,
    verify: PathBuf,
}

fn keys(dir: &Path, name: &str) -> Keys {
    let public = dir.join(name).join("backup_rsa_public.pem");
    let signing = dir.join(name).join("backup_signing.key");
    backup::keys::generate(&public, &signing).expect("generate backup keys");
    Keys {
        private: backup::keys::private_key_path(&public),
        verify: backup::keys::verify_key_path(&signing),
        public,
        signing,
    }
}

const POLICY: &str = r#"
[[column]]
table = "people"
column = "secret"
type = "varchar(64)"
roles = { app = "plaintext" }
"#;

/// A sealed envelope under key id 7, as myveil stores it.
fn envelope(value: &str) -> Vec<u8> {
    let ctx = myveil::crypto::envelope::CellContext {
        table: "people",
        column: "secret",
        plaintext_type: "varchar",
        row_key: None,
    };
    myveil::crypto::envelope::seal(&[9; 32], 7, &ctx, value.as_bytes()).expect("seal")
}

async fn populate(db: &str) {
    let mut c = direct(Some(db)).await;
    for sql in [
        "CREATE TABLE people (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, \
         note TEXT NULL, amount DECIMAL(12,3) NULL, born DATE NULL, seen DATETIME(6) NULL, \
         secret VARBINARY(255) NULL, flag BIT(3) NULL, score DOUBLE NULL) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE files (id INT PRIMARY KEY, data LONGBLOB NULL, kind ENUM('a','b') NULL) ENGINE=InnoDB",
        "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200) NOT NULL) ENGINE=InnoDB",
        "CREATE TABLE calc (id INT PRIMARY KEY, x INT NOT NULL, doubled INT AS (x * 2) VIRTUAL, \
         stored_sum INT AS (x + id) STORED) ENGINE=InnoDB",
        "CREATE TABLE `odd ``name``` (`k` INT PRIMARY KEY, `v` VARCHAR(10)) ENGINE=InnoDB",
        "CREATE TABLE empty_one (id INT PRIMARY KEY) ENGINE=InnoDB",
    ] {
        c.query_drop(sql).await.expect("create table");
    }
    let names = ["Ann", "Zoë 😀 𝄞", "", "O'Brien \\ \"q\"", "日本語"];
    for (i, name) in names.iter().enumerate() {
        let note: Option<String> = (i % 2 == 0).then(|| format!("note {i} 🎉"));
        let secret: Option<Vec<u8>> = (i != 3).then(|| envelope(&format!("s{i}")));
        c.exec_drop(
            "INSERT INTO people (name, note, amount, born, seen, secret, flag, score) VALUES (?, ?, ?, ?, ?, ?, b'101', ?)",
            (
                name,
                note,
                (i != 1).then_some("12345.678"),
                (i != 2).then_some("1999-12-31"),
                "2024-02-29 23:59:59.123456",
                secret,
                (i as f64) / 3.0,
            ),
        )
        .await
        .expect("insert person");
    }
    // A blob over 1 MiB with every byte value (crosses chunk boundaries), and one over 2 MiB.
    let blob: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let blob2: Vec<u8> = (0..2_200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    c.exec_drop(
        "INSERT INTO files VALUES (1, ?, 'a'), (2, NULL, NULL), (3, ?, 'b'), (4, '', 'a')",
        (blob, blob2),
    )
    .await
    .expect("insert blobs");
    c.query_drop("INSERT INTO calc (id, x) VALUES (1, 10), (2, 20)")
        .await
        .expect("insert calc");
    c.query_drop("INSERT INTO `odd ``name``` VALUES (1, 'x'), (2, NULL)")
        .await
        .expect("insert odd");
    for sql in [
        "CREATE VIEW named_people AS SELECT id, name FROM people WHERE note IS NOT NULL",
        "CREATE VIEW view_on_view AS SELECT COUNT(*) AS n FROM named_people",
        "CREATE TRIGGER people_ai AFTER INSERT ON people FOR EACH ROW \
         INSERT INTO audit (msg) VALUES (CONCAT('inserted ', NEW.id))",
        "CREATE PROCEDURE count_people(IN extra INT) BEGIN SELECT COUNT(*) + extra FROM people; END",
        "CREATE FUNCTION plus_one(x INT) RETURNS INT DETERMINISTIC RETURN x + 1",
    ] {
        c.query_drop(sql).await.expect("create object");
    }
    // The trigger fires for this row: the audit table is not empty in the backup.
    c.query_drop("INSERT INTO people (name) VALUES ('after trigger')")
        .await
        .expect("insert after trigger");
    c.disconnect().await.ok();
}

const TABLES: [&str; 6] = [
    "people",
    "files",
    "audit",
    "calc",
    "odd `name`",
    "empty_one",
];

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Per-table CHECKSUM TABLE and a SHA-256 over the rows in primary-key order.
async fn fingerprint(db: &str) -> Vec<(String, Option<i64>, String)> {
    use sha2::{Digest, Sha256};
    let mut c = direct(Some(db)).await;
    let mut out = Vec::new();
    for t in TABLES {
        let (_, checksum): (String, Option<i64>) = c
            .query_first(format!("CHECKSUM TABLE {}", q(t)))
            .await
            .expect("checksum")
            .expect("a row");
        let rows: Vec<mysql_async::Row> = c
            .query(format!("SELECT * FROM {} ORDER BY 1", q(t)))
            .await
            .expect("select");
        let mut h = Sha256::new();
        for r in rows {
            for v in r.unwrap() {
                match v {
                    Value::NULL => h.update(b"N"),
                    Value::Bytes(b) => {
                        h.update((b.len() as u64).to_be_bytes());
                        h.update(&b);
                    }
                    other => h.update(format!("{other:?}")),
                }
            }
        }
        out.push((t.to_owned(), checksum, hex::encode(h.finalize())));
    }
    c.disconnect().await.ok();
    out
}

async fn database_exists(name: &str) -> bool {
    let mut c = direct(None).await;
    let found: Option<String> = c
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (name,),
        )
        .await
        .expect("query");
    c.disconnect().await.ok();
    found.is_some()
}

fn create_options(db: &str, dir: &Path, k: &Keys) -> CreateOptions {
    let mut policy = myveil::policy::Policy::default();
    policy.add_toml(POLICY, "test.toml").expect("policy");
    CreateOptions {
        opts: opts_of(direct_opts()),
        databases: vec![db.to_owned()],
        dir: dir.to_owned(),
        public_key: k.public.clone(),
        signing_key: k.signing.clone(),
        source_host: "127.0.0.1:3306".into(),
        policy: Some(policy),
        retention: 0,
    }
}

fn restore_options(file: &Path, k: &Keys, into: &str) -> RestoreOptions {
    RestoreOptions {
        opts: opts_of(direct_opts()),
        file: file.to_owned(),
        verify_key: VerifyKey::load(&k.verify).expect("verify key"),
        private_key: k.private.clone(),
        into: into.to_owned(),
        database: None,
        force: false,
    }
}

/// A database name for a restore target that this test owns (dropped at the end).
fn target_name(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "myveil_t_restore_{label}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn drop_database(name: &str) {
    let mut c = direct(None).await;
    c.query_drop(format!("DROP DATABASE IF EXISTS {}", q(name)))
        .await
        .ok();
    c.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_restores_identical_tables_and_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let db = TestDb::create("backup_rt").await;
    populate(&db.name).await;
    let before = fingerprint(&db.name).await;

    let created = backup::create(
        &create_options(&db.name, &dir.path().join("out"), &k),
        &no_progress,
    )
    .await
    .expect("create");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&created.path)
            .expect("file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let m = &created.manifest;
    assert_eq!(m.key_ids, vec![7], "key ids of the protected cells");
    let people = m.databases[0]
        .tables
        .iter()
        .find(|t| t.name == "people")
        .expect("people");
    assert_eq!(people.rows, 6);
    assert_eq!(m.databases[0].views.len(), 2);
    assert_eq!(m.databases[0].triggers, vec!["people_ai".to_owned()]);
    assert_eq!(m.databases[0].routines.len(), 2);
    assert!(m.chunks >= 4, "several chunks: {}", m.chunks);

    let trusted = VerifyKey::load(&k.verify).expect("verify key");
    let v = backup::verify(&created.path, &trusted, None, &no_progress).expect("verify");
    assert!(!v.decrypted);
    let private = UnwrapKey::load(&k.private).expect("private key");
    let v = backup::verify(&created.path, &trusted, Some(&private), &no_progress)
        .expect("verify with the key");
    assert!(v.decrypted);

    let target = target_name("rt");
    let restored = backup::restore(&restore_options(&created.path, &k, &target), &no_progress)
        .await
        .expect("restore");
    assert_eq!(restored.key_ids, vec![7]);
    assert_eq!(
        (restored.views, restored.routines, restored.triggers),
        (2, 2, 1)
    );
    let after = fingerprint(&target).await;
    assert_eq!(before, after, "every table identical after the round trip");

    let mut c = direct(Some(&target)).await;
    let n: Option<i64> = c
        .query_first("SELECT n FROM view_on_view")
        .await
        .expect("view");
    assert_eq!(n, Some(3));
    let r: Option<i64> = c
        .query_first("SELECT plus_one(41)")
        .await
        .expect("function");
    assert_eq!(r, Some(42));
    let r: Option<i64> = c
        .query_first("CALL count_people(1)")
        .await
        .expect("procedure");
    assert_eq!(r, Some(7));
    c.query_drop("INSERT INTO people (name) VALUES ('restored')")
        .await
        .expect("insert");
    let audit: Option<String> = c
        .query_first("SELECT msg FROM audit ORDER BY id DESC LIMIT 1")
        .await
        .expect("audit");
    assert_eq!(audit.as_deref(), Some("inserted 7"), "the trigger works");
    let doubled: Option<i64> = c
        .query_first("SELECT doubled FROM calc WHERE id = 2")
        .await
        .expect("calc");
    assert_eq!(doubled, Some(40));
    c.disconnect().await.ok();

    // A non-empty target is refused unless --force, which replaces what the backup holds.
    let err = backup::restore(&restore_options(&created.path, &k, &target), &no_progress)
        .await
        .expect_err("non-empty target");
    assert!(err.to_string().contains("not empty"), "{err}");
    let mut forced = restore_options(&created.path, &k, &target);
    forced.force = true;
    backup::restore(&forced, &no_progress)
        .await
        .expect("forced restore");
    assert_eq!(
        fingerprint(&target).await,
        before,
        "forced restore replaced the tables"
    );

    drop_database(&target).await;
    db.drop_now().await;
}

/// Offsets of the chunk frames (start, length including the 4-byte length).
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let be = |p: usize| {
        u32::from_be_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize
    };
    let mut pos = 14 + be(10);
    let mut out = Vec::new();
    loop {
        let len = be(pos);
        if len == 0 {
            return out;
        }
        out.push((pos, 4 + len));
        pos += 4 + len;
    }
}

fn find(bytes: &[u8], needle: &str) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("needle in file")
        + needle.len()
}

fn rfind(bytes: &[u8], needle: &str) -> usize {
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())
        .expect("needle in file")
        + needle.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_backups_are_refused_and_nothing_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let other = keys(dir.path(), "other");
    let db = TestDb::create("backup_tamper").await;
    populate(&db.name).await;
    let out = dir.path().join("out");
    let a = backup::create(&create_options(&db.name, &out, &k), &no_progress)
        .await
        .expect("backup a");
    let b = backup::create(&create_options(&db.name, &out, &k), &no_progress)
        .await
        .expect("backup b");
    let mut signed_by_other = create_options(&db.name, &out, &k);
    signed_by_other.signing_key = other.signing.clone();
    let c = backup::create(&signed_by_other, &no_progress)
        .await
        .expect("backup signed by another key");
    let original = std::fs::read(&a.path).expect("read a");
    let from_b = std::fs::read(&b.path).expect("read b");
    let fa = frames(&original);
    let fb = frames(&from_b);
    assert!(fa.len() >= 3 && fa[0].1 == fa[1].1 && fa[0] == fb[0]);

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let flip = |at: usize| {
        let mut t = original.clone();
        t[at] ^= 0x02;
        t
    };
    cases.push((
        "header bit",
        flip(find(&original, "\"backup_id\":\"") + 3),
        "signature",
    ));
    cases.push((
        "wrapped key bit",
        flip(find(&original, "\"wrapped_key\":\"") + 20),
        "signature",
    ));
    cases.push((
        "manifest bit",
        flip(rfind(&original, "\"source_host\": \"") + 2),
        "signature",
    ));
    cases.push(("chunk bit", flip(fa[1].0 + 1000), "integrity"));
    cases.push((
        "truncated",
        original[..original.len() - 200].to_vec(),
        "truncated",
    ));
    cases.push(("cut in the body", original[..fa[2].0].to_vec(), "truncated"));
    let mut swapped = original.clone();
    swapped[fa[0].0..fa[0].0 + fa[0].1].copy_from_slice(&original[fa[1].0..fa[1].0 + fa[1].1]);
    swapped[fa[1].0..fa[1].0 + fa[1].1].copy_from_slice(&original[fa[0].0..fa[0].0 + fa[0].1]);
    cases.push(("swapped chunks", swapped, "integrity"));
    let mut spliced = original.clone();
    spliced[fa[1].0..fa[1].0 + fa[1].1].copy_from_slice(&from_b[fb[1].0..fb[1].0 + fb[1].1]);
    cases.push(("chunk from another backup", spliced, "integrity"));

    let trusted = VerifyKey::load(&k.verify).expect("verify key");
    let private = UnwrapKey::load(&k.private).expect("private key");
    for (name, bytes, expect) in cases {
        let path = dir.path().join(format!("{}.mvbk", name.replace(' ', "_")));
        std::fs::write(&path, &bytes).expect("write tampered");
        let err = backup::verify(&path, &trusted, None, &no_progress)
            .expect_err(name)
            .to_string();
        assert!(err.contains(expect), "{name}: {err}");
        let err = backup::verify(&path, &trusted, Some(&private), &no_progress)
            .expect_err(name)
            .to_string();
        assert!(err.contains("rejected"), "{name}: {err}");
        let target = target_name("tamper");
        let err = backup::restore(&restore_options(&path, &k, &target), &no_progress)
            .await
            .expect_err(name)
            .to_string();
        assert!(err.contains("rejected"), "{name}: {err}");
        assert!(!database_exists(&target).await, "{name}: nothing restored");
    }

    // The wrong private key: refused by key id before decrypting anything.
    let target = target_name("wrongkey");
    let mut wrong = restore_options(&a.path, &k, &target);
    wrong.private_key = other.private.clone();
    let err = backup::restore(&wrong, &no_progress)
        .await
        .expect_err("wrong private key");
    assert!(err.to_string().contains("wrapped for RSA key"), "{err}");
    assert!(!database_exists(&target).await);
    let other_private = UnwrapKey::load(&other.private).expect("other private");
    let err = backup::verify(&a.path, &trusted, Some(&other_private), &no_progress)
        .expect_err("wrong private key");
    assert!(err.to_string().contains("wrapped for RSA key"), "{err}");

    // The wrong signature key, both ways round.
    let other_trusted = VerifyKey::load(&other.verify).expect("other verify key");
    let err = backup::verify(&a.path, &other_trusted, None, &no_progress).expect_err("untrusted");
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
    let err = backup::verify(&c.path, &trusted, None, &no_progress).expect_err("signed by other");
    assert!(err.to_string().contains("signed by key"), "{err}");
    let err = backup::restore(&restore_options(&c.path, &k, &target), &no_progress)
        .await
        .expect_err("signed by other");
    assert!(err.to_string().contains("signature"), "{err}");
    assert!(!database_exists(&target).await);

    // A listing flags the bad signature without reading the body.
    let listed = backup::list(&out, Some(&trusted)).expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed
            .iter()
            .filter(|l| l.signature_ok == Some(false))
            .count(),
        1
    );
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let db = TestDb::create("backup_ret").await;
    let mut c: Conn = direct(Some(&db.name)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("create");
    c.disconnect().await.ok();
    let out = dir.path().join("out");
    let mut opts = create_options(&db.name, &out, &k);
    opts.retention = 2;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(backup::create(&opts, &no_progress).await.expect("create"));
        // Names carry the second of creation: keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert_eq!(made[2].removed, vec![made[0].path.clone()]);
    let listed = backup::list(&out, None).expect("list");
    assert_eq!(
        listed.iter().map(|l| l.path.clone()).collect::<Vec<_>>(),
        vec![made[1].path.clone(), made[2].path.clone()]
    );
    db.drop_now().await;
}

fn myveil(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_myveil"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run myveil");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keygen_create_list_verify_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::create("backup_cli").await;
    let mut c = direct(Some(&db.name)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NULL)")
        .await
        .expect("create");
    c.query_drop("INSERT INTO t VALUES (1, 'one 😀'), (2, NULL)")
        .await
        .expect("insert");
    c.disconnect().await.ok();
    let config = dir.path().join("myveil.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[backend]
address = "127.0.0.1:3306"
[backend.accounts.main]
user = "root"
[roles.app]
backend_account = "main"
[users]
file = "users.toml"
[backup]
databases = ["{}"]
dir = "backups"
retention = 5
"#,
            db.name
        ),
    )
    .expect("config");
    let (ok, out) = myveil(&config, &["keygen"]);
    assert!(ok && out.contains("backup_rsa_private.pem"), "{out}");
    let private = dir.path().join("keys/backup_rsa_private.pem");
    let public = std::fs::read(dir.path().join("keys/backup_rsa_public.pem")).expect("public");
    let (ok, out) = myveil(&config, &["keygen"]);
    assert!(ok && out.contains("kept backup key"), "{out}");
    assert_eq!(
        std::fs::read(dir.path().join("keys/backup_rsa_public.pem")).expect("public"),
        public,
        "existing keys are left alone"
    );

    let (ok, out) = myveil(&config, &["backup", "create"]);
    assert!(ok && out.contains("2 rows"), "{out}");
    let file = std::fs::read_dir(dir.path().join("backups"))
        .expect("backups dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "mvbk"))
        .expect("a backup file");
    let file_arg = file.to_str().expect("utf-8 path");
    let (ok, out) = myveil(&config, &["backup", "list"]);
    assert!(
        ok && out.contains("signature ok") && out.contains(&db.name),
        "{out}"
    );
    let (ok, out) = myveil(&config, &["backup", "verify", file_arg]);
    assert!(ok && out.contains("OK"), "{out}");
    let private_arg = private.to_str().expect("utf-8 path");
    let (ok, out) = myveil(
        &config,
        &["backup", "verify", file_arg, "--private-key", private_arg],
    );
    assert!(ok && out.contains("plaintext digest checked"), "{out}");
    let target = target_name("cli");
    let (ok, out) = myveil(
        &config,
        &[
            "backup",
            "restore",
            file_arg,
            "--private-key",
            private_arg,
            "--into",
            &target,
        ],
    );
    assert!(
        ok && out.contains("1 tables, 2 rows") && out.contains("no myveil keys"),
        "{out}"
    );
    let mut c = direct(Some(&target)).await;
    let v: Option<String> = c
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .expect("select");
    assert_eq!(v.as_deref(), Some("one 😀"));
    c.disconnect().await.ok();
    let (ok, out) = myveil(
        &config,
        &[
            "backup",
            "restore",
            file_arg,
            "--private-key",
            private_arg,
            "--into",
            &target,
        ],
    );
    assert!(!ok && out.contains("not empty"), "{out}");
    drop_database(&target).await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_several_databases_restores_the_one_chosen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let one = TestDb::create("backup_multi_a").await;
    let two = TestDb::create("backup_multi_b").await;
    for (db, rows) in [(&one.name, 1), (&two.name, 2)] {
        let mut c = direct(Some(db)).await;
        c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
            .await
            .expect("create");
        for id in 0..rows {
            c.exec_drop("INSERT INTO t VALUES (?)", (id,))
                .await
                .expect("insert");
        }
        c.disconnect().await.ok();
    }
    let mut opts = create_options(&one.name, &dir.path().join("out"), &k);
    opts.databases.push(two.name.clone());
    let created = backup::create(&opts, &no_progress).await.expect("create");
    assert_eq!(created.manifest.databases.len(), 2);

    // An existing, empty target is fine; the backup's database must be named.
    let target = target_name("multi");
    let mut c = direct(None).await;
    c.query_drop(format!("CREATE DATABASE {}", q(&target)))
        .await
        .expect("create target");
    c.disconnect().await.ok();
    let mut restore = restore_options(&created.path, &k, &target);
    let err = backup::restore(&restore, &no_progress)
        .await
        .expect_err("which database?");
    assert!(err.to_string().contains("--database"), "{err}");
    restore.database = Some(two.name.clone());
    let r = backup::restore(&restore, &no_progress)
        .await
        .expect("restore");
    assert_eq!(r.tables[0].rows, 2);
    let mut c = direct(Some(&target)).await;
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("count");
    assert_eq!(n, Some(2));
    c.disconnect().await.ok();
    drop_database(&target).await;
    one.drop_now().await;
    two.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_connection_dies_cleans_up_and_leaves_the_target_alone() {
    const USER: &str = "myveil_t_killed_restore";
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let db = TestDb::create("backup_kill").await;
    let mut c = direct(Some(&db.name)).await;
    // The restore runs as its own account, so only its connection is killed (other tests
    // restore at the same time as root).
    c.query_drop(format!(
        "CREATE USER IF NOT EXISTS '{USER}'@'%'; GRANT ALL ON *.* TO '{USER}'@'%'"
    ))
    .await
    .expect("test account");
    c.query_drop("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .expect("create");
    let blob = vec![0x5Au8; 1 << 20];
    for i in 0..24 {
        c.exec_drop("INSERT INTO big VALUES (?, ?)", (i, blob.clone()))
            .await
            .expect("insert");
    }
    let created = backup::create(&create_options(&db.name, dir.path(), &k), &no_progress)
        .await
        .expect("backup");

    // Killed from another connection as soon as it works in its temporary database; a
    // restore that wins the race is retried.
    let mut killed_temp = None;
    for attempt in 0..5 {
        let target = target_name("killed");
        let mut opts = restore_options(&created.path, &k, &target);
        opts.opts = opts_of(direct_opts().user(Some(USER)));
        let restore = tokio::spawn(async move { backup::restore(&opts, &no_progress).await });
        let mut victim: Option<(u64, String)> = None;
        while victim.is_none() && !restore.is_finished() {
            victim = c
                .exec_first(
                    "SELECT ID, COALESCE(IF(DB LIKE 'myveil\\_restore\\_%', DB, NULL), \
                     REGEXP_SUBSTR(INFO, 'myveil_restore_[0-9a-f]+')) FROM information_schema.PROCESSLIST \
                     WHERE USER = ? AND (DB LIKE 'myveil\\_restore\\_%' OR INFO LIKE '%myveil\\_restore\\_%')",
                    (USER,),
                )
                .await
                .expect("processlist");
        }
        if let Some((id, _)) = &victim {
            let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
        }
        let result = restore.await.expect("join");
        match (victim, result) {
            (Some((_, temp)), Err(e)) => {
                assert!(
                    !database_exists(&target).await,
                    "the target was not created: {e}"
                );
                killed_temp = Some(temp);
                break;
            }
            (_, r) => {
                assert!(r.is_ok() || attempt < 4, "{r:?}");
                drop_database(&target).await;
            }
        }
    }
    c.query_drop(format!("DROP USER IF EXISTS '{USER}'@'%'"))
        .await
        .expect("drop test account");
    c.disconnect().await.ok();
    let temp = killed_temp.expect("a restore was killed mid-way");
    assert!(
        !database_exists(&temp).await,
        "the temporary database {temp} was dropped on a fresh connection"
    );
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_that_call_stored_functions_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys(dir.path(), "k");
    let db = TestDb::create("backup_fn").await;
    let mut c = direct(Some(&db.name)).await;
    for sql in [
        "CREATE TABLE n (x INT)",
        "INSERT INTO n VALUES (1), (2)",
        "CREATE FUNCTION twice(v INT) RETURNS INT DETERMINISTIC RETURN v * 2",
        "CREATE VIEW doubled AS SELECT twice(x) AS y FROM n",
    ] {
        c.query_drop(sql).await.expect("setup");
    }
    c.disconnect().await.ok();
    let created = backup::create(&create_options(&db.name, dir.path(), &k), &no_progress)
        .await
        .expect("backup");
    let target = target_name("fn");
    backup::restore(&restore_options(&created.path, &k, &target), &no_progress)
        .await
        .expect("restore: routines before the views that call them");
    let mut r = direct(Some(&target)).await;
    let ys: Vec<i32> = r
        .query("SELECT y FROM doubled ORDER BY y")
        .await
        .expect("view");
    assert_eq!(ys, [2, 4]);
    r.disconnect().await.ok();
    drop_database(&target).await;
    db.drop_now().await;
}
