//! Commands drivers rarely send, checked byte for byte against MariaDB itself with a
//! hand-driven client: cursors (COM_STMT_FETCH), COM_FIELD_LIST, COM_STATISTICS,
//! COM_SET_OPTION, COM_RESET_CONNECTION, COM_PROCESS_KILL, pipelining; and hostile input.

mod common;

use std::time::Duration;

use common::raw::{login, read, send};
use common::{Proxy, Setup, TestDb};
use mysql_async::prelude::Queryable;
use myveil::wire::PacketConn;

const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_PROCESS_KILL: u8 = 0x0C;
const COM_PING: u8 = 0x0E;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1A;
const COM_SET_OPTION: u8 = 0x1B;
const COM_STMT_FETCH: u8 = 0x1C;
const COM_RESET_CONNECTION: u8 = 0x1F;

fn cmd(code: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![code];
    p.extend_from_slice(body);
    p
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 9
}

/// Reads packets up to and including the next EOF or ERR.
async fn until_eof(c: &mut PacketConn) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let p = read(c).await;
        let end = is_eof(&p) || p.first() == Some(&0xFF);
        out.push(p);
        if end {
            return out;
        }
    }
}

/// Runs the cursor scenario and returns every packet received, for comparison.
async fn cursor_session(c: &mut PacketConn, db: &str) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    send(c, &cmd(COM_INIT_DB, db.as_bytes())).await;
    seen.push(read(c).await);
    send(
        c,
        &cmd(
            COM_QUERY,
            b"CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARCHAR(20))",
        ),
    )
    .await;
    seen.push(read(c).await);
    send(
        c,
        &cmd(
            COM_QUERY,
            b"INSERT IGNORE INTO t SELECT seq, CONCAT('row ', seq) FROM seq_1_to_10",
        ),
    )
    .await;
    seen.push(read(c).await);

    send(
        c,
        &cmd(
            COM_STMT_PREPARE,
            b"SELECT id, v FROM t WHERE id > ? ORDER BY id",
        ),
    )
    .await;
    let ok = read(c).await;
    assert_eq!(ok[0], 0x00, "prepare: {:?}", String::from_utf8_lossy(&ok));
    let stmt_id = [ok[1], ok[2], ok[3], ok[4]];
    seen.push(ok[5..].to_vec());
    seen.extend(until_eof(c).await); // 1 parameter definition
    seen.extend(until_eof(c).await); // 2 column definitions

    // Execute with a read-only cursor: metadata only, rows come with COM_STMT_FETCH.
    let mut exec = cmd(COM_STMT_EXECUTE, &stmt_id);
    exec.push(0x01); // CURSOR_TYPE_READ_ONLY
    exec.extend_from_slice(&1u32.to_le_bytes());
    exec.push(0); // null bitmap for one parameter
    exec.push(1); // new params bound
    exec.extend_from_slice(&[0x03, 0x00]); // MYSQL_TYPE_LONG
    exec.extend_from_slice(&3i32.to_le_bytes());
    send(c, &exec).await;
    let header = read(c).await;
    assert_eq!(header, vec![2], "two columns");
    seen.push(header);
    let meta = until_eof(c).await;
    let eof = meta.last().expect("eof");
    assert_ne!(
        u16::from_le_bytes([eof[3], eof[4]]) & 0x0040,
        0,
        "SERVER_STATUS_CURSOR_EXISTS"
    );
    seen.extend(meta);

    let mut fetch = cmd(COM_STMT_FETCH, &stmt_id);
    fetch.extend_from_slice(&4u32.to_le_bytes());
    send(c, &fetch).await;
    let batch = until_eof(c).await;
    assert_eq!(batch.len(), 5, "4 rows and EOF");
    seen.extend(batch);
    send(c, &fetch).await;
    let rest = until_eof(c).await;
    assert_eq!(rest.len(), 4, "3 rows and EOF");
    seen.extend(rest);
    send(c, &fetch).await;
    let last = until_eof(c).await;
    seen.extend(last);

    send(c, &cmd(COM_STMT_RESET, &stmt_id)).await;
    seen.push(read(c).await);
    send(c, &cmd(COM_STMT_CLOSE, &stmt_id)).await; // no response
    send(c, &cmd(COM_FIELD_LIST, b"t\0")).await;
    seen.extend(until_eof(c).await);
    send(c, &cmd(COM_SET_OPTION, &1u16.to_le_bytes())).await; // multi statements off
    seen.push(read(c).await);
    send(c, &cmd(COM_QUERY, b"SELECT 1; SELECT 2")).await;
    let refused = read(c).await;
    assert_eq!(refused[0], 0xFF, "multi statements are off");
    seen.push(refused);
    send(c, &cmd(COM_SET_OPTION, &0u16.to_le_bytes())).await;
    seen.push(read(c).await);
    send(c, &cmd(COM_QUERY, b"SET @v = 5")).await;
    seen.push(read(c).await);
    send(c, &cmd(COM_RESET_CONNECTION, b"")).await;
    seen.push(read(c).await);
    send(c, &cmd(COM_QUERY, b"SELECT @v IS NULL")).await;
    let mut after_reset = vec![read(c).await];
    after_reset.extend(until_eof(c).await);
    after_reset.extend(until_eof(c).await);
    assert_eq!(
        after_reset[after_reset.len() - 2],
        b"\x011",
        "reset cleared @v"
    );
    seen.extend(after_reset);
    send(c, &cmd(COM_PING, b"")).await;
    seen.push(read(c).await);
    send(c, &cmd(COM_STATISTICS, b"")).await;
    let stats = read(c).await;
    assert!(
        stats.starts_with(b"Uptime: "),
        "{:?}",
        String::from_utf8_lossy(&stats)
    );
    seen
}

