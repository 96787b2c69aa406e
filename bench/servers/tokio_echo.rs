//! The minimal idiomatic tokio echo server, as most Rust code looks (the
//! tokio README's example): one task per connection, a 4 KiB buffer each,
//! `read` then `write_all`. A reference for `bench/run.sh`, not part of
//! switchboard.
//!
//!     cargo run --release --example tokio-echo -- [PORT]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
