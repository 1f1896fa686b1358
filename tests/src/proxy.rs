//! A fault-injecting TCP proxy between the binaries and Postgres.
//!
//! It forwards bytes both ways and understands just enough of the Postgres wire protocol
//! to inject the faults the suite needs:
//!
//! - [`PgProxy::cut`]: drop every open connection and hang up on new ones at once (what
//!   clients see when the database host goes away), until [`PgProxy::restore`];
//! - [`PgProxy::stall`]: keep connections open but forward nothing either way (a network
//!   partition, a frozen server), until [`PgProxy::restore`];
//! - [`PgProxy::swallow_next_commit`]: forward the next `COMMIT` a client sends, let the
//!   server process it, then drop the connection before any of the server's answer
//!   reaches the client — the commit happened, the client cannot know.
//!
//! The proxy answers a client's `SSLRequest` itself with `N` (no TLS), as a Postgres
//! without TLS does: clients on `sslmode=prefer` fall back to plaintext, so the stream can
//! be read. Everything else goes through unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy's mode: what happens to traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    /// Connections of an older cut generation are dropped; new ones are hung up on.
    Cut,
}

struct Shared {
    mode: watch::Sender<(Mode, u64)>,
    swallow_armed: AtomicBool,
    swallowed: AtomicUsize,
    connections: AtomicU64,
}

/// See the module docs. Dropping it stops the proxy and closes its connections.
pub struct PgProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