#[tokio::test]
async fn cursors_field_list_and_session_commands_match_mariadb_byte_for_byte() {
    let proxy = Proxy::start().await;
    let db_direct = TestDb::create("rawd").await;
    let db_proxy = TestDb::create("rawp").await;
    let backend = "127.0.0.1:3306".parse().expect("addr");
    let (mut direct, _) = login(backend, "root", "", None).await;
    let (mut via, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    let a = cursor_session(&mut direct, &db_direct.name).await;
    let b = cursor_session(&mut via, &db_proxy.name).await;
    // Column definitions carry the schema name (same length on both sides) and an error
    // names the statement id, which is per connection; everything else must be identical.
    let normalize = |packets: Vec<Vec<u8>>, db: &str, stmt: &str| -> Vec<String> {
        packets
            .into_iter()
            .map(|p| {
                String::from_utf8_lossy(&p)
                    .replace(db, "DB")
                    .replace(stmt, "statement (N)")
            })
            .collect()
    };
    let stmt_of = |packets: &[Vec<u8>]| -> String {
        packets
            .iter()
            .find_map(|p| {
                let s = String::from_utf8_lossy(p);
                let at = s.find("statement (")?;
                let end = s[at..].find(')')?;
                Some(s[at..at + end + 1].to_owned())
            })
            .expect("the fetch after the last row names the statement")
    };
    let (stmt_a, stmt_b) = (stmt_of(&a), stmt_of(&b));
    assert_eq!(
        normalize(b, &db_proxy.name, &stmt_b),
        normalize(a, &db_direct.name, &stmt_a)
    );
    db_direct.drop_now().await;
    db_proxy.drop_now().await;
}

#[tokio::test]
async fn pipelined_commands_and_process_kill() {
    let proxy = Proxy::start().await;
    let (mut a, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    let (mut b, b_id) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    // Two pings in one write: both answered, in order.
    let mut two = Vec::new();
    for _ in 0..2 {
        two.extend_from_slice(&[1, 0, 0, 0, COM_PING]);
    }
    a.write_raw(&two).await.expect("write");
    a.flush().await.expect("flush");
    assert_eq!(read(&mut a).await[0], 0x00);
    assert_eq!(read(&mut a).await[0], 0x00);
    send(&mut a, &cmd(COM_PROCESS_KILL, &b_id.to_le_bytes())).await;
    assert_eq!(read(&mut a).await[0], 0x00, "kill accepted");
    // As with the server, the victim's connection is already closed when the KILL is
    // answered (clients' pools check exactly that).
    assert!(
        b.stream().is_stale(),
        "the killed session closed before the OK"
    );
    // Again with fresh victims (without the wait, the close loses the race now and then).
    for _ in 0..20 {
        let (v, v_id) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
        send(&mut a, &cmd(COM_PROCESS_KILL, &v_id.to_le_bytes())).await;
        assert_eq!(read(&mut a).await[0], 0x00, "kill accepted");
        assert!(
            v.stream().is_stale(),
            "the killed session closed before the OK"
        );
    }
    send(&mut b, &cmd(COM_PING, b"")).await;
    // The killed session gets the backend's error or a closed connection, never a hang.
    let r = tokio::time::timeout(Duration::from_secs(5), b.read_packet(1 << 16))
        .await
        .expect("no hang");
    if let Ok(p) = r {
        assert_eq!(p.payload[0], 0xFF);
    }
}

#[tokio::test]
async fn hostile_input_gets_errors_not_panics() {
    let proxy = Proxy::start_with(Setup {
        listen: "handshake_timeout_secs = 1\nmax_packet_bytes = 1048576",
        ..Default::default()
    })
    .await;

    // Garbage instead of a handshake response: Bad handshake, then closed.
    let mut c = common::raw::connect_tcp(proxy.addr).await;
    read(&mut c).await;
    c.write_packet(1, &[0xFF; 40]).await.expect("write");
    let r = c.read_packet(1 << 16).await;
    assert!(r.is_err() || r.as_ref().is_ok_and(|p| p.payload[0] == 0xFF));

    // A header announcing a huge packet during the handshake: refused, not allocated.
    let mut c = common::raw::connect_tcp(proxy.addr).await;
    read(&mut c).await;
    c.write_raw(&[0xFF, 0xFF, 0xFF, 1, 0, 0])
        .await
        .expect("write");
    c.flush().await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_secs(3), c.read_packet(1 << 16))
            .await
            .expect("closed in time")
            .is_err()
    );

    // Silence after the greeting: closed by the handshake timeout.
    let mut c = common::raw::connect_tcp(proxy.addr).await;
    read(&mut c).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), c.read_packet(1 << 16))
            .await
            .expect("closed in time")
            .is_err()
    );

    // Truncated header then EOF.
    let mut c = common::raw::connect_tcp(proxy.addr).await;
    read(&mut c).await;
    c.write_raw(&[5, 0]).await.expect("write");
    c.shutdown().await;

    // After login: empty and unknown commands get 1047 and the session goes on.
    let (mut s, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    send(&mut s, &[]).await;
    let e = read(&mut s).await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1047));
    send(&mut s, &[0x1D]).await; // COM_DAEMON
    let e = read(&mut s).await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1047));
    send(&mut s, &cmd(COM_PING, b"")).await;
    assert_eq!(read(&mut s).await[0], 0x00);
    // A command over max_packet_bytes: 1153, then the session ends.
    let big = vec![b'x'; 2 << 20];
    send(&mut s, &cmd(COM_QUERY, &big)).await;
    let e = read(&mut s).await;
    assert_eq!((e[0], u16::from_le_bytes([e[1], e[2]])), (0xFF, 1153));

    // The proxy still serves.
    let (mut ok, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    send(&mut ok, &cmd(COM_PING, b"")).await;
    assert_eq!(read(&mut ok).await[0], 0x00);
}

