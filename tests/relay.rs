//! The relay with mysql_async against the real MariaDB: text and binary protocol, prepared
//! statements re-executed with changing parameters, multi-results, transactions, large
//! values, connection ids and KILL, pooling and reset, dead backends.

mod common;

use common::{Proxy, TestDb, direct, ensure_max_allowed_packet};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use sha2::{Digest, Sha256};

/// s, n, d (as text), b
type TypedRow = (Option<String>, Option<i64>, Option<String>, Option<Vec<u8>>);

#[tokio::test]
async fn text_and_prepared_statements_round_trip_every_type() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("types").await;
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(200), n BIGINT, d DECIMAL(12,3),
         f DOUBLE, dt DATETIME(6), b BLOB, j JSON, e ENUM('x','y'), u BIGINT UNSIGNED)",
    )
    .await
    .expect("create");
    c.query_drop("INSERT INTO t (s, n, d, f, dt, b, j, e, u) VALUES ('plain', -5, 12.5, 1.25, '2024-02-29 13:14:15.123456', x'00ff', '{\"a\":1}', 'y', 18446744073709551615)")
        .await
        .expect("text insert");
    assert_eq!(c.last_insert_id(), Some(1));
    assert_eq!(c.affected_rows(), 1);

    // Re-executed prepared statement with parameters that change length, type and nullness:
    // a relay that shifts bytes between executions corrupts exactly this.
    let stmt = c
        .prep("INSERT INTO t (s, n, d, b) VALUES (?, ?, ?, ?)")
        .await
        .expect("prepare");
    let values: Vec<TypedRow> = vec![
        (
            Some("a".into()),
            Some(1),
            Some("1.5".into()),
            Some(vec![1, 2, 3]),
        ),
        (
            Some("much longer string with ünïcödé 🎉".into()),
            Some(i64::MAX),
            None,
            None,
        ),
        (
            None,
            None,
            Some("-999999999.999".into()),
            Some(vec![0; 1000]),
        ),
        (
            Some(String::new()),
            Some(0),
            Some("0.001".into()),
            Some(Vec::new()),
        ),
    ];
    for v in &values {
        c.exec_drop(&stmt, v.clone()).await.expect("execute");
    }
    let back: Vec<TypedRow> = c
        .exec(
            "SELECT s, n, CAST(d AS CHAR), b FROM t WHERE id > ? ORDER BY id",
            (1,),
        )
        .await
        .expect("prepared select");
    let normalized: Vec<_> = values
        .iter()
        .map(|(s, n, d, b)| {
            let d = d.as_ref().map(|d| {
                let v: f64 = d.parse().expect("decimal");
                format!("{v:.3}")
            });
            (s.clone(), *n, d, b.clone())
        })
        .collect();
    assert_eq!(back, normalized);

    // Same rows through the text protocol and through the binary protocol agree.
    let text: Vec<Row> = c
        .query("SELECT * FROM t ORDER BY id")
        .await
        .expect("text select");
    let binary: Vec<Row> = c
        .exec("SELECT * FROM t ORDER BY id", ())
        .await
        .expect("binary select");
    assert_eq!(text.len(), 5);
    assert_eq!(binary.len(), 5);
    let first: (i32, String, i64, String, f64) = c
        .exec_first(
            "SELECT id, s, n, CAST(d AS CHAR), f FROM t WHERE id = ?",
            (1,),
        )
        .await
        .expect("select")
        .expect("row");
    assert_eq!(first, (1, "plain".into(), -5, "12.500".into(), 1.25));
    let u: u64 = c
        .query_first("SELECT u FROM t WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(u, u64::MAX);
    c.close(stmt).await.expect("close statement");
    c.disconnect().await.expect("disconnect");
    db.drop_now().await;
}

