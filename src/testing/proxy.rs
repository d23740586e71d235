//! A fault-injecting TCP proxy between a client and PostgreSQL, for the failure that matters most
//! to money: **the server committed, the client never heard**.
//!
//! [`FaultProxy`] forwards bytes both ways unchanged. Told to [`drop_next_commit`](FaultProxy::drop_next_commit), it watches the
//! server → client stream for the `CommandComplete` message whose tag is `COMMIT`, swallows it and
//! closes both sockets. The transaction is committed on the server; the client sees a lost
//! connection (an I/O error, which [`Error::is_retryable`](crate::Error::is_retryable) treats as
//! retryable). A caller that retries must then not apply the operation twice.
//!
//! ```no_run
//! # async fn example() -> shared_db::Result<()> {
//! use shared_db::testing::{TestDatabase, proxy::FaultProxy};
//!
//! let test_db = TestDatabase::new().await?;
//! let proxy = FaultProxy::in_front_of(test_db.connect_options()).await?;
//! let pool = sqlx::PgPool::connect_with(proxy.connect_options(test_db.connect_options())).await?;
//! proxy.drop_next_commit();
//! // ... the next COMMIT through `pool` succeeds on the server and fails on the client.
//! # let _ = pool; Ok(()) }
//! ```
//!
//! The proxy understands just enough of the protocol to find message boundaries: the one-byte
//! answer to an `SSLRequest` (`N`; TLS through the proxy is not supported, so connect with
//! `sslmode=disable` or `prefer`), then `type | length | body` frames. Message bodies other than
//! `CommandComplete` stream through without being buffered, so a 40 MB row costs no extra memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::{Error, Result};

#[derive(Debug, Default)]
struct Faults {
    drop_next_commit: AtomicBool,
    commits_dropped: AtomicU64,
    connections: AtomicU64,
    bytes_from_clients: AtomicU64,
}

/// A TCP proxy in front of a PostgreSQL server that can cut a connection right after the server
/// committed. Stops (and closes every proxied connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on `127.0.0.1:<free port>` forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        let faults = Arc::new(Faults::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&faults)));
        Ok(FaultProxy {
            addr,
            faults,
            accept,
        })
    }

    /// A proxy forwarding to the server `options` point at (host and port).
    pub async fn in_front_of(options: &PgConnectOptions) -> Result<Self> {
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?
            .next()
            .ok_or_else(|| Error::invalid_input("the server's host name does not resolve"))?;
        Self::start(upstream).await
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `options` (user, password, database, ...) pointed at the proxy instead of the server, with
    /// TLS off (the proxy reads the plaintext protocol).
    pub fn connect_options(&self, options: &PgConnectOptions) -> PgConnectOptions {
        options
            .clone()
            .host(&self.addr.ip().to_string())
            .port(self.addr.port())
            .ssl_mode(PgSslMode::Disable)
    }

    /// Arms the fault: the next `COMMIT` the server acknowledges (on any proxied connection) is
    /// swallowed and that connection is closed on both sides. Fires once.
    pub fn drop_next_commit(&self) {
        self.faults.drop_next_commit.store(true, Ordering::SeqCst);
    }

    /// How many acknowledged `COMMIT`s the proxy has swallowed so far.
    pub fn commits_dropped(&self) -> u64 {
        self.faults.commits_dropped.load(Ordering::SeqCst)
    }

    /// How many bytes the clients have sent through the proxy so far (every message a client
    /// sends to the server, a ping's `Sync` included).
    pub fn bytes_from_clients(&self) -> u64 {
        self.faults.bytes_from_clients.load(Ordering::SeqCst)
    }

    /// How many client connections the proxy has accepted so far.
    pub fn connections(&self) -> u64 {
        self.faults.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, faults: Arc<Faults>) {
    // The set owns every connection's task, so aborting this loop closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                faults.connections.fetch_add(1, Ordering::SeqCst);
                let faults = Arc::clone(&faults);
                connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        proxy_connection(client, server, faults).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn proxy_connection(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            faults
                .bytes_from_clients
                .fetch_add(n as u64, Ordering::SeqCst);
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = server_to_client(&mut server_read, &mut client_write, &faults);
    // Whichever direction ends first ends the connection: dropping the halves closes both sockets.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// Forwards server messages to the client frame by frame; returns when either side closes or the
/// armed fault fires.
async fn server_to_client(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    faults: &Faults,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // Bytes of the current message still to pass through unexamined.
    let mut passthrough: usize = 0;
    let mut first = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        if first {
            first = false;
            // The answer to an SSLRequest is a single unframed byte; `N` = no TLS, go on.
            if pending[0] == b'N' {
                if to.write_all(&pending[..1]).await.is_err() {
                    return;
                }
                pending.drain(..1);
            }
        }
        loop {
            if passthrough > 0 {
                let take = passthrough.min(pending.len());
                if take == 0 {
                    break;
                }
                if to.write_all(&pending[..take]).await.is_err() {
                    return;
                }
                pending.drain(..take);
                passthrough -= take;
                continue;
            }
            if pending.len() < 5 {
                break;
            }
            let kind = pending[0];
            let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
            if kind != b'C' {
                passthrough = 1 + len;
                continue;
            }
            if pending.len() < 1 + len {
                break;
            }
            let tag = &pending[5..1 + len];
            let is_commit = tag.strip_suffix(&[0]).unwrap_or(tag) == b"COMMIT";
            if is_commit && faults.drop_next_commit.swap(false, Ordering::SeqCst) {
                faults.commits_dropped.fetch_add(1, Ordering::SeqCst);
                let _ = to.shutdown().await;
                return;
            }
            if to.write_all(&pending[..1 + len]).await.is_err() {
                return;
            }
            pending.drain(..1 + len);
        }
    }
}