#[tokio::test]
async fn compression_that_was_not_offered_is_refused_not_hung() {
    let proxy = Proxy::start_with(common::Setup {
        listen: "compression = false",
        ..Default::default()
    })
    .await;
    // CLIENT_COMPRESS (zlib), then CLIENT_ZSTD_COMPRESSION_ALGORITHM.
    for caps in [0x0000_0020u32, 0x0400_0000] {
        let (mut c, _, reply) = tokio::time::timeout(
            Duration::from_secs(10),
            common::raw::hello(
                proxy.addr,
                common::APP_USER,
                common::APP_PASSWORD,
                None,
                caps,
            ),
        )
        .await
        .expect("an answer, not a hang");
        assert_eq!(
            (reply[0], u16::from_le_bytes([reply[1], reply[2]])),
            (0xFF, 1043),
            "caps {caps:#x}: {:?}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            String::from_utf8_lossy(&reply).contains("compression"),
            "the error says why"
        );
        // Then the connection is closed.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), c.read_packet(1 << 16))
                .await
                .expect("closed in time")
                .is_err()
        );
    }
    // Everyone else still logs in.
    let (mut ok, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    send(&mut ok, &cmd(COM_PING, b"")).await;
    assert_eq!(read(&mut ok).await[0], 0x00);
}