#[tokio::test]
async fn multi_statements_and_procedures_return_every_result_set() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("multi").await;
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        .await
        .expect("create");
    let mut result = c
        .query_iter("SELECT 1 AS a; INSERT INTO t VALUES (1, 'x'), (2, 'y'); SELECT v FROM t ORDER BY id; SELECT 'done'")
        .await
        .expect("multi statement");
    let first: Vec<i64> = result.collect().await.expect("first");
    assert_eq!(first, vec![1]);
    let insert: Vec<Row> = result.collect().await.expect("insert ok");
    assert!(insert.is_empty());
    assert_eq!(result.affected_rows(), 2);
    let third: Vec<String> = result.collect().await.expect("third");
    assert_eq!(third, vec!["x", "y"]);
    let fourth: Vec<String> = result.collect().await.expect("fourth");
    assert_eq!(fourth, vec!["done"]);
    drop(result);

    c.query_drop(
        "CREATE PROCEDURE two_sets(IN k INT) BEGIN SELECT v FROM t WHERE id = k; SELECT COUNT(*) FROM t; END",
    )
    .await
    .expect("create procedure");
    let mut r = c.query_iter("CALL two_sets(2)").await.expect("call");
    let a: Vec<String> = r.collect().await.expect("set 1");
    let b: Vec<i64> = r.collect().await.expect("set 2");
    assert_eq!((a, b), (vec!["y".to_owned()], vec![2]), "text CALL");
    drop(r);
    let mut r = c
        .exec_iter("CALL two_sets(?)", (2,))
        .await
        .expect("exec call");
    let a: Vec<String> = r.collect().await.expect("set 1");
    let b: Vec<i64> = r.collect().await.expect("set 2");
    assert_eq!((a, b), (vec!["y".to_owned()], vec![2]), "prepared CALL");
    drop(r);
    // The session is in sync afterwards.
    let one: i64 = c.query_first("SELECT 1").await.expect("q").expect("row");
    assert_eq!(one, 1);
    // An error in the middle of a multi-statement ends it with the backend's own error.
    let err = c
        .query_drop("SELECT 1; SELECT * FROM missing; SELECT 3")
        .await
        .expect_err("fails");
    let mysql_async::Error::Server(e) = err else {
        panic!("server error expected: {err:?}")
    };
    assert_eq!((e.code, e.state.as_str()), (1146, "42S02"));
    let two: i64 = c.query_first("SELECT 2").await.expect("q").expect("row");
    assert_eq!(two, 2);
    c.disconnect().await.expect("disconnect");
    db.drop_now().await;
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("tx").await;
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .expect("create");
    let mut tx = c
        .start_transaction(Default::default())
        .await
        .expect("begin");
    tx.exec_drop("INSERT INTO t VALUES (?)", (1,))
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    let mut tx = c
        .start_transaction(Default::default())
        .await
        .expect("begin");
    tx.exec_drop("INSERT INTO t VALUES (?)", (2,))
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let ids: Vec<i32> = direct(Some(&db.name))
        .await
        .query("SELECT id FROM t")
        .await
        .expect("direct read");
    assert_eq!(ids, vec![2]);
    c.disconnect().await.expect("disconnect");
    db.drop_now().await;
}

#[tokio::test]
async fn values_over_16_mib_cross_both_ways() {
    const SIZE: usize = 20 << 20;
    common::trace();
    ensure_max_allowed_packet(64 << 20).await;
    let proxy = Proxy::start().await;
    let db = TestDb::create("large").await;
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .expect("create");
    let blob: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let digest = hex::encode(Sha256::digest(&blob));
    c.exec_drop("INSERT INTO t VALUES (1, ?)", (blob.clone(),))
        .await
        .expect("prepared insert");
    // A text query over 16 MiB: the command itself spans two packets.
    c.query_drop(format!(
        "INSERT INTO t VALUES (2, x'{}')",
        hex::encode(&blob[..9 << 20])
    ))
    .await
    .expect("text insert");
    let back: Vec<u8> = c
        .exec_first("SELECT b FROM t WHERE id = ?", (1,))
        .await
        .expect("q")
        .expect("row");
    assert_eq!(back.len(), SIZE);
    assert_eq!(hex::encode(Sha256::digest(&back)), digest);
    let text: Vec<u8> = c
        .query_first("SELECT b FROM t WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(text, blob);
    let at_rest: String = direct(Some(&db.name))
        .await
        .query_first("SELECT SHA2(b, 256) FROM t WHERE id = 1")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(at_rest, digest);
    let second: usize = c
        .query_first("SELECT LENGTH(b) FROM t WHERE id = 2")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(second, 9 << 20);
    c.disconnect().await.expect("disconnect");
    db.drop_now().await;
}

/// The backend thread a session runs on (its own id is myveil's, ADR 0007).
async fn backend_thread(c: &mut mysql_async::Conn) -> u32 {
    c.query_first("SELECT @@pseudo_thread_id")
        .await
        .expect("thread id")
        .expect("row")
}

#[tokio::test]
async fn greeting_id_is_connection_id_and_kill_query_of_it_stops_that_query() {
    let proxy = Proxy::start().await;
    let mut a = proxy.app(None).await;
    let id: u32 = a
        .query_first("SELECT CONNECTION_ID()")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        a.id(),
        id,
        "the greeting's id is the session's CONNECTION_ID()"
    );
    let killer = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut b = proxy.app(None).await;
        assert_ne!(b.id(), id);
        b.query_drop(format!("KILL QUERY {id}"))
            .await
            .expect("kill query");
        b.disconnect().await.ok();
    };
    let started = std::time::Instant::now();
    let (slept, ()) = tokio::join!(a.query_first::<i64, _>("SELECT SLEEP(30)"), killer);
    // MariaDB reports an interrupted SLEEP as a result of 1 or as error 1317.
    match slept {
        Ok(v) => assert_eq!(v, Some(1), "SLEEP was interrupted"),
        Err(e) => assert!(
            matches!(e, mysql_async::Error::Server(ref s) if s.code == 1317),
            "{e:?}"
        ),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "the query was stopped"
    );
    let still: i64 = a
        .query_first("SELECT 7")
        .await
        .expect("usable after kill")
        .expect("row");
    assert_eq!(still, 7);
    a.disconnect().await.ok();
}

