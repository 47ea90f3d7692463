//! Emergency probe targets the test controls: two listeners on loopback
//! that answer until stopped, and the settings that make a node probe
//! them every second and change mode within seconds.

use std::net::{SocketAddr, TcpListener};

pub struct Probes {
    pub addrs: [SocketAddr; 2],
    listeners: Vec<TcpListener>,
}

impl Probes {
    pub fn answering() -> Self {
        let listeners: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addr = |i: usize| listeners[i].local_addr().unwrap();
        Self {
            addrs: [addr(0), addr(1)],
            listeners,
        }
    }

    /// The internet goes: nothing answers any more.
    pub fn stop(&mut self) {
        self.listeners.clear();
    }

    /// It comes back, on the same addresses.
    pub fn resume(&mut self) {
        self.listeners = self
            .addrs
            .iter()
            .map(|a| TcpListener::bind(a).unwrap())
            .collect();
    }

    /// The node's environment: emergency mode on, these targets, fast
    /// rounds (offline after 2 s of failures, online after 1 s).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let targets = format!(r#"["{}", "{}"]"#, self.addrs[0], self.addrs[1]);
        [
            ("HEARTHNET_EMERGENCY_ENABLED", "true"),
            ("HEARTHNET_EMERGENCY_PROBE_TARGETS", &targets),
            ("HEARTHNET_EMERGENCY_PROBE_INTERVAL_SECONDS", "1"),
            ("HEARTHNET_EMERGENCY_OFFLINE_PROBE_INTERVAL_SECONDS", "1"),
            ("HEARTHNET_EMERGENCY_PROBE_TIMEOUT_SECONDS", "1"),
            ("HEARTHNET_EMERGENCY_OFFLINE_AFTER_SECONDS", "2"),
            ("HEARTHNET_EMERGENCY_ONLINE_AFTER_SECONDS", "1"),
        ]
        .map(|(k, v)| (k, v.to_owned()))
        .into()
    }
}

/// `env` as the `(name, value)` pairs a node is started with.
pub fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