/// One compressed frame: zlib or zstd when `packed`, stored otherwise.
fn frame(seq: u8, plain: &[u8], zstd: bool, packed: bool) -> Vec<u8> {
    use std::io::Write;
    let body = match (packed, zstd) {
        (false, _) => plain.to_vec(),
        (true, true) => zstd::bulk::compress(plain, 3).expect("test step"),
        (true, false) => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).expect("test step");
            e.finish().expect("test step")
        }
    };
    let mut f = (body.len() as u32).to_le_bytes()[..3].to_vec();
    f.push(seq);
    let plain_len = if packed { plain.len() as u32 } else { 0 };
    f.extend_from_slice(&plain_len.to_le_bytes()[..3]);
    f.extend_from_slice(&body);
    f
}

/// Reads compressed frames until their plain bytes hold whole packets ending in OK, EOF or
/// ERR; returns the frames' sequence ids and the packets.
/// `SHOW STATUS` reports the compression of the asking client's own leg, plain or
/// compressed, as a direct connection with the same setting sees it; an aborted client's
/// backend connection is closed, so the server counts it in `Aborted_clients`.
#[tokio::test]
async fn status_reports_the_clients_own_leg() {
    let proxy = Proxy::start().await;
    let queries = [
        "SHOW STATUS LIKE 'Compression'",
        "show session status like 'compr%'",
        "SHOW GLOBAL STATUS WHERE Variable_name = 'Compression'",
        "/* x */ SHOW LOCAL STATUS LIKE 'Compression'",
    ];
    for compressed in [false, true] {
        let z = compressed.then(mysql_async::Compression::default);
        let mut direct = mysql_async::Conn::new(common::direct_opts().compression(z))
            .await
            .expect("direct");
        let mut through = mysql_async::Conn::new(
            proxy
                .opts(common::APP_USER, common::APP_PASSWORD)
                .compression(z),
        )
        .await
        .expect("through myveil");
        for q in queries {
            let want: Vec<(String, String)> = direct.query(q).await.expect("direct status");
            let got: Vec<(String, String)> = through.query(q).await.expect("status");
            assert_eq!(got, want, "{q} (compressed: {compressed})");
            let on = if compressed { "ON" } else { "OFF" };
            assert_eq!(want, [("Compression".to_owned(), on.to_owned())], "{q}");
        }
        // Other rows pass as they are.
        let got: Vec<(String, String)> = through
            .query("SHOW SESSION STATUS LIKE 'Com_select'")
            .await
            .expect("status");
        assert_eq!(got.len(), 1);
        assert_ne!(got[0].1, "ON");
        direct.disconnect().await.expect("disconnect");
        through.disconnect().await.expect("disconnect");
    }

    // A client that drops its socket without COM_QUIT. (Multiplexed: between statements its
    // connection is the pool's, not the client's, and the server sees no abort; ADR 0009.)
    if common::backend_mode() == "multiplexed" {
        return;
    }
    let mut root = common::direct(None).await;
    let aborted = |r: Option<(String, u64)>| r.expect("Aborted_clients").1;
    let before = aborted(
        root.query_first("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
            .await
            .expect("status"),
    );
    let (mut c, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    send(&mut c, &cmd(COM_QUERY, b"SELECT @@pseudo_thread_id")).await;
    let rows = until_eof(&mut c).await;
    let row = until_eof(&mut c).await;
    assert!(rows.len() > 1 && row.len() == 2, "{rows:?} {row:?}");
    let thread: u64 = std::str::from_utf8(&row[0][1..])
        .expect("digits")
        .parse()
        .expect("thread id");
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Option<u64> = root
            .query_first(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = {thread}"
            ))
            .await
            .expect("processlist");
        let now = aborted(
            root.query_first("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
                .await
                .expect("status"),
        );
        if alive.is_none() && now > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend thread alive: {}, Aborted_clients {before} -> {now}",
            alive.is_some()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_frames(tcp: &mut tokio::net::TcpStream, zstd: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    use tokio::io::AsyncReadExt;
    let mut seqs = Vec::new();
    let mut plain = Vec::new();
    loop {
        let mut h = [0u8; 7];
        tcp.read_exact(&mut h).await.expect("frame header");
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        let plain_len = u32::from_le_bytes([h[4], h[5], h[6], 0]) as usize;
        seqs.push(h[3]);
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).await.expect("frame body");
        if plain_len == 0 {
            plain.extend_from_slice(&body);
        } else if zstd {
            plain.extend(zstd::bulk::decompress(&body, plain_len).expect("test step"));
        } else {
            let mut out = Vec::new();
            let mut d = flate2::read::ZlibDecoder::new(&body[..]);
            std::io::Read::read_to_end(&mut d, &mut out).expect("test step");
            assert_eq!(out.len(), plain_len);
            plain.extend(out);
        }
        // Whole packets so far; the response is over at an OK/ERR, or at the second EOF.
        let mut packets = Vec::new();
        let mut at = 0;
        while plain.len() >= at + 4 {
            let n = u32::from_le_bytes([plain[at], plain[at + 1], plain[at + 2], 0]) as usize;
            if plain.len() < at + 4 + n {
                break;
            }
            packets.push(plain[at + 4..at + 4 + n].to_vec());
            at += 4 + n;
        }
        let eofs = packets.iter().filter(|p| is_eof(p)).count();
        let done = match packets.first().map(|p| p[0]) {
            Some(0x00) | Some(0xFF) => true,
            Some(_) => eofs == 2 || packets.last().is_some_and(|p| p[0] == 0xFF),
            None => false,
        };
        if done && at == plain.len() {
            return (seqs, packets);
        }
    }
}

#[tokio::test]
async fn compressed_protocol_frames_and_sequence_ids_follow_the_server() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start().await;
    // CLIENT_COMPRESS (zlib), then CLIENT_ZSTD_COMPRESSION_ALGORITHM.
    for (caps, zstd) in [(0x0000_0020u32, false), (0x0400_0000, true)] {
        let (c, _, ok) = common::raw::hello(
            proxy.addr,
            common::APP_USER,
            common::APP_PASSWORD,
            None,
            caps,
        )
        .await;
        assert_eq!(ok[0], 0x00, "the login's OK comes plain");
        let (myveil::wire::Stream::Plain(mut tcp), rest) = c.into_parts() else {
            panic!("plain stream");
        };
        assert!(rest.is_empty());
        for round in 0..3 {
            // A stored command, then a compressed one whose result is larger than a frame.
            let ping = frame(0, &[1, 0, 0, 0, COM_PING], zstd, false);
            tcp.write_all(&ping).await.expect("test step");
            let (seqs, packets) = read_frames(&mut tcp, zstd).await;
            assert_eq!(
                seqs,
                [1],
                "round {round}: a reply goes on from the client's frame"
            );
            assert_eq!(packets[0][0], 0x00);
            let sql = b"SELECT REPEAT('abc', 200000) AS a, 'tail' AS b";
            let mut q = (sql.len() as u32 + 1).to_le_bytes()[..3].to_vec();
            q.push(0);
            q.push(COM_QUERY);
            q.extend_from_slice(sql);
            tcp.write_all(&frame(0, &q, zstd, true))
                .await
                .expect("test step");
            let (seqs, packets) = read_frames(&mut tcp, zstd).await;
            assert_eq!(seqs[0], 1, "round {round}");
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0].wrapping_add(1), "frames are numbered in turn");
            }
            let row = packets.iter().find(|p| p.len() > 600_000).expect("the row");
            assert!(row.windows(4).any(|w| w == b"tail"));
            assert!(row.windows(6).any(|w| w == b"abcabc"));
        }
    }
}

