//! The accept loop: HTTP/1.1 per connection with a header-read timeout
//! (slow clients cannot hold a connection open for free), a cap on open
//! connections, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::DropConnection;

const MAX_CONNECTIONS: usize = 512;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight responses get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// A bound listener, so start-up fails fast (port taken) before anything
/// else starts, and the chosen port is known when 0 was asked for.
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            inner: TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by rate limit")
    }
}

impl std::error::Error for Dropped {}

/// The node a request came from, proven by its TLS client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity(pub hearthnet_base::NodeId);

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `router` on `listener` until `shutdown` is cancelled, then let
/// open responses finish for a moment and return. With `tls`, every
/// connection must complete a mutual-TLS handshake first, and its requests
/// carry the peer's [`PeerIdentity`].
pub async fn serve(
    listener: Listener,
    router: Router,
    shutdown: CancellationToken,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.inner.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => drive(TokioIo::new(stream), router, None, watcher).await,
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::info!(peer = %peer, error = %e, "TLS handshake refused");
                                return;
                            }
                            Err(_) => return,
                        };
                    let identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::tls::node_id_of)
                        .map(PeerIdentity);
                    drive(TokioIo::new(tls), router, identity, watcher).await;
                }
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

async fn drive<IO>(
    io: IO,
    router: Router,
    identity: Option<PeerIdentity>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        if let Some(id) = identity {
            req.extensions_mut().insert(id);
        }
        async move {
            let resp = match router.oneshot(req.map(axum::body::Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DropConnection>().is_some() {
                return Err(Dropped);
            }
            Ok::<_, Dropped>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service);
    let _ = watcher.watch(conn).await;
}
