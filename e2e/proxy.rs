//! [`TcpProxy`]: a TCP proxy on 127.0.0.1 between the binary and a server (the API server or a
//! Vault), controlled by the test: it forwards, delays every chunk, cuts every open connection
//! (as a restarting server or a dropped route does) or closes new ones at once (a load balancer
//! with no healthy backend), and counts the connections it accepted. TLS passes through it
//! untouched, so the binary still verifies the API server's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a [`TcpProxy`] does with the bytes of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Forward,
    /// Every chunk waits this long before it is passed on, in each direction.
    Delay(Duration),
    /// New connections are accepted and closed at once, as a load balancer with no healthy
    /// backend does; open ones are left alone (see [`TcpProxy::cut`]).
    Refuse,
}

/// A TCP proxy on 127.0.0.1 between the binary and a server, controlled by the test.
pub struct TcpProxy {
    address: SocketAddr,
    /// The link, and a generation that [`TcpProxy::cut`] bumps to end every open connection.
    control: watch::Sender<(Link, u64)>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr, link: Link) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let control = watch::Sender::new((link, 0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let control = control.subscribe();
            let accepted = accepted.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if control.borrow().0 != Link::Refuse {
                        tokio::spawn(pipe(client, upstream, control.clone()));
                    }
                }
            }
        });
        TcpProxy {
            address,
            control,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The proxy's address for a TLS server behind it (the API server).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.address)
    }

    pub fn set(&self, link: Link) {
        self.control.send_modify(|(current, _)| *current = link);
    }

    /// Closes every open connection, as a restarting server or a dropped route does.
    pub fn cut(&self) {
        self.control.send_modify(|(_, generation)| *generation += 1);
    }

    /// Connections accepted so far (each a connection attempt of the binary).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The open connections end with the control channel's sender.
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, mut control: watch::Receiver<(Link, u64)>) {
    let generation = control.borrow().1;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let relays = futures::future::join(
        relay(client_read, server_write, control.clone()),
        relay(server_read, client_write, control.clone()),
    );
    tokio::select! {
        _ = relays => {}
        _ = control.wait_for(|(_, current)| *current != generation) => {}
    }
}

async fn relay(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: watch::Receiver<(Link, u64)>,
) {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let link = control.borrow().0;
        if let Link::Delay(delay) = link {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