#[tokio::test]
async fn send_long_data_feeds_a_parameter_in_pieces() {
    let proxy = Proxy::start().await;
    let (mut c, _) = login(proxy.addr, common::APP_USER, common::APP_PASSWORD, None).await;
    send(
        &mut c,
        &cmd(COM_STMT_PREPARE, b"SELECT CONCAT(LENGTH(?), ':', MD5(?))"),
    )
    .await;
    let ok = read(&mut c).await;
    assert_eq!(ok[0], 0x00);
    let stmt_id = [ok[1], ok[2], ok[3], ok[4]];
    until_eof(&mut c).await; // parameters
    until_eof(&mut c).await; // columns
    let piece = vec![b'z'; 300_000];
    for param in 0u16..2 {
        for _ in 0..4 {
            // COM_STMT_SEND_LONG_DATA has no response.
            let mut p = vec![0x18];
            p.extend_from_slice(&stmt_id);
            p.extend_from_slice(&param.to_le_bytes());
            p.extend_from_slice(&piece);
            send(&mut c, &p).await;
        }
    }
    let mut exec = cmd(COM_STMT_EXECUTE, &stmt_id);
    exec.push(0);
    exec.extend_from_slice(&1u32.to_le_bytes());
    exec.push(0); // null bitmap
    exec.push(1); // types follow
    exec.extend_from_slice(&[0xFC, 0x00, 0xFC, 0x00]); // two BLOBs, values sent as long data
    send(&mut c, &exec).await;
    assert_eq!(read(&mut c).await, vec![1]);
    until_eof(&mut c).await;
    let row = read(&mut c).await;
    // Binary row: header, null bitmap, one length-prefixed string.
    let text = String::from_utf8_lossy(&row[3..]).into_owned();
    let expected: String = {
        use mysql_async::prelude::Queryable;
        let mut d = common::direct(None).await;
        d.query_first("SELECT CONCAT(LENGTH(REPEAT('z', 1200000)), ':', MD5(REPEAT('z', 1200000)))")
            .await
            .expect("q")
            .expect("row")
    };
    assert_eq!(text, expected);
    assert!(is_eof(&read(&mut c).await));
}