impl PgProxy {
    /// Starts a proxy on 127.0.0.1 (an ephemeral port) in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            mode: watch::Sender::new((Mode::Forward, 0)),
            swallow_armed: AtomicBool::new(false),
            swallowed: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (mode, _) = *s.mode.borrow();
                if mode == Mode::Cut {
                    drop(client);
                    continue;
                }
                s.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(client, upstream, s.clone()));
            }
        });
        PgProxy {
            addr,
            shared,
            accept,
        }
    }

    /// In front of the Postgres a database URL points at.
    pub async fn in_front_of(url: &str) -> PgProxy {
        let u = reqwest::Url::parse(url).expect("database URL");
        let host = u.host_str().unwrap_or("127.0.0.1");
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let port = u.port().unwrap_or(5432);
        let upstream: SocketAddr = format!("{host}:{port}").parse().expect("host:port");
        PgProxy::start(upstream).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut u = reqwest::Url::parse(url).expect("database URL");
        u.set_host(Some("127.0.0.1")).expect("set host");
        u.set_port(Some(self.addr.port())).expect("set port");
        u.to_string()
    }

    /// Drops every connection and hangs up on new ones until [`PgProxy::restore`].
    pub fn cut(&self) {
        self.shared.mode.send_modify(|(m, g)| {
            *m = Mode::Cut;
            *g += 1;
        });
    }

    /// Freezes every connection (no byte forwarded either way) until [`PgProxy::restore`].
    pub fn stall(&self) {
        self.shared.mode.send_modify(|(m, _)| *m = Mode::Stall);
    }

    /// Back to forwarding.
    pub fn restore(&self) {
        self.shared.mode.send_modify(|(m, _)| *m = Mode::Forward);
    }

    /// Arms the proxy: the next `COMMIT` is forwarded and its answer swallowed (the
    /// connection is dropped once the server had time to process it).
    pub fn swallow_next_commit(&self) {
        self.shared.swallow_armed.store(true, Ordering::SeqCst);
    }

    /// How many `COMMIT` answers were swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// Whether an armed swallow is still waiting for its `COMMIT`.
    pub fn swallow_pending(&self) -> bool {
        self.shared.swallow_armed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Waits while the proxy stalls; `false` when this connection must close (a cut).
async fn gate(rx: &mut watch::Receiver<(Mode, u64)>, born: u64) -> bool {
    loop {
        let (mode, generation) = *rx.borrow_and_update();
        if generation != born || mode == Mode::Cut {
            return false;
        }
        if mode == Mode::Forward {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves when a cut newer than `born` happens.
async fn cut_after(mut rx: watch::Receiver<(Mode, u64)>, born: u64) {
    loop {
        {
            let (mode, generation) = *rx.borrow_and_update();
            if generation != born || mode == Mode::Cut {
                return;
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let born = shared.mode.borrow().1;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Answer SSL / GSS encryption requests with "no" until the real startup message.
    let startup = loop {
        let mut len = [0u8; 4];
        if client.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = i32::from_be_bytes(len);
        if !(8..=10_000).contains(&len) {
            return;
        }
        let mut body = vec![0u8; len as usize - 4];
        if client.read_exact(&mut body).await.is_err() {
            return;
        }
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            if client.write_all(b"N").await.is_err() {
                return;
            }
            continue;
        }
        let mut msg = len.to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        break msg;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    if sw.write_all(&startup).await.is_err() {
        return;
    }
    // Set once a COMMIT's answer is being swallowed: nothing more goes to the client.
    let swallowing = Arc::new(AtomicBool::new(false));

    let up = {
        let shared = shared.clone();
        let swallowing = swallowing.clone();
        let mut rx = shared.mode.subscribe();
        async move {
            let mut buf = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 8192];
            loop {
                let n = match cr.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                // Whole typed messages: 1 byte type, 4 bytes length (itself included).
                while buf.len() >= 5 {
                    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                    if buf.len() < 1 + len {
                        break;
                    }
                    let msg: Vec<u8> = buf.drain(..1 + len).collect();
                    if !gate(&mut rx, born).await {
                        return;
                    }
                    let commit = is_commit(&msg);
                    if sw.write_all(&msg).await.is_err() {
                        return;
                    }
                    if commit
                        && shared
                            .swallow_armed
                            .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        swallowing.store(true, Ordering::SeqCst);
                        // Let the server read and run the COMMIT before the line drops.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        shared.swallowed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    };
    let down = {
        let swallowing = swallowing.clone();
        let mut rx = shared.mode.subscribe();
        async move {
            let mut chunk = vec![0u8; 16384];
            loop {
                let n = match sr.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !gate(&mut rx, born).await {
                    return;
                }
                if swallowing.load(Ordering::SeqCst) {
                    // The COMMIT's answer: dropped; the up side ends the connection.
                    continue;
                }
                if cw.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    // The first side to finish (or a cut) ends the connection: both sockets are dropped.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut_after(shared.mode.subscribe(), born) => {}
    }
}

/// A simple-protocol `Query` whose text is `COMMIT` (what sqlx sends to commit).
fn is_commit(msg: &[u8]) -> bool {
    if msg.first() != Some(&b'Q') || msg.len() < 6 {
        return false;
    }
    let text = &msg[5..];
    let text = text.strip_suffix(&[0]).unwrap_or(text);
    let text = String::from_utf8_lossy(text);
    let text = text.trim().trim_end_matches(';').trim();
    text.eq_ignore_ascii_case("COMMIT") || text.eq_ignore_ascii_case("END")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<u8> {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&((4 + text.len() + 1) as u32).to_be_bytes());
        m.extend_from_slice(text.as_bytes());
        m.push(0);
        m
    }

    #[test]
    fn commit_is_recognised() {
        assert!(is_commit(&query("COMMIT")));
        assert!(is_commit(&query("commit;")));
        assert!(!is_commit(&query("SELECT 1")));
        assert!(!is_commit(&query("COMMIT PREPARED 'x'")));
    }
}

#[cfg(test)]
mod live {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn a_swallowed_commit_is_committed_and_unanswered() {
        let admin = crate::db::admin_url();
        let proxy = PgProxy::in_front_of(&admin).await;
        let mut conn = sqlx::PgConnection::connect(&proxy.url_for(&admin))
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        proxy.swallow_next_commit();
        let err = tx.commit().await.expect_err("the answer was swallowed");
        assert_eq!(proxy.swallowed(), 1, "{err}");
        let mut direct = sqlx::PgConnection::connect(&admin).await.unwrap();
        let status: Option<String> = sqlx::query_scalar("SELECT txid_status($1)")
            .bind(xid)
            .fetch_one(&mut direct)
            .await
            .unwrap();
        assert_eq!(status.as_deref(), Some("committed"));
    }
}