#[tokio::test]
async fn every_session_has_its_own_id_though_backend_connections_are_reused() {
    let proxy = Proxy::start().await;
    let mut seen = std::collections::HashSet::new();
    let mut threads = std::collections::HashSet::new();
    for _ in 0..5 {
        let mut c = proxy.app(None).await;
        let id: u32 = c
            .query_first("SELECT CONNECTION_ID()")
            .await
            .expect("q")
            .expect("row");
        assert_eq!(c.id(), id);
        assert!(seen.insert(id), "a reconnect gets a new id");
        threads.insert(backend_thread(&mut c).await);
        c.disconnect().await.ok();
    }
    assert!(
        threads.len() < 5,
        "backend connections were reused: {threads:?}"
    );
    // Live sessions at once: all different, and each CONNECTION_ID() is its own, also in
    // WHERE clauses and prepared statements.
    let mut a = proxy.app(None).await;
    let mut b = proxy.app(None).await;
    assert_ne!(a.id(), b.id());
    for c in [&mut a, &mut b] {
        let id = c.id();
        let same: Option<i64> = c
            .query_first(format!("SELECT 1 FROM dual WHERE CONNECTION_ID() = {id}"))
            .await
            .expect("where");
        assert_eq!(same, Some(1));
        let prepared: Option<u64> = c
            .exec_first("SELECT CONNECTION_ID() + ?", (0,))
            .await
            .expect("prepared");
        assert_eq!(prepared, Some(u64::from(id)));
    }
    // The backend's unix socket is never named (drivers would reconnect through it, past
    // myveil).
    let socket: Option<Option<String>> = a.query_first("SELECT @@socket").await.expect("socket");
    assert_eq!(socket, Some(None));
    // SHOW PROCESSLIST lists this user's sessions by their own ids, this one with its text.
    let rows: Vec<(u64, String, String, Option<String>)> = a
        .query("SHOW PROCESSLIST")
        .await
        .expect("processlist")
        .into_iter()
        .map(|r: mysql_async::Row| {
            (
                r.get::<u64, _>("Id").expect("Id"),
                r.get::<String, _>("User").expect("User"),
                r.get::<String, _>("Host").expect("Host"),
                r.get::<Option<String>, _>("Info").expect("Info"),
            )
        })
        .collect();
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert!(
        ids.contains(&u64::from(a.id())) && ids.contains(&u64::from(b.id())),
        "{rows:?}"
    );
    let own = rows
        .iter()
        .find(|r| r.0 == u64::from(a.id()))
        .expect("own row");
    assert_eq!(own.1, common::APP_USER);
    assert_eq!(own.3.as_deref(), Some("SHOW PROCESSLIST"));
    assert!(
        own.2.starts_with("127.0.0.1:"),
        "the client's address: {}",
        own.2
    );
    // KILL of an unknown id, and of another user's session, are refused as the server does.
    let e = a
        .query_drop("KILL QUERY 4000000000")
        .await
        .expect_err("unknown");
    assert!(
        matches!(e, mysql_async::Error::Server(ref s) if s.code == 1094),
        "{e:?}"
    );
    let mut other = mysql_async::Conn::new(proxy.opts(common::OTHER_USER, common::OTHER_PASSWORD))
        .await
        .expect("other user");
    let theirs: Vec<u64> = other
        .query_map("SHOW FULL PROCESSLIST", |r: mysql_async::Row| {
            r.get::<u64, _>("Id").expect("Id")
        })
        .await
        .expect("processlist");
    assert_eq!(
        theirs,
        vec![u64::from(other.id())],
        "another user's sessions are not listed"
    );
    let e = other
        .query_drop(format!("KILL {}", a.id()))
        .await
        .expect_err("not the owner");
    assert!(
        matches!(e, mysql_async::Error::Server(ref s) if s.code == 1095),
        "{e:?}"
    );
    // KILL CONNECTION of one's own other session ends it.
    let b_id = b.id();
    a.query_drop(format!("KILL CONNECTION {b_id}"))
        .await
        .expect("kill connection");
    assert!(
        b.query_drop("SELECT 1").await.is_err(),
        "the killed session is over"
    );
    let v: Option<i64> = a.query_first("SELECT 3").await.expect("killer goes on");
    assert_eq!(v, Some(3));
    for c in [a, other] {
        c.disconnect().await.ok();
    }
}