const CLIENT_MULTI_STATEMENTS: u32 = 0x0001_0000;
const CLIENT_SESSION_TRACK: u32 = 0x0080_0000;

/// Statements that change session state, and every response packet they get.
async fn state_changes(c: &mut PacketConn, db: &str) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let steps: Vec<Vec<u8>> = vec![
        cmd(COM_QUERY, b"SET sql_mode='ANSI_QUOTES'"),
        cmd(COM_QUERY, b"SET NAMES latin1"),
        cmd(COM_INIT_DB, db.as_bytes()),
        cmd(COM_QUERY, b"USE information_schema"),
        cmd(COM_QUERY, format!("USE `{db}`").as_bytes()),
        cmd(
            COM_QUERY,
            b"SET sql_mode=''; SELECT 1; SET time_zone='+01:00'",
        ),
        cmd(COM_QUERY, b"CREATE TABLE st (a INT PRIMARY KEY)"),
        cmd(COM_QUERY, b"INSERT INTO st VALUES (1), (2)"),
        cmd(COM_QUERY, b"UPDATE st SET a = a WHERE a < 3"),
        cmd(COM_QUERY, b"SET autocommit = 0"),
        cmd(
            COM_QUERY,
            b"SET autocommit = 1, character_set_results = NULL",
        ),
        cmd(COM_RESET_CONNECTION, b""),
        cmd(COM_QUERY, b"SET time_zone = '+02:00'"),
        cmd(
            COM_QUERY,
            b"SELECT @@time_zone, @@sql_mode = @@global.sql_mode",
        ),
    ];
    for step in steps {
        send(c, &step).await;
        loop {
            let p = read(c).await;
            let done = match p.first() {
                Some(0x00) | Some(0xFF) => {
                    // An OK ends the response unless more results follow.
                    p[0] == 0xFF || p.len() < 5 || !ok_has_more(&p)
                }
                Some(0xFE) if p.len() < 9 => p.get(3).is_some_and(|f| f & 0x08 == 0),
                _ => false,
            };
            seen.push(p);
            if done {
                break;
            }
        }
    }
    seen
}

