//! Differential test: the same statements run directly against MariaDB and through myveil,
//! in the text and the binary protocol, must give the same rows, column metadata, OK fields
//! (affected rows, last insert id, warnings, info, status) and errors.

mod common;

use common::{Proxy, TestDb};
use mysql_async::prelude::*;
use mysql_async::{Column, Conn, Row};

/// Everything a client can observe about one statement's outcome.
#[derive(Debug, PartialEq)]
enum Outcome {
    Sets(Vec<ResultSet>),
    Error {
        code: u16,
        state: String,
        message: String,
    },
}

#[derive(Debug, PartialEq)]
struct ResultSet {
    columns: Vec<ColumnMeta>,
    rows: Vec<Vec<mysql_async::Value>>,
    affected_rows: u64,
    last_insert_id: Option<u64>,
    warnings: u16,
    info: String,
}

#[derive(Debug, PartialEq)]
struct ColumnMeta {
    schema: String,
    table: String,
    org_table: String,
    name: String,
    org_name: String,
    column_type: String,
    flags: u16,
    charset: u16,
    length: u32,
    decimals: u8,
}

fn meta(c: &Column, db: &str) -> ColumnMeta {
    ColumnMeta {
        schema: c.schema_str().replace(db, "DB"),
        table: c.table_str().into_owned(),
        org_table: c.org_table_str().into_owned(),
        name: c.name_str().into_owned(),
        org_name: c.org_name_str().into_owned(),
        column_type: format!("{:?}", c.column_type()),
        flags: c.flags().bits(),
        charset: c.character_set(),
        length: c.column_length(),
        decimals: c.decimals(),
    }
}

async fn run(c: &mut Conn, sql: &str, binary: bool, db: &str) -> Outcome {
    let server_error = |e: mysql_async::ServerError| Outcome::Error {
        code: e.code,
        state: e.state,
        message: e.message,
    };
    if binary {
        match c.exec_iter(sql, ()).await {
            Ok(r) => collect(r, sql, db).await,
            Err(mysql_async::Error::Server(e)) => server_error(e),
            Err(e) => panic!("{sql}: {e}"),
        }
    } else {
        match c.query_iter(sql).await {
            Ok(r) => collect(r, sql, db).await,
            Err(mysql_async::Error::Server(e)) => server_error(e),
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

async fn collect<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, 'static, P>,
    sql: &str,
    db: &str,
) -> Outcome {
    let mut sets = Vec::new();
    loop {
        let columns: Vec<ColumnMeta> = result.columns_ref().iter().map(|c| meta(c, db)).collect();
        let rows: Vec<Row> = match result.collect().await {
            Ok(r) => r,
            Err(mysql_async::Error::Server(e)) => {
                sets.push(ResultSet {
                    columns,
                    rows: Vec::new(),
                    affected_rows: 0,
                    last_insert_id: None,
                    warnings: 0,
                    info: format!("error {} {} {}", e.code, e.state, e.message),
                });
                break;
            }
            Err(e) => panic!("{sql}: {e}"),
        };
        sets.push(ResultSet {
            columns,
            rows: rows.into_iter().map(Row::unwrap).collect(),
            affected_rows: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
            warnings: result.warnings(),
            info: result.info().into_owned(),
        });
        if result.is_empty() {
            break;
        }
    }
    Outcome::Sets(sets)
}

const SETUP: &[&str] = &[
    "CREATE TABLE people (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(120) NOT NULL UNIQUE,
        full_name VARCHAR(80), born DATE, balance DECIMAL(10,2) DEFAULT 0, photo MEDIUMBLOB,
        tags SET('a','b','c'), score FLOAT, created TIMESTAMP(3) NULL, flag BIT(3))",
    "CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, person_id INT, total DECIMAL(12,2),
        note TEXT CHARACTER SET latin1, INDEX (person_id))",
    "CREATE VIEW v_people AS SELECT id, email AS mail FROM people",
];