#[tokio::test]
async fn pooled_backend_connections_are_reset_before_reuse() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("pool").await;
    let mut c = proxy.app(None).await;
    let first_id = backend_thread(&mut c).await;
    c.query_drop(format!("USE `{}`", db.name))
        .await
        .expect("use");
    c.query_drop("SET @secret = 'left behind'")
        .await
        .expect("set");
    c.query_drop("CREATE TEMPORARY TABLE tmp (x INT)")
        .await
        .expect("temp table");
    c.query_drop("BEGIN").await.expect("begin");
    c.disconnect().await.expect("disconnect");
    // Disconnect above was inside a transaction: that connection is not pooled.
    let mut c = proxy.app(None).await;
    c.query_drop("SET @secret = 'left behind'")
        .await
        .expect("set");
    let second_id = backend_thread(&mut c).await;
    c.disconnect().await.expect("disconnect");
    let mut c = proxy.app(None).await;
    let third_id = backend_thread(&mut c).await;
    assert_ne!(
        third_id, first_id,
        "a connection left in a transaction is not reused"
    );
    assert_eq!(third_id, second_id, "the idle connection is reused");
    let (v, db_now): (Option<String>, Option<String>) = c
        .query_first("SELECT @secret, DATABASE()")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        (v, db_now),
        (None, None),
        "session state must not leak between clients"
    );
    c.disconnect().await.ok();
    db.drop_now().await;
}

#[tokio::test]
async fn backend_errors_keep_code_state_and_message() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("errors").await;
    let mut via = proxy.app(Some(&db.name)).await;
    let mut raw = direct(Some(&db.name)).await;
    for c in [&mut via, &mut raw] {
        c.query_drop("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY)")
            .await
            .expect("create");
    }
    via.query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    for sql in [
        "INSERT INTO t VALUES (1)",
        "SELEC 1",
        "SELECT nope FROM t",
        "SELECT * FROM other.db",
    ] {
        let a = via.query_drop(sql).await.expect_err("error via myveil");
        let b = raw.query_drop(sql).await.expect_err("error direct");
        match (a, b) {
            (mysql_async::Error::Server(a), mysql_async::Error::Server(b)) => {
                assert_eq!(
                    (a.code, &a.state, &a.message),
                    (b.code, &b.state, &b.message),
                    "{sql}"
                )
            }
            other => panic!("server errors expected: {other:?}"),
        }
    }
    let warn: Vec<Row> = via
        .query("SELECT CAST('12abc' AS INT)")
        .await
        .expect("warning query");
    assert_eq!(warn.len(), 1);
    assert_eq!(via.get_warnings(), 1);
    via.disconnect().await.ok();
    raw.disconnect().await.ok();
    db.drop_now().await;
}

