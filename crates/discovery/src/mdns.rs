//! mDNS / DNS-SD discovery (M02 §3.2–§3.3) with the `mdns-sd` crate: we
//! publish `_hearthnet._tcp.local.` with the reference's TXT record and
//! browse for everyone else's, on the LAN interfaces only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hearthnet_identity::hardware::{is_lan_interface, lan_interfaces};
use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio_util::sync::CancellationToken;

use crate::announcement::{Announcement, SERVICE_TYPE};
use crate::registry::Source;
use crate::{Context, DiscoveryError, Sighting};

/// How often our TXT record is compared with what we offer now.
const REFRESH: Duration = Duration::from_secs(5);

pub(crate) fn start(ctx: &Context) -> Result<ServiceDaemon, DiscoveryError> {
    let fail = |e: mdns_sd::Error| DiscoveryError::MdnsUnavailable(e.to_string());
    let daemon = ServiceDaemon::new_with_port(ctx.settings.mdns_port).map_err(fail)?;
    let configured = ctx.settings.interfaces.clone();
    daemon.disable_interface(IfKind::All).map_err(fail)?;
    daemon
        .enable_interface(IfKind::Predicate(IfPredicate::new(move |i| {
            is_lan_interface(&i.name, i.ip(), &configured)
        })))
        .map_err(fail)?;
    Ok(daemon)
}

pub(crate) async fn run(daemon: ServiceDaemon, ctx: Arc<Context>, stop: CancellationToken) {
    let browse = match daemon.browse(SERVICE_TYPE) {
        Ok(rx) => rx,
        Err(e) => {
            ctx.status.set_mdns_error(e.to_string());
            tracing::warn!(error = %e, "mDNS browsing unavailable");
            let _ = daemon.shutdown();
            return;
        }
    };
    let mut published: Option<(Announcement, Vec<IpAddr>)> = None;
    let mut refresh = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = refresh.tick() => publish(&daemon, &ctx, &mut published),
            event = browse.recv_async() => match event {
                Ok(ServiceEvent::ServiceResolved(service)) => {
                    let props = &service.txt_properties;
                    let heard = Announcement::from_txt(
                        |k| props.get_property_val_str(k).map(str::to_owned),
                        service.port,
                    );
                    let Ok(heard) = heard else {
                        tracing::debug!(service = %service.fullname, "mDNS service without a usable TXT record");
                        continue;
                    };
                    ctx.status.mdns_resolved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for ip in service.addresses.iter().map(|a| a.to_ip_addr()).filter(IpAddr::is_ipv4) {
                        let sighting = Sighting {
                            node_short: Some(heard.node.clone()),
                            community_short: Some(heard.community.clone()),
                            addr: SocketAddr::new(ip, heard.port),
                            source: Source::Mdns,
                        };
                        if ctx.sightings.try_send(sighting).is_err() {
                            tracing::debug!("discovery busy; dropped an mDNS sighting");
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            },
        }
    }
    if let Some((ours, _)) = &published {
        let _ = daemon.unregister(&fullname(&ctx, ours));
    }
    // Give the goodbye packet a moment before the daemon thread ends.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = daemon.shutdown();
}

fn fullname(ctx: &Context, ours: &Announcement) -> String {
    format!(
        "{}.{SERVICE_TYPE}",
        instance_name(&ctx.settings.display_name, &ours.node)
    )
}

/// `<display_name>-<first 4 characters of the short NodeID>` (M02 §3.3).
fn instance_name(display_name: &str, node_short: &str) -> String {
    // A DNS label holds 63 bytes: keep whole characters within 40 bytes.
    let mut name = String::new();
    for c in display_name.chars().map(|c| if c == '.' { '-' } else { c }) {
        if name.len() + c.len_utf8() > 40 {
            break;
        }
        name.push(c);
    }
    format!("{name}-{}", node_short.chars().take(4).collect::<String>())
}

/// (Re-)register our service when what we announce or where changed.
fn publish(
    daemon: &ServiceDaemon,
    ctx: &Context,
    published: &mut Option<(Announcement, Vec<IpAddr>)>,
) {
    let ours = (ctx.announcement)();
    let addrs: Vec<IpAddr> = lan_interfaces(&ctx.settings.interfaces)
        .iter()
        .map(|i| IpAddr::V4(i.addr))
        .collect();
    if published.as_ref() == Some(&(ours.clone(), addrs.clone())) {
        return;
    }
    if addrs.is_empty() {
        ctx.status
            .set_mdns_error("no LAN interface to announce on".into());
        return;
    }
    let host = format!("hearthnet-{}.local.", ours.node.to_lowercase());
    let txt = ours.to_txt(&addrs[0].to_string());
    let instance = instance_name(&ctx.settings.display_name, &ours.node);
    match ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        &addrs[..],
        ours.port,
        &txt[..],
    )
    .and_then(|info| daemon.register(info))
    {
        Ok(()) => {
            tracing::info!(instance = %instance, addrs = ?addrs, "mDNS service published");
            ctx.status
                .set_mdns_ok(addrs.iter().map(ToString::to_string).collect());
            *published = Some((ours, addrs));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot publish the mDNS service");
            ctx.status.set_mdns_error(e.to_string());
        }
    }
}
