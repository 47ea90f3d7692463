//! What a stranger's load, or a member's, costs a real node:
//! unauthenticated bodies are refused before they are read, stalled
//! connections from one address take only that address's slots, devices
//! that are not members hold only a few TLS connections, and what members'
//! large bodies can pin at once is bounded by the node's body budget. Every
//! load here is bounded in count and time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Sandbox;
use hearthnet_base::CommunityId;
use hearthnet_client::CallReply;
use hearthnet_transport::peer_client::PeerError;
use serde_json::json;

fn node_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.init_non_interactive("node");
    sb
}

/// A member's (the owner's) echo call through the local API: it succeeds,
/// and how long it took.
fn member_call(sb: &Sandbox, text: &str) -> Duration {
    let started = Instant::now();
    let reply = sb
        .client()
        .call(
            "experimental.echo",
            "1.0",
            &json!({"params": {}, "input": {"text": text}}),
            false,
            None,
        )
        .expect("the member's call succeeds");
    assert!(
        matches!(&reply, CallReply::Json(v) if v["output"]["text"] == text),
        "the member's call was answered"
    );
    started.elapsed()
}

/// A kibibyte field of `/proc/<pid>/status` (e.g. `VmHWM`, the peak RSS).
fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = common::line_starting(&status, &format!("{field}:"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const MIB: usize = 1024 * 1024;

/// Sixteen clients at once declare a 16 MiB body without a valid signature
/// and stream it to the local API, and four devices that are not members
/// push one to the peer port: each is refused, the node's peak RSS stays
/// under 96 MiB, and a member's call goes through meanwhile.
#[test]
fn unauthenticated_bodies_are_refused_before_they_cost_memory() {
    const CLIENTS: usize = 16;
    const PEER_CLIENTS: usize = 4;
    const BODY: usize = 16 * MIB;
    const PEAK_LIMIT_KIB: u64 = 96 * 1024;
    let started = Instant::now();
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let api = node.api;
    let before = proc_status_kib(node.pid(), "VmHWM");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(api).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                conn.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                // Signature headers that look right but are not: nothing
                // about them may make the node read the body.
                write!(
                    conn,
                    "POST /bus/v1/call HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                     x-hearthnet-from: ed25519:AAAA\r\nx-hearthnet-signature: ed25519:{i}\r\n\
                     content-length: {BODY}\r\n\r\n"
                )
                .unwrap();
                // The body goes out from its own thread while this one
                // reads, as a client streaming it would: the answer comes
                // before the body has been sent.
                let mut writer = conn.try_clone().unwrap();
                let streamer = std::thread::spawn(move || {
                    let chunk = vec![b' '; 64 * 1024];
                    let mut sent = 0;
                    while sent < BODY && writer.write_all(&chunk).is_ok() {
                        sent += chunk.len();
                    }
                    sent
                });
                let mut answer = Vec::new();
                let _ = conn.read_to_end(&mut answer);
                let sent = streamer.join().unwrap();
                (String::from_utf8_lossy(&answer).into_owned(), sent)
            })
        })
        .collect();

    // Meanwhile devices that are not members push as large a body over
    // mutual TLS to the peer port. Fewer of them: each costs this test
    // several copies of the body.
    let peer = sb.peer_addr();
    let community = CommunityId::of_root(sb.key().node_id());
    let strangers = std::thread::spawn(move || {
        let body = std::sync::Arc::new(json!({"events": ["x".repeat(BODY)]}));
        common::runtime().block_on(async {
            let mut pushes = tokio::task::JoinSet::new();
            for _ in 0..PEER_CLIENTS {
                let (body, peer) = (body.clone(), peer.clone());
                pushes.spawn(async move {
                    let stranger = hearthnet_base::DeviceKey::generate();
                    common::peer_client(&stranger, community)
                        .post(&peer, None, "/sync/v1/events", body.as_ref())
                        .await
                        .map(|_| ())
                });
            }
            pushes.join_all().await
        })
    });

    // A member is served while the strangers push.
    member_call(&sb, "during");

    let mut refused = 0;
    for client in clients {
        let (answer, sent) = client.join().unwrap();
        assert!(
            !answer.starts_with("HTTP/1.1 2"),
            "an unsigned call was answered: {answer}"
        );
        // The answer may be lost to the reset of a connection closed with
        // the unread body behind it; when it arrived, it is the refusal.
        if !answer.is_empty() {
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
            refused += 1;
        }
        assert!(sent < BODY, "the node read a whole body ({sent} bytes)");
    }
    let mut peer_refused = 0;
    for pushed in strangers.join().unwrap() {
        match pushed {
            Ok(()) => panic!("a stranger's push was accepted"),
            Err(PeerError::Refused { status, .. }) => {
                assert_eq!(status, 401);
                peer_refused += 1;
            }
            // The connection closed with the body unread, the answer lost.
            Err(e) => eprintln!("a stranger's push: {e}"),
        }
    }
    let peak = proc_status_kib(node.pid(), "VmHWM");
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak RSS {peak} KiB (from {before} KiB at start), over {PEAK_LIMIT_KIB} KiB"
    );
    member_call(&sb, "after");
    eprintln!(
        "peak RSS {before} KiB -> {peak} KiB; {refused}/{CLIENTS} local and \
         {peer_refused}/{PEER_CLIENTS} peer refusals arrived; {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(90));
}