#[tokio::test]
async fn killed_backend_ends_the_session_with_an_error_and_others_continue() {
    let proxy = Proxy::start().await;
    let mut victim = proxy.app(None).await;
    let id = backend_thread(&mut victim).await;
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut root = direct(None).await;
        root.query_drop(format!("KILL CONNECTION {id}"))
            .await
            .expect("kill");
        root.disconnect().await.ok();
    };
    let (r, ()) = tokio::join!(victim.query_drop("SELECT SLEEP(30)"), kill);
    assert!(r.is_err(), "the client must see an error");
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "the session is over"
    );
    let mut other = proxy.app(None).await;
    let v: i64 = other
        .query_first("SELECT 5")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(v, 5);
    other.disconnect().await.ok();
}

#[tokio::test]
async fn change_user_reauthenticates_and_resets() {
    let proxy = Proxy::start().await;
    let mut c = proxy.app(None).await;
    c.query_drop("SET @x = 1").await.expect("set");
    let bad = mysql_async::ChangeUserOpts::default()
        .with_user(Some(common::OTHER_USER.to_owned()))
        .with_pass(Some("wrong".to_owned()));
    let err = c
        .change_user(bad)
        .await
        .expect_err("wrong password refused");
    assert!(format!("{err:?}").contains("1045"), "{err:?}");

    let mut c = proxy.app(None).await;
    c.query_drop("SET @x = 1").await.expect("set");
    let good = mysql_async::ChangeUserOpts::default()
        .with_user(Some(common::OTHER_USER.to_owned()))
        .with_pass(Some(common::OTHER_PASSWORD.to_owned()));
    c.change_user(good).await.expect("change user");
    let x: Option<i64> = c.query_first("SELECT @x").await.expect("q").expect("row");
    assert_eq!(x, None, "COM_CHANGE_USER resets the session");
    c.disconnect().await.ok();
}

