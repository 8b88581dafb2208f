//! Many clients through myveil (benches/many_clients.sh): opens CLIENTS connections, each
//! logs in and runs a query, and keeps them open until told to go on (a line on stdin), so
//! the caller can read the proxy's memory; then a connect storm of RATE logins per second
//! for SECONDS seconds, each a login, a query and a quit, and their p50 / p99 connect
//! times, with the latency of a live session's statements without the storm and during it.
//!
//!   many_clients ADDR USER PASSWORD CLIENTS RATE SECONDS

// A bench: its report on stdout is what it is for (benches/many_clients.sh reads it).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

fn opts(addr: &str, user: &str, password: &str) -> mysql_async::Opts {
    let (host, port) = addr.rsplit_once(':').expect("ADDR is host:port");
    OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().expect("port"))
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One session running `SELECT 1` back to back for `length`: each statement's time.
async fn live(opts: mysql_async::Opts, length: Duration) -> Vec<Duration> {
    let mut c = Conn::new(opts).await.expect("live session");
    let mut times = Vec::new();
    let end = Instant::now() + length;
    while Instant::now() < end {
        let t0 = Instant::now();
        c.query_drop("SELECT 1").await.expect("live statement");
        times.push(t0.elapsed());
    }
    let _ = c.disconnect().await;
    times
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, user, password, clients, rate, seconds] = &args[..] else {
        eprintln!("usage: many_clients ADDR USER PASSWORD CLIENTS RATE SECONDS");
        std::process::exit(2);
    };
    let opts = opts(addr, user, password);
    let clients: usize = clients.parse().expect("CLIENTS");
    let rate: u64 = rate.parse().expect("RATE");
    let seconds: u64 = seconds.parse().expect("SECONDS");

    // 1. CLIENTS connections at once (at most 256 logging in at a time), each running a query.
    let started = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let opts = opts.clone();
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let permit = limit.acquire_owned().await.expect("semaphore");
            let mut c = tokio::time::timeout(Duration::from_secs(60), Conn::new(opts))
                .await
                .map_err(|_| "login timed out".to_string())?
                .map_err(|e| e.to_string())?;
            drop(permit);
            let v: Option<u64> = c
                .query_first(format!("SELECT {i}"))
                .await
                .map_err(|e| e.to_string())?;
            if v != Some(i as u64) {
                return Err(format!("client {i} got {v:?}"));
            }
            Ok::<_, String>(c)
        }));
    }
    let mut open = Vec::with_capacity(clients);
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(c) => open.push(c),
            Err(e) => {
                if failed < 5 {
                    eprintln!("a client failed: {e}");
                }
                failed += 1;
            }
        }
    }
    println!(
        "clients: {} connected and queried, {failed} failed, in {:.1} s",
        open.len(),
        started.elapsed().as_secs_f64()
    );
    // Every open client runs one more query, all at once, then they stay idle.
    let mut again = Vec::with_capacity(open.len());
    for mut c in open {
        again.push(tokio::spawn(async move {
            let r: Result<Option<u8>, _> = c.query_first("SELECT 1").await;
            (c, r.is_ok())
        }));
    }
    let mut open = Vec::with_capacity(again.len());
    let mut second_failed = 0;
    for t in again {
        let (c, ok) = t.await.expect("join");
        second_failed += usize::from(!ok);
        open.push(c);
    }
    println!(
        "idle: {} clients open ({second_failed} failed a second query); press enter",
        open.len()
    );
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;

    // 2. The connect storm, beside the open clients, and a live session's latency without
    // it and during it (logins must not starve sessions that run statements).
    if rate > 0 && seconds > 0 {
        let quiet = live(opts.clone(), Duration::from_secs(seconds)).await;
        let busy = tokio::spawn(live(opts.clone(), Duration::from_secs(seconds)));
        let every = Duration::from_nanos(1_000_000_000 / rate);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::new();
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            tick.tick().await;
            let opts = opts.clone();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let mut c = Conn::new(opts).await.map_err(|e| e.to_string())?;
                let connected = t0.elapsed();
                c.query_drop("SELECT 1").await.map_err(|e| e.to_string())?;
                c.disconnect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(connected)
            }));
        }
        let mut times = Vec::with_capacity(tasks.len());
        let mut failed = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(d) => times.push(d),
                Err(e) => {
                    if failed < 5 {
                        eprintln!("a storm login failed: {e}");
                    }
                    failed += 1;
                }
            }
        }
        times.sort();
        let busy = busy.await.expect("join");
        for (when, mut t) in [("without the storm", quiet), ("during the storm", busy)] {
            t.sort();
            println!(
                "live session {when}: {} SELECT 1, p50 {:.2} ms, p99 {:.2} ms",
                t.len(),
                percentile(&t, 0.50).as_secs_f64() * 1e3,
                percentile(&t, 0.99).as_secs_f64() * 1e3,
            );
        }
        println!(
            "storm: {} logins at {rate}/s for {seconds} s, {failed} failed; connect p50 {:.2} ms, p99 {:.2} ms",
            times.len(),
            percentile(&times, 0.50).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
        );
    }
    for c in open {
        drop(c);
    }
}