/// Raise this process's soft limit on open files to `wanted` (or the hard
/// limit, if lower): the number it may now open.
fn raise_open_files(wanted: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        limit.current = Some(wanted.min(hard));
        setrlimit(Resource::Nofile, limit).unwrap();
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// `count` connections to `target` from `from` (another loopback
/// address), sending nothing, in the order opened.
fn stalled_connections(
    rt: &tokio::runtime::Runtime,
    from: std::net::IpAddr,
    target: SocketAddr,
    count: usize,
) -> Vec<std::net::TcpStream> {
    rt.block_on(async {
        let mut open = Vec::with_capacity(count);
        for _ in 0..count {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let conn = tokio::time::timeout(Duration::from_secs(10), socket.connect(target))
                .await
                .expect("the connection is made")
                .unwrap();
            open.push(conn.into_std().unwrap());
        }
        open
    })
}

/// Whether the server closed `conn` (a read returns end of file or a
/// reset), without waiting.
fn closed_by_server(conn: &std::net::TcpStream) -> bool {
    conn.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let mut reader = conn;
    match reader.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// `STALLED` connections from 127.0.0.3 to `target`, sending nothing, of
/// which `cap` are within that address's cap: the ones over it are closed
/// at once, those within stay open, and `member` (called meanwhile) gets
/// through. "At once" means before the server's 10 s header and handshake
/// timeouts, which would close every one of them, the oldest first.
fn stall_one_address(
    rt: &tokio::runtime::Runtime,
    target: SocketAddr,
    cap: usize,
    what: &str,
    member: impl FnOnce(),
) {
    const QUICK: Duration = Duration::from_secs(8);
    let stranger: std::net::IpAddr = [127, 0, 0, 3].into();
    let opened = Instant::now();
    let conns = stalled_connections(rt, stranger, target, STALLED);
    let (kept, over) = conns.split_at(cap);
    // Measured from the last connection: a header timeout could not have
    // closed it this soon.
    common::wait_until(
        QUICK,
        &format!("{what}: the connections over the cap closed"),
        || over.iter().all(closed_by_server),
    );
    member();
    let still_open = kept.iter().filter(|c| !closed_by_server(c)).count();
    if opened.elapsed() < QUICK {
        assert_eq!(
            still_open, cap,
            "{what}: the connections within the cap are kept"
        );
    } else {
        // The timeouts may rightly have closed some already.
        eprintln!(
            "{what}: too slow here ({:?}) to check that {cap} stayed open ({still_open} did)",
            opened.elapsed()
        );
    }
}

const STALLED: usize = 1000;

/// A thousand connections from 127.0.0.3 that send nothing, to each port
/// in turn: the ones over that address's cap are closed at once, and a
/// member calling from 127.0.0.1 is served as usual meanwhile.
#[test]
fn stalled_connections_from_one_address_do_not_stop_a_member() {
    let started = Instant::now();
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let available = raise_open_files(4 * STALLED as u64);
    assert!(
        available >= STALLED as u64 + 256,
        "only {available} open files allowed here: the test needs {STALLED} and more"
    );
    let usual = member_call(&sb, "before");
    let rt = common::runtime();

    let mut during = Duration::ZERO;
    stall_one_address(
        &rt,
        node.api,
        hearthnet_transport::LOCAL_CONNECTIONS_PER_ADDRESS,
        "local API",
        || during = member_call(&sb, "during"),
    );
    assert!(
        during < usual.max(Duration::from_millis(500)) * 4,
        "the member's call took {during:?} (usually {usual:?})"
    );

    let peer: SocketAddr = sb.peer_addr().parse().unwrap();
    let key = sb.key();
    let community = CommunityId::of_root(key.node_id());
    stall_one_address(
        &rt,
        peer,
        hearthnet_transport::PEER_CONNECTIONS_PER_ADDRESS,
        "peer port",
        || {
            let heads = rt.block_on(async {
                common::peer_client(&key, community)
                    .get(&peer.to_string(), None, "/sync/v1/heads")
                    .await
            });
            if let Err(e) = heads {
                panic!("a member on the peer port was refused: {e}");
            }
        },
    );
    member_call(&sb, "after");
    eprintln!(
        "{STALLED} stalled per port; member call {usual:?} before, {during:?} during; {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(90));
}

/// A push to `/sync/v1/events` of the local API signed by `key`, as the
/// bytes of its request head (asking the node to close the connection
/// after its answer); `body` is sent after it.
fn signed_push_head(key: &hearthnet_base::DeviceKey, body: &[u8]) -> Vec<u8> {
    use hearthnet_base::request::{ENDPOINT_VERSION, SignedHeaders};
    let community = CommunityId::of_root(key.node_id());
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    let signed =
        SignedHeaders::sign(key, community, "/sync/v1/events", ENDPOINT_VERSION, &value).unwrap();
    let mut head = format!(
        "POST /sync/v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in signed.to_pairs() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sixty-four pushes of a 4 MiB body (the most a push may carry), each
/// signed by a member (the owner), sent at once: without a budget they
/// would pin 256 MiB before parsing; the node reads what its body budget
/// admits, refuses the rest as `capacity_exceeded` before reading them,
/// keeps its peak RSS under 128 MiB, and a member's ordinary call goes
/// through meanwhile.
#[test]
fn members_large_bodies_at_once_stay_within_the_node_body_budget() {
    const PUSHES: usize = 64;
    const PEAK_LIMIT_KIB: u64 = 128 * 1024;
    let started = Instant::now();
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let api = node.api;
    let before = proc_status_kib(node.pid(), "VmHWM");
    let key = sb.key();

    // Just under the push limit, as JSON; one body for all, each request
    // signed on its own (signing reads the body: done here, in turn).
    let filler = hearthnet_wire::peer::MAX_PUSH_BYTES - 64;
    let body =
        std::sync::Arc::new(serde_json::to_vec(&json!({"events": ["x".repeat(filler)]})).unwrap());
    let heads: Vec<Vec<u8>> = (0..PUSHES).map(|_| signed_push_head(&key, &body)).collect();
    let go = std::sync::Arc::new(std::sync::Barrier::new(PUSHES + 1));
    let pushes: Vec<_> = heads
        .into_iter()
        .map(|head| {
            let (body, go) = (body.clone(), go.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(api).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                conn.set_write_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                go.wait();
                // A refused push's body may be cut off unread: the answer
                // still comes first.
                let _ = conn.write_all(&head).and_then(|()| conn.write_all(&body));
                let mut answer = Vec::new();
                let _ = conn.read_to_end(&mut answer);
                let answer = String::from_utf8_lossy(&answer).into_owned();
                answer.lines().next().unwrap_or_default().to_owned()
            })
        })
        .collect();
    go.wait();
    member_call(&sb, "during");

    let (mut read, mut refused, mut lost) = (0, 0, 0);
    for push in pushes {
        let status = push.join().unwrap();
        if status.starts_with("HTTP/1.1 200") {
            read += 1;
        } else if status.starts_with("HTTP/1.1 429") {
            refused += 1;
        } else if status.is_empty() {
            // The answer lost to the reset of a connection closed with
            // the unread body behind it.
            lost += 1;
        } else {
            panic!("a member's push was answered {status}");
        }
    }
    let peak = proc_status_kib(node.pid(), "VmHWM");
    eprintln!(
        "{PUSHES} pushes of {} bytes: {read} read, {refused} refused, {lost} answers lost; \
         peak RSS {before} KiB -> {peak} KiB; {:?}",
        body.len(),
        started.elapsed()
    );
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak RSS {peak} KiB (from {before} KiB at start), over {PEAK_LIMIT_KIB} KiB"
    );
    assert!(read > 0, "no push was read at all");
    member_call(&sb, "after");
    assert!(started.elapsed() < Duration::from_secs(90));
}

/// `count` TLS connections as `stranger` (no member) from `from` to
/// `target`, one after another: each is `Some` if its handshake completed,
/// `None` if the node closed it first.
async fn stranger_connections(
    stranger: &hearthnet_transport::tls::TlsIdentity,
    from: std::net::IpAddr,
    target: SocketAddr,
    count: usize,
) -> Vec<Option<hearthnet_transport::tls::ClientStream>> {
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(target))
            .await
            .expect("the connection is made")
            .unwrap();
        let anyone: hearthnet_transport::tls::Membership = std::sync::Arc::new(|_| true);
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            hearthnet_transport::tls::connect(tcp, stranger, anyone, None),
        )
        .await
        .expect("the handshake ends in time");
        open.push(tls.ok());
    }
    open
}