async fn connect_error(opts: mysql_async::OptsBuilder) -> mysql_async::ServerError {
    match Conn::new(opts).await {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("expected a server error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let proxy = Proxy::start().await;
    let wrong = connect_error(proxy.opts(common::APP_USER, "not-the-password")).await;
    let unknown = connect_error(proxy.opts("ghost", "not-the-password")).await;
    assert_eq!((wrong.code, wrong.state.as_str()), (1045, "28000"));
    assert_eq!((unknown.code, unknown.state.as_str()), (1045, "28000"));
    assert_eq!(
        wrong.message.replace(common::APP_USER, "U"),
        unknown.message.replace("ghost", "U"),
        "messages differ only in the name"
    );
    let bad_db = connect_error(proxy.app_opts().db_name(Some("myveil_no_such_db"))).await;
    assert_eq!(bad_db.code, 1049, "unknown database comes from the backend");
}

#[tokio::test]
async fn max_connections_answers_1040() {
    let proxy = Proxy::start_with(common::Setup {
        listen: "max_connections = 2",
        ..Default::default()
    })
    .await;
    let a = proxy.app(None).await;
    let b = proxy.app(None).await;
    let e = connect_error(proxy.app_opts()).await;
    assert_eq!(e.code, 1040);
    drop((a, b));
}

#[tokio::test]
async fn caching_sha2_password_fast_path() {
    let proxy = Proxy::start_with(common::Setup {
        listen: "auth_plugin = \"caching_sha2_password\"",
        ..Default::default()
    })
    .await;
    let mut c = proxy.app(None).await;
    let v: i64 = c.query_first("SELECT 3").await.expect("q").expect("row");
    assert_eq!(v, 3);
    c.disconnect().await.ok();
    let e = connect_error(proxy.opts(common::APP_USER, "wrong-password")).await;
    assert_eq!(e.code, 1045);
}

#[tokio::test]
async fn binary_values_and_nulls_survive_prepared_selects() {
    let proxy = Proxy::start().await;
    let mut c = proxy.app(None).await;
    let row: Row = c
        .exec_first(
            "SELECT ?, ?, ?, ?",
            (Value::NULL, 3.5f64, "x", Value::Bytes(vec![0, 255])),
        )
        .await
        .expect("q")
        .expect("row");
    assert_eq!(row.len(), 4);
    assert_eq!(row.as_ref(0), Some(&Value::NULL));
    c.disconnect().await.ok();
}

/// LOAD DATA LOCAL INFILE in the middle of a multi-statement query, after a result set
/// (mysql_async's own test): under compression the client numbers its file packets after
/// the frames, which myveil must renumber for the backend and back.
#[tokio::test]
async fn local_infile_in_the_middle_of_a_multi_result_query() {
    use mysql_async::WhiteListFsHandler;
    let proxy = Proxy::start().await;
    let db = TestDb::create("infile").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rows.txt");
    std::fs::write(&file, b"AAAAAA\nBBBBBB\nCCCCCC\n").expect("file");
    let opts = proxy
        .app_opts()
        .db_name(Some(db.name.clone()))
        .local_infile_handler(Some(WhiteListFsHandler::new(&[file.clone()][..])));
    let mut c = mysql_async::Conn::new(opts).await.expect("connect");
    c.query_drop("CREATE TEMPORARY TABLE tmp (a TEXT)")
        .await
        .expect("temp");
    let name = file.to_str().expect("path");
    let mut result = c
        .query_iter(format!(
            "SELECT * FROM tmp; LOAD DATA LOCAL INFILE '{name}' INTO TABLE tmp; \
             LOAD DATA LOCAL INFILE '{name}' INTO TABLE tmp; SELECT * FROM tmp"
        ))
        .await
        .expect("query");
    let first: Vec<String> = result.collect().await.expect("first result");
    assert!(first.is_empty());
    for _ in 0..2 {
        let loaded: Vec<String> = result.collect().await.expect("load");
        assert!(loaded.is_empty());
        assert_eq!(result.affected_rows(), 3);
    }
    let rows: Vec<String> = result.collect().await.expect("last result");
    assert_eq!(rows.len(), 6);
    drop(result);
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM tmp")
        .await
        .expect("after");
    assert_eq!(n, Some(6));
    c.disconnect().await.ok();
    db.drop_now().await;
}

/// A multi-statement query's finished results reach the client while a later statement
/// still runs (Connector/Python's read-timeout tests), as directly, plain and compressed:
/// the second statement waits for a lock that is released only once the client has read
/// the whole first result.
#[tokio::test]
async fn earlier_results_arrive_while_a_later_statement_runs() {
    use myveil::wire::compress::{Algorithm, Compressed};
    use myveil::wire::{PacketConn, Stream};
    let proxy = Proxy::start().await;
    let direct_addr: std::net::SocketAddr = "127.0.0.1:3306".parse().expect("addr");
    let lock = format!("myveil_t_results_{}", std::process::id());
    for (target, addr, user, password, compress) in [
        ("direct", direct_addr, "root", "", false),
        (
            "myveil",
            proxy.addr,
            common::APP_USER,
            common::APP_PASSWORD,
            false,
        ),
        (
            "myveil compressed",
            proxy.addr,
            common::APP_USER,
            common::APP_PASSWORD,
            true,
        ),
    ] {
        let mut holder = direct(None).await;
        let got: Option<i64> = holder
            .query_first(format!("SELECT GET_LOCK('{lock}', 5)"))
            .await
            .expect("lock");
        assert_eq!(got, Some(1));
        let multi = 0x0001_0000;
        let caps = if compress { multi | 0x20 } else { multi };
        let (c, _, _) = common::raw::login_with(addr, user, password, None, caps).await;
        let mut c: PacketConn = if compress {
            let (stream, early) = c.into_parts();
            let z = Compressed::new(stream, Algorithm::Zlib, early).expect("compressed");
            PacketConn::new(Stream::Compressed(Box::new(z)))
        } else {
            c
        };
        common::raw::send(
            &mut c,
            format!("\x03SELECT 1; SELECT GET_LOCK('{lock}', 20)").as_bytes(),
        )
        .await;
        // Column count, definition, EOF, the row, EOF (more results follow).
        let first: Vec<Vec<u8>> = read_n(&mut c, 5).await;
        assert_eq!(first[3], b"\x011", "{target}: the first result's row");
        // Only now can the second statement take the lock.
        holder
            .query_drop(format!("DO RELEASE_LOCK('{lock}')"))
            .await
            .expect("release");
        let second = read_n(&mut c, 5).await;
        assert_eq!(
            second[3], b"\x011",
            "{target}: the lock was taken after the release"
        );
        holder.disconnect().await.ok();
    }

    async fn read_n(c: &mut PacketConn, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(common::raw::read(c).await);
        }
        out
    }
}
