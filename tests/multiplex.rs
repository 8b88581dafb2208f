//! `[backend] mode = "multiplexed"`: sessions share backend connections between statements.
//! Each test logs in to MariaDB as an account of its own, so the server's process list
//! counts exactly this proxy's connections, and checks what sessions see against what a
//! direct connection with the same statements sees.

mod common;

use std::time::{Duration, Instant};

use common::{BackendAccount, Proxy, Setup, TestDb};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts};

async fn proxy(account: &BackendAccount, limit: usize) -> Proxy {
    Proxy::start_with(Setup {
        backend: Some(account.backend_toml(
            "mode = \"multiplexed\"\nwait_timeout_ms = 20000",
            &format!("max_backend_connections = {limit}"),
        )),
        ..Default::default()
    })
    .await
}

/// What a session sees of its own state.
const STATE: &str = "SELECT DATABASE(), @@session.sql_mode, @@session.time_zone, \
    @@session.sort_buffer_size, @@session.character_set_client, \
    @@session.collation_connection, @@session.tx_isolation, @@session.autocommit, \
    CONCAT(@@session.div_precision_increment, '/', 1/3)";

type State = (
    Option<String>,
    String,
    String,
    u64,
    String,
    String,
    String,
    u8,
    String,
);

async fn state(c: &mut Conn) -> State {
    c.query_first(STATE).await.expect("state").expect("a row")
}

/// Each session's own settings, run through the proxy and directly.
fn settings(db: &str, which: usize) -> Vec<String> {
    let (mode, tz, sort, names, iso, div) = [
        (
            "ANSI_QUOTES",
            "+05:00",
            1_048_576,
            "latin1",
            "READ COMMITTED",
            2,
        ),
        (
            "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES",
            "-03:30",
            524_288,
            "utf8mb4 COLLATE utf8mb4_bin",
            "SERIALIZABLE",
            7,
        ),
    ][which];
    vec![
        format!("USE `{db}`"),
        format!("SET sql_mode = '{mode}'"),
        format!("SET time_zone = '{tz}'"),
        format!("SET SESSION sort_buffer_size = {sort}"),
        format!("SET NAMES {names}"),
        format!("SET SESSION TRANSACTION ISOLATION LEVEL {iso}"),
        format!("SET div_precision_increment = {div}"),
    ]
}

