//! Hardware facts (for the node manifest's `hardware` block) and the
//! profile they suggest, with the reasons said out loud.
//!
//! Facts come from Linux's `/proc` and `/sys`; anything unreadable counts as
//! absent rather than failing, since a profile is only a suggestion.

use std::fs;
use std::path::Path;

use hearthnet_base::Profile;

const GIB: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HardwareFacts {
    pub cpu_cores: u32,
    pub ram_bytes: u64,
    /// Discrete GPUs usable for inference (NVIDIA, AMD), by name.
    pub gpus: Vec<String>,
    /// Video memory of those GPUs where the driver reports it.
    pub vram_bytes: u64,
    pub on_battery_hardware: bool,
    /// The device-tree model of single-board computers ("Raspberry Pi 4").
    pub board_model: Option<String>,
    pub disk_free_bytes: u64,
}

/// A profile and the facts that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChoice {
    pub profile: Profile,
    pub reasons: Vec<String>,
}

impl HardwareFacts {
    /// Read the facts of this machine; `data_dir` (or its nearest existing
    /// ancestor) is where free disk space is measured.
    pub fn detect(data_dir: &Path) -> Self {
        Self::detect_under(Path::new("/"), data_dir)
    }

    /// Same as [`detect`](Self::detect) with `/proc` and `/sys` read below
    /// `root`, so tests can supply a fake machine.
    pub fn detect_under(root: &Path, data_dir: &Path) -> Self {
        let read = |p: &str| fs::read_to_string(root.join(p)).ok();
        let ram_bytes = read("proc/meminfo")
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        let cpu_cores = read("proc/cpuinfo")
            .map(|c| c.lines().filter(|l| l.starts_with("processor")).count() as u32)
            .filter(|n| *n > 0)
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u32)
            })
            .unwrap_or(1);
        let (gpus, vram_bytes) = detect_gpus(root);
        let on_battery_hardware = fs::read_dir(root.join("sys/class/power_supply"))
            .map(|entries| {
                entries.flatten().any(|e| {
                    fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "Battery")
                })
            })
            .unwrap_or(false);
        let board_model = read("proc/device-tree/model")
            .map(|m| m.trim_end_matches('\0').trim().to_owned())
            .filter(|m| !m.is_empty());
        Self {
            cpu_cores,
            ram_bytes,
            gpus,
            vram_bytes,
            on_battery_hardware,
            board_model,
            disk_free_bytes: free_space(data_dir).unwrap_or(0),
        }
    }

    /// The profile these facts suggest. Bridge is never suggested: it is a
    /// role chosen on purpose, not a kind of hardware.
    pub fn suggest_profile(&self) -> ProfileChoice {
        let ram_gib = self.ram_bytes as f64 / GIB as f64;
        let mut reasons = vec![format!(
            "{} CPU cores, {:.1} GiB RAM{}",
            self.cpu_cores,
            ram_gib,
            if self.on_battery_hardware {
                ", has a battery"
            } else {
                ", no battery"
            }
        )];
        let profile = if let Some(board) = &self.board_model {
            reasons.push(format!("single-board computer: {board}"));
            Profile::Spark
        } else if ram_gib < 4.0 {
            reasons.push("less than 4 GiB RAM: too little to serve models".into());
            Profile::Spark
        } else if !self.gpus.is_empty() && !self.on_battery_hardware {
            reasons.push(format!(
                "discrete GPU on mains power: {}",
                self.gpus.join(", ")
            ));
            Profile::Anchor
        } else if ram_gib >= 31.0 && self.cpu_cores >= 8 && !self.on_battery_hardware {
            reasons.push("at least 32 GiB RAM and 8 cores on mains power".into());
            Profile::Anchor
        } else if self.on_battery_hardware {
            reasons.push("runs on battery: a laptop, not always on".into());
            Profile::Hearth
        } else {
            reasons.push("enough to run some services, no GPU".into());
            Profile::Hearth
        };
        ProfileChoice { profile, reasons }
    }
}

fn detect_gpus(root: &Path) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut vram = 0;
    if let Ok(entries) = fs::read_dir(root.join("proc/driver/nvidia/gpus")) {
        for entry in entries.flatten() {
            let model = fs::read_to_string(entry.path().join("information"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_owned()))
                })
                .unwrap_or_else(|| "NVIDIA GPU".into());
            names.push(model);
        }
    }
    if let Ok(entries) = fs::read_dir(root.join("sys/class/drm")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("card") || name.contains('-') {
                continue;
            }
            let device = entry.path().join("device");
            let vendor = fs::read_to_string(device.join("vendor")).unwrap_or_default();
            match vendor.trim() {
                "0x1002" => {
                    names.push("AMD GPU".into());
                    vram += fs::read_to_string(device.join("mem_info_vram_total"))
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                }
                "0x10de" if names.is_empty() => names.push("NVIDIA GPU".into()),
                _ => {}
            }
        }
    }
    (names, vram)
}

