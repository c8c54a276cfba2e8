//! A TCP proxy that fails on command, to put between a binary and a service (the AWS emulator,
//! a fake provider): it passes connections through, or refuses them, black-holes them (accepts,
//! never answers), delays them, and cuts the ones open. The fault suite (issue 12) drives AWS
//! outages with it.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Accepted and closed at once (a service that is down behind a load balancer).
    Refuse,
    /// Accepted and never answered (a network partition): the client's timeout fires.
    BlackHole,
    /// Passed through after this long (a slow network).
    Delay(Duration),
}

pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    /// Bumped by [`FaultProxy::cut`]: every connection open then is dropped.
    cuts: watch::Sender<u64>,
    refused: Arc<AtomicU64>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let (cuts, _) = watch::channel(0u64);
        let refused = Arc::new(AtomicU64::new(0));
        let (accept_mode, accept_cuts, accept_refused) = (mode.clone(), cuts.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = accept_mode.lock().map(|m| *m).unwrap_or(Mode::Pass);
                if mode == Mode::Refuse {
                    accept_refused.fetch_add(1, Ordering::SeqCst);
                }
                tokio::spawn(serve(client, upstream, mode, accept_cuts.subscribe()));
            }
        });
        Ok(FaultProxy { url, mode, cuts, refused })
    }

    /// Connections refused so far: how many attempts an outage has seen.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// What new connections get from now on.
    pub fn set(&self, mode: Mode) {
        if let Ok(mut current) = self.mode.lock() {
            *current = mode;
        }
    }

    /// Drops every connection open now (new ones follow the mode).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mode: Mode, mut cuts: watch::Receiver<u64>) {
    cuts.mark_unchanged();
    let work = async {
        match mode {
            Mode::Refuse => {
                let _ = client.shutdown().await;
                return;
            }
            // Held open, never read from or answered, until cut.
            Mode::BlackHole => std::future::pending::<()>().await,
            Mode::Delay(delay) => tokio::time::sleep(delay).await,
            Mode::Pass => {}
        }
        if let Ok(mut server) = TcpStream::connect(upstream).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = cuts.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An upstream that echoes what it reads.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn connect(proxy: &FaultProxy) -> TcpStream {
        TcpStream::connect(proxy.url.trim_start_matches("http://")).await.expect("connect")
    }

    /// Sends `ping` and waits up to `within` for the echo: `None` when nothing (or EOF) came.
    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut answer = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut answer)).await {
            Ok(Ok(_)) => Some(answer.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_refuses_black_holes_delays_and_cuts_on_command() {
        let proxy = FaultProxy::start(echo().await).await.expect("proxy");
        let mut open = connect(&proxy).await;
        assert_eq!(round_trip(&mut open, Duration::from_secs(2)).await.as_deref(), Some(&b"ping"[..]));

        proxy.set(Mode::Refuse);
        assert_eq!(round_trip(&mut connect(&proxy).await, Duration::from_secs(2)).await, None, "refused");
        proxy.set(Mode::BlackHole);
        assert_eq!(round_trip(&mut connect(&proxy).await, Duration::from_millis(300)).await, None, "no answer");
        proxy.set(Mode::Delay(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert!(round_trip(&mut connect(&proxy).await, Duration::from_secs(2)).await.is_some(), "delayed, answered");
        assert!(started.elapsed() >= Duration::from_millis(200), "not before the delay");

        // The connection opened in Pass mode still works, until it is cut.
        assert!(round_trip(&mut open, Duration::from_secs(2)).await.is_some());
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(round_trip(&mut open, Duration::from_secs(1)).await, None, "cut");
        proxy.set(Mode::Pass);
        assert!(round_trip(&mut connect(&proxy).await, Duration::from_secs(2)).await.is_some(), "back");
    }
}