/// An OK packet with its session-state records in sorted order (other packets as they are).
fn records_sorted(p: &[u8]) -> Vec<u8> {
    use myveil::wire::packets::{parse_tracked_ok, rebuild_ok, state_records};
    let Some(ok) = parse_tracked_ok(p) else {
        return p.to_vec();
    };
    let Some(mut records) = state_records(ok.state) else {
        return p.to_vec();
    };
    if records.is_empty() {
        return p.to_vec();
    }
    records.sort();
    let sorted = rebuild_ok(&ok, &records, true);
    assert_eq!(sorted.len(), p.len(), "rebuilt as it was sent");
    sorted
}

fn ok_has_more(p: &[u8]) -> bool {
    // affected rows and insert id are single bytes in these statements.
    p.get(3).is_some_and(|f| f & 0x08 != 0)
}

#[tokio::test]
async fn session_tracking_reaches_the_client_exactly_as_it_asked() {
    let proxy = Proxy::start().await;
    let db = TestDb::create("track").await;
    let direct_addr: std::net::SocketAddr = "127.0.0.1:3306".parse().expect("addr");
    for caps in [
        CLIENT_MULTI_STATEMENTS,
        CLIENT_MULTI_STATEMENTS | CLIENT_SESSION_TRACK,
    ] {
        // Twice through myveil: on a fresh and on a pooled backend connection.
        for round in 0..2 {
            let (mut d, _, d_ok) =
                common::raw::login_with(direct_addr, "root", "", Some(&db.name), caps).await;
            let (mut p, _, p_ok) = common::raw::login_with(
                proxy.addr,
                common::APP_USER,
                common::APP_PASSWORD,
                Some(&db.name),
                caps,
            )
            .await;
            assert_eq!(p_ok, d_ok, "login OK, caps {caps:#x}, round {round}");
            let want = state_changes(&mut d, &db.name).await;
            let mut direct = common::direct(Some(&db.name)).await;
            direct.query_drop("DROP TABLE st").await.expect("drop");
            let got = state_changes(&mut p, &db.name).await;
            assert_eq!(got.len(), want.len(), "caps {caps:#x}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // The server lists changed variables in its hash table's order, which
                // depends on the session's tracked set and on addresses that change at
                // each server start: the records are compared as a set.
                assert_eq!(
                    records_sorted(g),
                    records_sorted(w),
                    "packet {i}, caps {caps:#x}, round {round}: {:?} vs {:?}",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                );
            }
            direct.query_drop("DROP TABLE st").await.expect("drop");
            direct.disconnect().await.ok();
            send(&mut p, &[0x01]).await;
        }
    }
    db.drop_now().await;
}