/// Free bytes for an unprivileged user on the filesystem holding `path`
/// (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// This machine's host name, for a default display name.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_owned();
    if name.is_empty() {
        "hearthnet-node".into()
    } else {
        name
    }
}

/// Interface names of container and VM bridges: addresses there are not
/// where neighbours can reach us.
const VIRTUAL_INTERFACE_PREFIXES: [&str; 7] =
    ["docker", "br-", "veth", "virbr", "cni", "flannel", "podman"];

/// A network interface neighbours can reach us on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanInterface {
    pub name: String,
    pub addr: std::net::Ipv4Addr,
    /// The subnet's broadcast address, where the interface has one.
    pub broadcast: Option<std::net::Ipv4Addr>,
    pub index: Option<u32>,
}

/// The interfaces to announce and listen on (see [`is_lan_interface`]).
pub fn lan_interfaces(configured: &[String]) -> Vec<LanInterface> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    interfaces
        .into_iter()
        .filter_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(v4) if is_lan_interface(&i.name, i.ip(), configured) => {
                Some(LanInterface {
                    addr: v4.ip,
                    broadcast: v4.broadcast,
                    name: i.name,
                    index: i.index,
                })
            }
            _ => None,
        })
        .collect()
}

/// With `configured` empty: any IPv4 interface except loopback,
/// link-local addresses and container or VM bridges (whose neighbours are
/// not the household's). Otherwise exactly the named interfaces, loopback
/// included if named.
pub fn is_lan_interface(name: &str, ip: std::net::IpAddr, configured: &[String]) -> bool {
    let std::net::IpAddr::V4(addr) = ip else {
        return false;
    };
    if !configured.is_empty() {
        return configured.iter().any(|c| c == name);
    }
    !addr.is_loopback()
        && !addr.is_link_local()
        && !VIRTUAL_INTERFACE_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
}

/// IPv4 addresses of this machine that neighbours on the LAN can reach
/// (see [`lan_interfaces`]).
pub fn lan_ipv4_addresses() -> Vec<std::net::Ipv4Addr> {
    lan_interfaces(&[]).into_iter().map(|i| i.addr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_machine(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = root.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        root
    }

    const CPU4: &str = "processor\t: 0\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n";

    #[test]
    fn raspberry_pi_is_a_spark() {
        let root = fake_machine(&[
            ("proc/meminfo", "MemTotal:        8000000 kB\n"),
            ("proc/cpuinfo", CPU4),
            ("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"),
        ]);
        let facts = HardwareFacts::detect_under(root.path(), root.path());
        let choice = facts.suggest_profile();
        assert_eq!(choice.profile, Profile::Spark);
        assert!(choice.reasons.iter().any(|r| r.contains("Raspberry Pi 4")));
    }

    #[test]
    fn nvidia_desktop_is_an_anchor_and_laptop_a_hearth() {
        let desktop = fake_machine(&[
            ("proc/meminfo", "MemTotal:       65000000 kB\n"),
            ("proc/cpuinfo", CPU4),
            (
                "proc/driver/nvidia/gpus/0000:01:00.0/information",
                "Model: \t NVIDIA GeForce RTX 4090\n",
            ),
        ]);
        let facts = HardwareFacts::detect_under(desktop.path(), desktop.path());
        assert_eq!(facts.gpus, vec!["NVIDIA GeForce RTX 4090".to_owned()]);
        assert_eq!(facts.cpu_cores, 4);
        let choice = facts.suggest_profile();
        assert_eq!(choice.profile, Profile::Anchor);
        assert!(choice.reasons.iter().any(|r| r.contains("RTX 4090")));

        let laptop = fake_machine(&[
            ("proc/meminfo", "MemTotal:       16000000 kB\n"),
            ("proc/cpuinfo", CPU4),
            ("sys/class/power_supply/BAT0/type", "Battery\n"),
        ]);
        let choice = HardwareFacts::detect_under(laptop.path(), laptop.path()).suggest_profile();
        assert_eq!(choice.profile, Profile::Hearth);
        assert!(choice.reasons.iter().any(|r| r.contains("battery")));
    }

    #[test]
    fn free_space_of_a_missing_dir_uses_its_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(free_space(&tmp.path().join("not/yet/there")).unwrap() > 0);
    }
}
