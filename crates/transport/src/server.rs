//! The accept loop: HTTP/1.1 per connection with a header-read timeout
//! and a response-write stall timeout (slow clients cannot hold a
//! connection open for free), a cap on open connections and one per
//! address, both accepting and closing what is over them, smaller caps for
//! TLS connections of devices that are not members, and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::DropConnection;

/// Most connections open at once on one listener, from all addresses.
pub const MAX_CONNECTIONS: usize = 512;
/// Most connections open at once from one address on the peer port: a
/// node needs a few (calls, sync, chunk fetches), several nodes behind one
/// NAT a few times that, and one host must not take all the slots.
pub const PEER_CONNECTIONS_PER_ADDRESS: usize = 32;
/// The same on the local API, where clients share 127.0.0.1 (or ::1):
/// there it caps all ordinary local clients together, so it is high
/// enough for local tools and the benchmark's 64 concurrent callers, and
/// low enough that one local program cannot take every slot without
/// binding other loopback source addresses on purpose.
pub const LOCAL_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Most TLS connections open at once, after the handshake, from one
/// address for devices that are not members: an invitee redeeming its
/// invite needs one; what a stranger holds is member capacity lost.
pub const NON_MEMBER_CONNECTIONS_PER_ADDRESS: usize = 4;
/// The same for all devices that are not members together, on one
/// listener: a LAN full of strangers holds at most this many of its
/// [`MAX_CONNECTIONS`], however many addresses they use.
pub const NON_MEMBER_CONNECTIONS: usize = 32;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a response may make no progress before the connection
/// is closed. A client that stops reading (a streamed call's SSE, a large
/// body) would otherwise hold its connection, and a streamed call its
/// capability slot, for as long as it likes; closing drops the response
/// body and with it the call, which cancels it. 30 s is far beyond any
/// pause of a reader that is alive, even over a congested LAN.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
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

    /// Another handle on the same listening socket (its descriptor
    /// duplicated): when a server on one stops, one on the other goes on
    /// accepting at the same address, the connections that arrived in
    /// between included. Within a Tokio runtime.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let socket = std::net::TcpListener::from(self.inner.as_fd().try_clone_to_owned()?);
        socket.set_nonblocking(true)?;
        Ok(Self {
            inner: TcpListener::from_std(socket)?,
        })
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

/// How a listener is served.
pub struct Serving {
    /// With it, every connection must complete a mutual-TLS handshake
    /// first, and its requests carry the peer's [`PeerIdentity`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most connections open at once from one address (an IPv6 /64
    /// counting as one: a host has as many addresses in its /64 as it
    /// likes). Beyond it a new connection is accepted and closed at once.
    pub per_address: usize,
    /// Whether this is the local API, whose requests must name it in their
    /// `Host` ([`LocalApi`]).
    pub local: bool,
    /// Most connections open at once from all addresses; beyond it a new
    /// connection is accepted and closed at once.
    pub max_connections: usize,
    /// How long a response write may make no progress
    /// ([`WRITE_STALL_TIMEOUT`]).
    pub write_stall: Duration,
    /// With TLS: the caps of connections whose certificate is not a
    /// member's; without them, every device counts as a member.
    pub non_members: Option<NonMembers>,
}

/// The caps of TLS connections of devices that are not members
/// ([`NON_MEMBER_CONNECTIONS_PER_ADDRESS`], [`NON_MEMBER_CONNECTIONS`]),
/// taken once the handshake proved the device; beyond them its connection
/// is closed. They come on top of the listener's caps, which count every
/// connection from its accept on.
#[derive(Clone)]
pub struct NonMembers {
    pub is_member: crate::tls::Membership,
    pub per_address: usize,
    pub total: usize,
}

impl NonMembers {
    /// The default caps, `is_member` telling members.
    pub fn new(is_member: crate::tls::Membership) -> Self {
        Self {
            is_member,
            per_address: NON_MEMBER_CONNECTIONS_PER_ADDRESS,
            total: NON_MEMBER_CONNECTIONS,
        }
    }
}