#[tokio::test]
async fn two_sessions_alternating_over_one_connection_each_see_their_own_state() {
    let db_a = TestDb::create("mux_a").await;
    let db_b = TestDb::create("mux_b").await;
    let account = BackendAccount::create("mux_state", &db_a.name).await;
    {
        let mut root = common::direct(None).await;
        for host in ["127.0.0.1", "localhost"] {
            root.query_drop(format!(
                "GRANT ALL ON `{}`.* TO '{}'@'{host}'",
                db_b.name, account.name
            ))
            .await
            .expect("grant");
        }
    }
    let proxy = proxy(&account, 1).await;
    let mut a = proxy.app(None).await;
    let mut b = proxy.app(None).await;
    let mut direct_a = common::direct(None).await;
    let mut direct_b = common::direct(None).await;
    // Interleaved: a statement of one, then of the other, over the one backend connection.
    for (sa, sb) in settings(&db_a.name, 0)
        .iter()
        .zip(settings(&db_b.name, 1).iter())
    {
        a.query_drop(sa).await.expect(sa);
        direct_a.query_drop(sa).await.expect(sa);
        b.query_drop(sb).await.expect(sb);
        direct_b.query_drop(sb).await.expect(sb);
    }
    let want_a = state(&mut direct_a).await;
    let want_b = state(&mut direct_b).await;
    assert_ne!(want_a, want_b);
    for _ in 0..10 {
        assert_eq!(state(&mut a).await, want_a, "session a");
        assert_eq!(state(&mut b).await, want_b, "session b");
    }
    assert_eq!(
        account.connections().await,
        1,
        "one backend connection for both"
    );
    // Each reads and writes in its own database, its own way.
    a.query_drop("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20))")
        .await
        .expect("create a");
    b.query_drop("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20))")
        .await
        .expect("create b");
    a.query_drop(r#"INSERT INTO "t" VALUES (1, 'a\\b')"#)
        .await
        .expect("ANSI_QUOTES in a");
    b.query_drop(r"INSERT INTO t VALUES (1, 'a\b')")
        .await
        .expect("NO_BACKSLASH_ESCAPES in b");
    let sa: Option<String> = a.query_first("SELECT s FROM t").await.expect("a reads");
    let sb: Option<String> = b.query_first("SELECT s FROM t").await.expect("b reads");
    // Each read as its own sql_mode says (swapped, a would store `a\\b`, b a backspace).
    assert_eq!(sa.as_deref(), Some(r"a\b"));
    assert_eq!(sb.as_deref(), Some(r"a\b"));
    for c in [a, b, direct_a, direct_b] {
        c.disconnect().await.ok();
    }
    drop(proxy);
    db_a.drop_now().await;
    db_b.drop_now().await;
}

#[tokio::test]
async fn what_cannot_move_keeps_the_connection() {
    let db = TestDb::create("mux_pins").await;
    let account = BackendAccount::create("mux_pins", &db.name).await;
    let proxy = proxy(&account, 2).await;
    let opts = || Opts::from(proxy.app_opts().db_name(Some(&db.name)));
    let mut setup = Conn::new(opts()).await.expect("setup");
    setup
        .query_drop("CREATE TABLE n (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .expect("create");

    // A user variable pins its session; another session keeps running on the other
    // connection, and the variable is still there.
    let mut pinned = Conn::new(opts()).await.expect("pinned");
    pinned.query_drop("SET @mine = 42").await.expect("set");
    let mut others = Vec::new();
    for _ in 0..5 {
        let mut c = Conn::new(opts()).await.expect("other");
        let v: Option<Option<i64>> = c.query_first("SELECT @mine").await.expect("other reads");
        assert_eq!(
            v,
            Some(None),
            "another session sees no user variable of the pinned one"
        );
        others.push(c);
    }
    let v: Option<i64> = pinned.query_first("SELECT @mine").await.expect("reads");
    assert_eq!(v, Some(42));

    // A transaction holds its connection until it ends: the other session waits for the
    // only free one meanwhile, and sees the rows once they are committed.
    let mut tx = others.pop().expect("a session");
    tx.query_drop("BEGIN").await.expect("begin");
    tx.query_drop("INSERT INTO n (v) VALUES (1), (2)")
        .await
        .expect("insert");
    let waiter = {
        let opts = opts();
        tokio::spawn(async move {
            let mut c = Conn::new(opts).await.expect("waiter");
            let n: Option<u64> = c
                .query_first("SELECT COUNT(*) FROM n")
                .await
                .expect("count");
            c.disconnect().await.ok();
            n
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.shared.pool.waiting() == 0 {
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.query_drop("COMMIT").await.expect("commit");
    assert_eq!(waiter.await.expect("join"), Some(2));

    // LAST_INSERT_ID() is the session's own, though others insert in between.
    let mut first = others.pop().expect("a session");
    let mut second = others.pop().expect("a session");
    first
        .query_drop("INSERT INTO n (v) VALUES (10)")
        .await
        .expect("insert");
    let id: Option<u64> = first
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("id");
    second
        .query_drop("INSERT INTO n (v) VALUES (20)")
        .await
        .expect("insert");
    let theirs: Option<u64> = second
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .expect("id");
    let v: Option<i64> = first
        .query_first(format!("SELECT v FROM n WHERE id = {}", id.expect("id")))
        .await
        .expect("row");
    assert_eq!(v, Some(10));
    assert_ne!(id, theirs);

    // A temporary table pins too, and prepared statements work (pinned).
    let mut temp = others.pop().expect("a session");
    temp.query_drop("CREATE TEMPORARY TABLE tmp (a INT)")
        .await
        .expect("temp");
    temp.query_drop("INSERT INTO tmp VALUES (7)")
        .await
        .expect("insert");
    let stmt = temp
        .prep("SELECT a FROM tmp WHERE a = ?")
        .await
        .expect("prepare");
    let a: Option<i32> = temp.exec_first(&stmt, (7,)).await.expect("execute");
    assert_eq!(a, Some(7));
    assert!(
        account.connections().await <= 2,
        "never more than the limit"
    );
    for c in [setup, pinned, tx, first, second, temp] {
        c.disconnect().await.ok();
    }
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test]
async fn an_idle_session_goes_on_when_its_connection_dies_and_can_be_killed() {
    let db = TestDb::create("mux_dies").await;
    let account = BackendAccount::create("mux_dies", &db.name).await;
    let proxy = proxy(&account, 1).await;
    let mut c = proxy.app(Some(&db.name)).await;
    c.query_drop("SET time_zone = '+02:00'").await.expect("tz");
    let thread: Option<u64> = c
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .expect("thread");
    // The backend connection dies while the session is between statements.
    let mut root = common::direct(None).await;
    root.query_drop(format!("KILL {}", thread.expect("thread")))
        .await
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(5);
    while account.connections().await > 0 {
        assert!(Instant::now() < deadline, "the connection did not go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (db_now, tz): (Option<String>, String) = c
        .query_first("SELECT DATABASE(), @@time_zone")
        .await
        .expect("the session goes on")
        .expect("row");
    assert_eq!(db_now.as_deref(), Some(db.name.as_str()));
    assert_eq!(tz, "+02:00");

    // KILL CONNECTION of a session between statements ends it.
    let id = c.id();
    let mut killer = proxy.app(None).await;
    killer
        .query_drop(format!("KILL CONNECTION {id}"))
        .await
        .expect("kill");
    let e = c.query_drop("SELECT 1").await.expect_err("killed");
    assert!(
        matches!(
            e,
            mysql_async::Error::Io(_)
                | mysql_async::Error::Driver(_)
                | mysql_async::Error::Server(_)
        ),
        "{e:?}"
    );
    killer.disconnect().await.ok();
    drop(root);
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_a_few_connections() {
    let db = TestDb::create("mux_many").await;
    let account = BackendAccount::create("mux_many", &db.name).await;
    let proxy = proxy(&account, 4).await;
    let opts = Opts::from(proxy.app_opts().db_name(Some(&db.name)));
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(Conn::new(opts.clone()).await.expect("connect"));
    }
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let v: Option<u64> = c
                .query_first(format!("SELECT {i} + 0"))
                .await
                .expect("query");
            (c, v)
        }));
    }
    let mut clients = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (c, v) = t.await.expect("join");
        assert_eq!(v, Some(i as u64));
        clients.push(c);
    }
    assert!(account.connections().await <= 4, "at most the limit");
    for c in clients {
        c.disconnect().await.ok();
    }
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test]
async fn prepared_statements_move_with_their_sessions() {
    let db = TestDb::create("mux_ps").await;
    let account = BackendAccount::create("mux_ps", &db.name).await;
    let proxy = proxy(&account, 2).await;
    let opts = || Opts::from(proxy.app_opts().db_name(Some(&db.name)));
    let mut setup = Conn::new(opts()).await.expect("setup");
    setup
        .query_drop("CREATE TABLE p (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .expect("create");
    setup
        .query_drop("INSERT INTO p VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await
        .expect("rows");
    // Six sessions over two connections, each with statements of its own and one text they
    // share, executed in turn: every execute lands on whichever connection is free.
    let mut sessions = Vec::new();
    for i in 0..6 {
        let mut c = Conn::new(opts()).await.expect("session");
        let shared = c
            .prep("SELECT v FROM p WHERE id = ?")
            .await
            .expect("prepare");
        let own = c
            .prep(format!("SELECT CONCAT(v, '-{i}') FROM p WHERE id = ?"))
            .await
            .expect("prepare own");
        sessions.push((c, shared, own));
    }
    // A transaction holds one of the two connections: every session runs on the other,
    // half of them on a connection their statements were not prepared on.
    let again = myveil::telemetry::metrics::METRICS.prepared_again_count();
    let mut blocker = Conn::new(opts()).await.expect("blocker");
    blocker.query_drop("BEGIN").await.expect("begin");
    blocker
        .query_drop("SELECT * FROM p FOR UPDATE")
        .await
        .expect("lock");
    for round in 0..6 {
        if round == 3 {
            blocker.query_drop("COMMIT").await.expect("commit");
            assert!(
                myveil::telemetry::metrics::METRICS.prepared_again_count() > again,
                "statements were prepared again on the free connection"
            );
        }
        for (i, (c, shared, own)) in sessions.iter_mut().enumerate() {
            let id = (round + i) % 3 + 1;
            let want = ["one", "two", "three"][id - 1];
            let v: Option<String> = c.exec_first(&*shared, (id,)).await.expect("execute shared");
            assert_eq!(v.as_deref(), Some(want));
            let v: Option<String> = c.exec_first(&*own, (id,)).await.expect("execute own");
            assert_eq!(v, Some(format!("{want}-{i}")));
        }
    }
    assert!(account.connections().await <= 2);
    // Closed and prepared again; a write through a prepared statement and its insert id.
    let (c, shared, _) = &mut sessions[0];
    c.close(shared.clone()).await.expect("close");
    let insert = c
        .prep("INSERT INTO p (id, v) VALUES (?, ?)")
        .await
        .expect("prepare insert");
    c.exec_drop(&insert, (10, "ten")).await.expect("insert");
    let again = c.prep("SELECT v FROM p WHERE id = ?").await.expect("again");
    let v: Option<String> = c.exec_first(&again, (10,)).await.expect("reads its write");
    assert_eq!(v.as_deref(), Some("ten"));
    // A statement whose table went away fails at its execute, as directly.
    let (c2, _, own2) = &mut sessions[1];
    setup
        .query_drop("RENAME TABLE p TO p_old")
        .await
        .expect("rename");
    let e = c2.exec_first::<String, _, _>(&*own2, (1,)).await;
    assert!(e.is_err(), "the table is gone: {e:?}");
    setup
        .query_drop("RENAME TABLE p_old TO p")
        .await
        .expect("rename back");
    for (c, _, _) in sessions {
        c.disconnect().await.ok();
    }
    blocker.disconnect().await.ok();
    setup.disconnect().await.ok();
    drop(proxy);
    db.drop_now().await;
}

/// An execute that binds no types (`new_params_bound_flag` 0, as libmysqlclient sends after
/// the first) on a statement two sessions share on one connection: each session's values are
/// read with the types it bound itself, not with the other session's, and a statement
/// prepared again on another connection gets them too.
#[tokio::test]
async fn executes_without_types_use_their_own_sessions_types() {
    use common::raw;
    let db = TestDb::create("mux_types").await;
    let account = BackendAccount::create("mux_types", &db.name).await;
    let proxy = proxy(&account, 1).await;
    let login = || {
        raw::login(
            proxy.addr,
            common::APP_USER,
            common::APP_PASSWORD,
            Some(&db.name),
        )
    };
    let (mut a, _) = login().await;
    let (mut b, _) = login().await;
    let sql = b"SELECT CAST(? AS CHAR)";
    let prepare = async |c: &mut myveil::wire::PacketConn| -> u32 {
        let mut p = vec![0x16];
        p.extend_from_slice(sql);
        raw::send(c, &p).await;
        let ok = raw::read(c).await;
        assert_eq!(ok[0], 0, "prepare: {:?}", String::from_utf8_lossy(&ok));
        let columns = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        for n in [params, columns] {
            for _ in 0..n + u16::from(n > 0) {
                raw::read(c).await;
            }
        }
        u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]])
    };
    // One parameter: the packet, with the types (type, flags) when given.
    let execute = async |c: &mut myveil::wire::PacketConn,
                         id: u32,
                         types: Option<[u8; 2]>,
                         value: &[u8]|
           -> String {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0); // null bitmap
        match types {
            Some(t) => {
                p.push(1);
                p.extend_from_slice(&t);
            }
            None => p.push(0),
        }
        p.extend_from_slice(value);
        raw::send(c, &p).await;
        let first = raw::read(c).await;
        assert_eq!(
            first,
            [1],
            "one column: {:?}",
            String::from_utf8_lossy(&first)
        );
        raw::read(c).await; // the column
        raw::read(c).await; // EOF
        let row = raw::read(c).await;
        assert_eq!(raw::read(c).await[0], 0xfe, "one row, then EOF");
        // A binary row: header, null bitmap, then the string (length < 251).
        String::from_utf8_lossy(&row[3..3 + usize::from(row[2])]).into_owned()
    };
    let longlong = |v: i64| v.to_le_bytes().to_vec();
    let text = |s: &str| {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let ia = prepare(&mut a).await;
    let ib = prepare(&mut b).await;
    const LONGLONG: [u8; 2] = [0x08, 0];
    const VAR_STRING: [u8; 2] = [0xfd, 0];
    assert_eq!(execute(&mut a, ia, Some(LONGLONG), &longlong(7)).await, "7");
    assert_eq!(
        execute(&mut b, ib, Some(VAR_STRING), &text("abc")).await,
        "abc"
    );
    // Without types: the shared statement was bound last as a string by b.
    assert_eq!(execute(&mut a, ia, None, &longlong(8)).await, "8");
    assert_eq!(execute(&mut b, ib, None, &text("xyz")).await, "xyz");
    assert_eq!(execute(&mut a, ia, None, &longlong(-9)).await, "-9");
    // The backend connection is killed: the statement is prepared again on a new one, which
    // has never seen a's types.
    let mut root = common::direct(None).await;
    let ids: Vec<u64> = root
        .exec(
            "SELECT id FROM information_schema.PROCESSLIST WHERE user = ?",
            (account.name.as_str(),),
        )
        .await
        .expect("process list");
    for id in ids {
        let _ = root.query_drop(format!("KILL {id}")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(execute(&mut a, ia, None, &longlong(10)).await, "10");
    assert_eq!(execute(&mut b, ib, None, &text("again")).await, "again");
    drop(root);
    db.drop_now().await;
}