/// Whether the node closed the TLS connection `conn` (end of file, a
/// reset or a TLS alert), waiting at most a moment for it.
async fn tls_closed(conn: &mut hearthnet_transport::tls::ClientStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(20), conn.read(&mut byte)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// Devices that are not members complete TLS handshakes with the peer
/// port from ten addresses: 40 from 127.0.0.1, where a member calls from,
/// more than that address's 32 connections, and 6 from each of 127.0.0.3
/// to 127.0.0.11. Each address keeps at most 4 of them, all together at
/// most 32; and the member, calling from 127.0.0.1 meanwhile, is served,
/// where without those caps the strangers would hold all of its
/// address's connections. Within the node's 10 s header timeout, which
/// would close the strangers' idle connections anyway.
#[test]
fn strangers_hold_only_a_few_tls_connections_and_a_member_is_served() {
    const QUICK: Duration = Duration::from_secs(8);
    let started = Instant::now();
    let sb = node_sandbox();
    let _node = sb.start_node(&[]);
    let peer: SocketAddr = sb.peer_addr().parse().unwrap();
    let key = sb.key();
    let community = CommunityId::of_root(key.node_id());
    let stranger =
        hearthnet_transport::tls::TlsIdentity::new(&hearthnet_base::DeviceKey::generate()).unwrap();
    let addresses: Vec<(std::net::IpAddr, usize)> = std::iter::once(([127, 0, 0, 1].into(), 40))
        .chain((3..=11).map(|last| ([127, 0, 0, last].into(), 6)))
        .collect();
    let rt = common::runtime();
    rt.block_on(async {
        let opened = Instant::now();
        let mut conns = Vec::new();
        for (from, count) in &addresses {
            let open = stranger_connections(&stranger, *from, peer, *count).await;
            conns.push((*from, open));
        }
        // The node closes what is over the caps right after each handshake.
        let mut kept = Vec::new();
        let mut last = Vec::new();
        let settled = tokio::time::timeout(QUICK, async {
            loop {
                last.clone_from(&kept);
                kept.clear();
                for (from, open) in &mut conns {
                    let mut n = 0;
                    for conn in open.iter_mut() {
                        if let Some(tls) = conn {
                            if tls_closed(tls).await {
                                *conn = None;
                            } else {
                                n += 1;
                            }
                        }
                    }
                    kept.push((*from, n));
                }
                let total: usize = kept.iter().map(|(_, n)| n).sum();
                if total <= hearthnet_transport::NON_MEMBER_CONNECTIONS
                    && kept
                        .iter()
                        .all(|(_, n)| *n <= hearthnet_transport::NON_MEMBER_CONNECTIONS_PER_ADDRESS)
                {
                    return total;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let total =
            settled.unwrap_or_else(|_| panic!("strangers kept more than the caps: {last:?}"));

        let heads = common::peer_client(&key, community)
            .get(&peer.to_string(), None, "/sync/v1/heads")
            .await;
        let took = opened.elapsed();
        if let Err(e) = heads {
            panic!("a member on the peer port was refused while strangers held {total}: {e}");
        }
        if took < QUICK {
            // Nothing timed out yet: exactly the caps are held.
            assert_eq!(
                total,
                hearthnet_transport::NON_MEMBER_CONNECTIONS,
                "{kept:?}"
            );
        } else {
            eprintln!(
                "too slow here ({took:?}) to check that the strangers held the caps ({kept:?})"
            );
        }
        eprintln!("strangers keep {kept:?}, {total} in all; the member served after {took:?}");
        drop(conns);
    });
    assert!(started.elapsed() < Duration::from_secs(90));
}