/// Marks a request that came in on the local API (port `port`): only
/// requests whose `Host` names a loopback address and this port (or no
/// port) are answered there.
#[derive(Debug, Clone, Copy)]
pub struct LocalApi {
    pub port: u16,
}

impl Serving {
    /// The local API: plain HTTP, [`LOCAL_CONNECTIONS_PER_ADDRESS`].
    pub fn local() -> Self {
        Self {
            tls: None,
            per_address: LOCAL_CONNECTIONS_PER_ADDRESS,
            local: true,
            max_connections: MAX_CONNECTIONS,
            write_stall: WRITE_STALL_TIMEOUT,
            non_members: None,
        }
    }

    /// The peer port: mutual TLS with `tls` (plain HTTP without),
    /// [`PEER_CONNECTIONS_PER_ADDRESS`], and over TLS the default
    /// [`NonMembers`] caps for devices `is_member` does not know.
    pub fn peer(tls: Option<Arc<rustls::ServerConfig>>, is_member: crate::tls::Membership) -> Self {
        Self {
            tls,
            per_address: PEER_CONNECTIONS_PER_ADDRESS,
            local: false,
            max_connections: MAX_CONNECTIONS,
            write_stall: WRITE_STALL_TIMEOUT,
            non_members: Some(NonMembers::new(is_member)),
        }
    }
}

/// How many connections each address has open.
#[derive(Default)]
struct OpenPerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of an address, given back when dropped.
struct AddressSlot {
    open: Arc<OpenPerAddress>,
    address: IpAddr,
}

