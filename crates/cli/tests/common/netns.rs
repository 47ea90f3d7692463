//! A small LAN of network namespaces for discovery tests: one namespace per
//! node with an `eth0` on 10.77.0.0/24, all plugged into a bridge that
//! lives in a namespace of its own. Nothing is added to the host's network;
//! everything is removed when the `Lan` is dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Lan {
    prefix: String,
    pub nodes: Vec<String>,
    bridge: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Lan {
    /// `n` hosts on one bridge, or `None` (with the reason on stderr) where
    /// this user may not create network namespaces.
    pub fn create(n: usize) -> Option<Self> {
        let prefix = format!(
            "hn{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let bridge = format!("{prefix}-br");
        if !super::needs::is_root() {
            super::needs::cannot_run_here("network namespace tests need root");
            return None;
        }
        super::needs::program("ip", "iproute2");
        if let Err(e) = ip(&["netns", "add", &bridge]) {
            super::needs::cannot_run_here(&format!(
                "network namespace tests need CAP_NET_ADMIN (run as root): {e}"
            ));
            return None;
        }
        let mut lan = Self {
            prefix,
            nodes: Vec::new(),
            bridge,
        };
        lan.build(n).expect("build the test LAN");
        Some(lan)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let br = self.bridge.clone();
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        // Flood multicast like a plain switch; with snooping and no querier
        // the bridge would start dropping group traffic.
        ip(&[
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{}-n{i}", self.prefix);
            ip(&["netns", "add", &ns])?;
            self.nodes.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "link", "add", &port, "netns", &br, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(i)),
                "broadcast",
                "+",
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn addr(&self, i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }

    /// Drop every multicast packet in and out of every host (as a Wi-Fi
    /// access point that filters multicast would): mDNS goes dark.
    pub fn drop_multicast(&self) {
        let rules = "table inet hn_test {\n\
            chain out { type filter hook output priority 0; ip daddr 224.0.0.0/4 drop; }\n\
            chain in { type filter hook input priority 0; ip daddr 224.0.0.0/4 drop; }\n\
            }\n";
        super::needs::program("nft", "nftables");
        for ns in &self.nodes {
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("nft (Debian package nftables)");
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), rules.as_bytes()).unwrap();
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success(), "nft rules in {ns}");
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.bridge]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
