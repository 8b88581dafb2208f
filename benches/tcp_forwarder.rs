//! The floor for the relay benchmark: a plain TCP byte forwarder (no protocol awareness).
//! Usage: tcp_forwarder LISTEN_ADDR UPSTREAM_ADDR

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .context("usage: tcp_forwarder LISTEN_ADDR UPSTREAM_ADDR")?;
    let upstream = args
        .next()
        .context("usage: tcp_forwarder LISTEN_ADDR UPSTREAM_ADDR")?;
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut server = match TcpStream::connect(&upstream).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("connect {upstream}: {e}");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                eprintln!("forward: {e}");
            }
        });
    }
}