impl OpenPerAddress {
    /// A slot for a connection from `peer`, unless it has `most` open.
    fn enter(self: &Arc<Self>, peer: IpAddr, most: usize) -> Option<AddressSlot> {
        let address = Self::key(peer);
        let mut open = self.0.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            open: self.clone(),
            address,
        })
    }

    /// IPv4 as itself (also when mapped into IPv6), IPv6 by its /64.
    fn key(peer: IpAddr) -> IpAddr {
        match peer.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::from(u64::MAX));
                IpAddr::V6(prefix.into())
            }
            v4 => v4,
        }
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serve `router` on `listener` as `serving` says until `shutdown` is
/// cancelled, then let open responses finish for a moment and return.
pub async fn serve(
    listener: Listener,
    router: Router,
    shutdown: CancellationToken,
    serving: Serving,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(serving.max_connections));
    let per_address = Arc::new(OpenPerAddress::default());
    let acceptor = serving.tls.map(tokio_rustls::TlsAcceptor::from);
    let local = match (serving.local, listener.local_addr()) {
        (true, Ok(addr)) => Some(LocalApi { port: addr.port() }),
        (true, Err(e)) => {
            // Without the port no Host can be checked: serve nothing
            // rather than serve it unchecked.
            tracing::error!(error = %e, "the local API's port is unknown: not serving it");
            return;
        }
        (false, _) => None,
    };
    let write_stall = serving.write_stall;
    let non_members = serving.non_members.map(|caps| {
        let slots = Arc::new(Semaphore::new(caps.total));
        (caps, slots, Arc::new(OpenPerAddress::default()))
    });
    loop {
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
        // Over a cap, accepted and closed at once rather than left
        // unaccepted: the backlog keeps moving, and a client learns at
        // once instead of waiting in the kernel's queue for a slot.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = %peer, "every connection slot is taken: closed");
            continue;
        };
        let Some(address_slot) = per_address.enter(peer.ip(), serving.per_address) else {
            tracing::debug!(peer = %peer, "too many connections from this address: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let non_members = non_members.clone();
        tokio::spawn(async move {
            match acceptor {
                None => {
                    let io = StallGuard::new(TokioIo::new(stream), write_stall);
                    drive(io, router, None, local, watcher).await;
                }
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
                    // Held as long as the connection, for a device that is
                    // not a member.
                    let mut _non_member_slots = None;
                    if let Some((caps, slots, per_address)) = &non_members
                        && !identity.is_some_and(|PeerIdentity(id)| (caps.is_member)(&id))
                    {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tracing::debug!(peer = %peer, "too many connections of non-members: closed");
                            return;
                        };
                        let Some(address) = per_address.enter(peer.ip(), caps.per_address) else {
                            tracing::debug!(peer = %peer, "too many connections of non-members from this address: closed");
                            return;
                        };
                        _non_member_slots = Some((slot, address));
                    }
                    let io = StallGuard::new(TokioIo::new(tls), write_stall);
                    drive(io, router, identity, local, watcher).await;
                }
            }
            drop(address_slot);
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

/// A connection whose writes fail once one made no progress for `bound`:
/// hyper then closes the connection and drops the response.
struct StallGuard<IO> {
    io: IO,
    bound: Duration,
    /// Running while a write waits; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> StallGuard<IO> {
    fn new(io: IO, bound: Duration) -> Self {
        Self {
            io,
            bound,
            stalled: None,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let bound = self.bound;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(bound)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: hyper::rt::Read + Unpin> hyper::rt::Read for StallGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: hyper::rt::Write + Unpin> hyper::rt::Write for StallGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

async fn drive<IO>(
    io: IO,
    router: Router,
    identity: Option<PeerIdentity>,
    local: Option<LocalApi>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        if let Some(id) = identity {
            req.extensions_mut().insert(id);
        }
        if let Some(local) = local {
            req.extensions_mut().insert(local);
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// `GET /health` on `conn`: whether it was answered 200.
    async fn healthy(conn: &mut TcpStream) -> bool {
        let ask = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
        if conn.write_all(ask).await.is_err() {
            return false;
        }
        let mut answer = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut answer)).await;
        matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
    }

    /// Whether the server closed `conn` without a word.
    async fn closed(conn: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// Serve `/health` as `serving` says, fill its `cap` connections from
    /// 127.0.0.1 with idle ones, and check that more are accepted and
    /// closed at once (not left waiting in the backlog), that those within
    /// stay served, and that slots come back when they close.
    async fn over_a_cap_connections_are_accepted_and_closed(serving: Serving, cap: usize) {
        let listener = Listener::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/health", get(|| async { "ok" }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, router, stop.clone(), serving));

        let mut idle = Vec::new();
        for _ in 0..cap {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        for _ in 0..3 {
            let mut extra = TcpStream::connect(addr).await.unwrap();
            assert!(closed(&mut extra).await, "over the cap: closed at once");
        }
        // The ones within the cap stay served.
        assert!(healthy(&mut idle[0]).await);

        drop(idle);
        // Their slots come back once the server saw them close.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut fresh = TcpStream::connect(addr).await.unwrap();
            if healthy(&mut fresh).await {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no slot came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_over_the_cap_of_one_address_are_accepted_and_closed() {
        const CAP: usize = 4;
        let serving = Serving {
            per_address: CAP,
            ..Serving::local()
        };
        over_a_cap_connections_are_accepted_and_closed(serving, CAP).await;
    }

    #[tokio::test]
    async fn connections_over_the_global_cap_are_accepted_and_closed() {
        const CAP: usize = 4;
        let serving = Serving {
            max_connections: CAP,
            ..Serving::local()
        };
        assert!(serving.per_address > CAP, "the global cap is the one met");
        over_a_cap_connections_are_accepted_and_closed(serving, CAP).await;
    }

    #[test]
    fn addresses_count_as_ipv4_hosts_and_ipv6_prefixes() {
        let key = |s: &str| OpenPerAddress::key(s.parse().unwrap());
        assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        let open = Arc::new(OpenPerAddress::default());
        let first = open.enter("2001:db8::1".parse().unwrap(), 1);
        assert!(first.is_some());
        assert!(open.enter("2001:db8::2".parse().unwrap(), 1).is_none());
        drop(first);
        assert!(open.enter("2001:db8::2".parse().unwrap(), 1).is_some());
        assert!(
            open.0.lock().is_empty(),
            "no entry left for an address with none open"
        );
    }
}
