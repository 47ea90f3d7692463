//! UDP discovery (M02 §3.4): the fallback where mDNS is blocked or absent.
//! One socket listens on the discovery port (shared with other processes
//! through `SO_REUSEPORT`), joined to the multicast group on every LAN
//! interface; the same socket sends our announcement out of each interface
//! to the group *and* to the subnet's broadcast address, because Wi-Fi
//! access points and switches that filter multicast (the usual reason mDNS
//! fails) still pass broadcast.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hearthnet_identity::hardware::lan_interfaces;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::announcement::Announcement;
use crate::registry::Source;
use crate::{Context, DiscoveryError, Settings, Sighting, Status};

/// Bind the listening socket now, so a taken or forbidden port is reported
/// at start-up.
pub(crate) fn bind(settings: &Settings) -> Result<UdpSocket, DiscoveryError> {
    let fail = |e: std::io::Error| DiscoveryError::SocketInUse {
        port: settings.udp_port,
        reason: e.to_string(),
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, settings.udp_port).into())
        .map_err(fail)?;
    // Link-local scope: an announcement never leaves the LAN.
    socket.set_multicast_ttl_v4(1).map_err(fail)?;
    // Other nodes on this host (tests, several users) hear us too; our
    // own datagrams are recognised by node id and dropped.
    socket.set_multicast_loop_v4(true).map_err(fail)?;
    socket.set_broadcast(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    UdpSocket::from_std(socket.into()).map_err(fail)
}

/// Listen and announce until `stop`.
pub(crate) async fn run(socket: UdpSocket, ctx: Arc<Context>, stop: CancellationToken) {
    let (settings, status) = (&ctx.settings, &ctx.status);
    // Interface address → its broadcast address.
    let mut joined: BTreeMap<Ipv4Addr, Option<Ipv4Addr>> = BTreeMap::new();
    let mut buf = vec![0u8; 2048];
    let mut next_announce = tokio::time::Instant::now();
    // When we last answered a stranger early: at most once a second, and
    // never one that failed to verify (see `is_stranger`), so a node nobody
    // can verify does not set everyone announcing fast.
    let mut answered_early: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next_announce) => {
                join_new_interfaces(&socket, settings, &mut joined, status);
                if joined.is_empty() {
                    Status::set(&status.udp, |s| {
                        s.state = hearthnet_wire::local::TransportState::Failed;
                        s.error = Some("no LAN interface to announce on (see discovery.interfaces)".into());
                    });
                }
                let ours = (ctx.announcement)();
                send_everywhere(&socket, settings, &joined, &ours, status).await;
                next_announce = tokio::time::Instant::now() + ctx.udp_interval();
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                let Ok(heard) = Announcement::from_datagram(&buf[..n]) else {
                    status.udp_malformed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                };
                status.udp_received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sighting = Sighting {
                    node_short: Some(heard.node),
                    community_short: Some(heard.community),
                    addr: SocketAddr::new(from.ip(), heard.port),
                    source: Source::Udp,
                };
                // A stranger answers our next announcement sooner: the
                // time to be seen is one round trip, not one interval.
                let may_answer = answered_early.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if may_answer && ctx.is_stranger(&sighting) {
                    answered_early = Some(tokio::time::Instant::now());
                    let soon = tokio::time::Instant::now() + Duration::from_millis(200);
                    next_announce = next_announce.min(soon);
                }
                if ctx.sightings.try_send(sighting).is_err() {
                    tracing::debug!("discovery busy; dropped a UDP sighting");
                }
            }
        }
    }
}

fn join_new_interfaces(
    socket: &UdpSocket,
    settings: &Settings,
    joined: &mut BTreeMap<Ipv4Addr, Option<Ipv4Addr>>,
    status: &Status,
) {
    for interface in lan_interfaces(&settings.interfaces) {
        if joined.contains_key(&interface.addr) {
            continue;
        }
        match socket.join_multicast_v4(settings.udp_group, interface.addr) {
            Ok(()) => {
                tracing::info!(interface = %interface.name, addr = %interface.addr, group = %settings.udp_group, "UDP discovery listening");
                joined.insert(interface.addr, interface.broadcast);
                status.set_udp_interfaces(joined.keys().map(ToString::to_string).collect());
            }
            Err(e) => {
                tracing::warn!(interface = %interface.name, error = %e, "cannot join the discovery group")
            }
        }
    }
}

async fn send_everywhere(
    socket: &UdpSocket,
    settings: &Settings,
    interfaces: &BTreeMap<Ipv4Addr, Option<Ipv4Addr>>,
    ours: &Announcement,
    status: &Status,
) {
    let datagram = ours.to_datagram();
    let group = SocketAddr::new(settings.udp_group.into(), settings.udp_port);
    for (addr, broadcast) in interfaces {
        // Choose the outgoing interface per datagram (one socket, many
        // interfaces): socket2 reaches the option tokio does not expose.
        let chosen = socket2::SockRef::from(socket).set_multicast_if_v4(addr);
        let to_group = match chosen {
            Ok(()) => socket.send_to(&datagram, group).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let to_broadcast = match broadcast {
            Some(b) => socket
                .send_to(&datagram, SocketAddr::new((*b).into(), settings.udp_port))
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        for sent in [to_group, to_broadcast] {
            match sent {
                Ok(()) => {
                    status
                        .udp_sent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(interface = %addr, error = %e, "UDP announcement not sent")
                }
            }
        }
    }
}