const STATEMENTS: &[&str] = &[
    "INSERT INTO people (email, full_name, born, balance, tags, score, created, flag) VALUES
        ('a@example.com', 'Ann', '1990-01-02', 10.50, 'a,c', 1.5, '2024-01-01 10:00:00.123', b'101'),
        ('b@example.com', NULL, NULL, -3, '', NULL, NULL, NULL)",
    "INSERT INTO people (email) VALUES ('a@example.com')",
    "INSERT IGNORE INTO people (email) VALUES ('a@example.com')",
    "INSERT INTO people (email, balance) VALUES ('c@example.com', 1) ON DUPLICATE KEY UPDATE balance = balance + 1",
    "INSERT INTO people (email, balance) VALUES ('c@example.com', 1) ON DUPLICATE KEY UPDATE balance = balance + 1",
    "REPLACE INTO people (id, email) VALUES (2, 'b2@example.com')",
    "INSERT INTO orders (person_id, total, note) VALUES (1, 99.99, 'café'), (1, 1, NULL), (3, 5, 'x')",
    "UPDATE people SET score = 2 WHERE id IN (1, 2, 999)",
    "UPDATE people SET score = score WHERE id = 1",
    "SELECT * FROM people ORDER BY id",
    "SELECT p.id, p.email AS e, o.total, o.note FROM people p LEFT JOIN orders o ON o.person_id = p.id ORDER BY p.id, o.id",
    "SELECT * FROM v_people ORDER BY id",
    "SELECT COUNT(*), SUM(total), AVG(total), GROUP_CONCAT(note ORDER BY id) FROM orders",
    "SELECT 1, 1.5, 'x', NULL, NOW() IS NOT NULL, CAST(1 AS UNSIGNED), -9223372036854775808, 18446744073709551615",
    "SELECT CAST('x' AS INT)",
    "SELECT 1/0",
    "SELECT * FROM people WHERE id = -1",
    "DELETE FROM orders WHERE total < 2",
    "SELECT LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS()",
    "SHOW COLUMNS FROM people",
    "SHOW INDEX FROM orders",
    "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1",
    "SELECT nope FROM people",
    "INSERT INTO people (email) VALUES (NULL)",
    "SELEC 1",
    "SET @a = 5",
    "SELECT @a, @@autocommit, @@sql_mode IS NOT NULL",
    "DO SLEEP(0)",
    "EXPLAIN SELECT * FROM orders WHERE person_id = 1",
];

#[tokio::test]
async fn direct_and_proxied_outcomes_are_identical() {
    let proxy = Proxy::start().await;
    let direct_db = TestDb::create("diffd").await;
    let proxy_db = TestDb::create("diffp").await;
    for binary in [false, true] {
        let mut direct = common::direct(Some(&direct_db.name)).await;
        let mut via = proxy.app(Some(&proxy_db.name)).await;
        for c in [&mut direct, &mut via] {
            for sql in [
                "DROP VIEW IF EXISTS v_people",
                "DROP TABLE IF EXISTS orders, people",
            ] {
                c.query_drop(sql).await.expect("reset");
            }
            for sql in SETUP {
                c.query_drop(*sql).await.expect("setup");
            }
        }
        for sql in STATEMENTS {
            // Statements the binary protocol cannot prepare (SET, DO, SHOW variants on some
            // versions) give the same error both ways, which is compared too.
            let a = run(&mut direct, sql, binary, &direct_db.name).await;
            let b = run(&mut via, sql, binary, &proxy_db.name).await;
            assert_eq!(b, a, "binary: {binary}, statement: {sql}");
        }
        direct.disconnect().await.ok();
        via.disconnect().await.ok();
    }
    direct_db.drop_now().await;
    proxy_db.drop_now().await;
}

#[tokio::test]
async fn found_rows_capability_is_honoured() {
    // CLIENT_FOUND_ROWS changes affected-row counts; pooled connections must not mix it up.
    let proxy = Proxy::start().await;
    let db = TestDb::create("found").await;
    let mut setup = proxy.app(Some(&db.name)).await;
    setup
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .expect("create");
    setup
        .query_drop("INSERT INTO t VALUES (1, 1)")
        .await
        .expect("insert");
    setup.disconnect().await.ok();
    for round in 0..2 {
        for found in [true, false] {
            let mut c = Conn::new(
                proxy
                    .app_opts()
                    .db_name(Some(&db.name))
                    .client_found_rows(found),
            )
            .await
            .expect("connect");
            c.query_drop("UPDATE t SET v = 1 WHERE id = 1")
                .await
                .expect("update");
            assert_eq!(
                c.affected_rows(),
                u64::from(found),
                "round {round}, found_rows {found}"
            );
            c.disconnect().await.ok();
        }
    }
    db.drop_now().await;
}
