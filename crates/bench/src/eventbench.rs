//! `hearthnet-eventbench HEARTHNET_BINARY`: the event log's figures.
//!
//! 1. Append rate: signed, validated events through the log, beside a bare
//!    SQLite insert loop with the same durability settings (WAL,
//!    `synchronous = FULL`, one transaction per row), same run.
//! 2. Sync: node A holds 100,000 events; node B 99,000 of them plus 1,000
//!    of its own. Real `hearthnet run` processes over loopback TLS, one
//!    round started on B, by reconciliation (v2) and by the v1 fallback,
//!    each on fresh copies: time to converge and HTTP body bytes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, Timestamp};
use hearthnet_events::{EventLog, Limits, LogPaths};
use hearthnet_identity::{CommunityPolicy, Genesis, KeyStore};
use serde_json::{Value, json};

const APPENDS: usize = 2000;
const TOTAL: u64 = 100_000;
const OWN: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    let binary = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: hearthnet-eventbench PATH_TO_HEARTHNET")?,
    );
    append_rate()?;
    sync_figures(&binary)?;
    Ok(())
}

fn post(
    key: &DeviceKey,
    community: CommunityId,
    lamport: u64,
    title: &str,
) -> anyhow::Result<Value> {
    Ok(Event::create(
        NewEvent {
            community_id: community,
            lamport,
            event_type: "market.post.created",
            data: json!({"author_prev": null, "client_id": title, "category": "offer", "title": title, "body": "Wasserkanister, 20 l, abzugeben", "ttl_seconds": 86400}),
        },
        key,
    )?
    .to_value())
}

fn append_rate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = DeviceKey::generate();
    let genesis = Genesis::create(&key, "bench", CommunityPolicy::default())?;
    let community = genesis.manifest.community_id;
    let log = EventLog::open(
        LogPaths::in_state_dir(dir.path()),
        community,
        Limits::default(),
        Some(genesis.created_event.to_value()),
        None,
    )?;
    let t = Instant::now();
    for i in 0..APPENDS {
        let data = json!({"client_id": i.to_string(), "category": "offer", "title": "t", "body": "Wasserkanister, 20 l, abzugeben", "ttl_seconds": 86400});
        log.append_local_blocking("market.post.created", data, &key)?;
    }
    let signed = APPENDS as f64 / t.elapsed().as_secs_f64();

    let conn = rusqlite::Connection::open(dir.path().join("bare.sqlite"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, lamport INTEGER, body BLOB);
         CREATE INDEX t_l ON t(lamport, id);",
    )?;
    let body = serde_json::to_vec(&post(&key, community, 1, "t")?)?;
    let t = Instant::now();
    for i in 0..APPENDS {
        conn.execute(
            "INSERT INTO t (id, lamport, body) VALUES (?1, ?2, ?3)",
            rusqlite::params![i.to_string(), i as i64, body],
        )?;
    }
    let bare = APPENDS as f64 / t.elapsed().as_secs_f64();
    println!("== append rate ({APPENDS} appends, WAL + synchronous=FULL, one transaction each) ==");
    println!("signed, validated events through the log: {signed:>8.0} /s");
    println!("bare SQLite inserts, same settings:       {bare:>8.0} /s");
    println!("ratio: {:.0} %", signed / bare * 100.0);
    Ok(())
}

struct Home {
    dir: PathBuf,
}

impl Home {
    fn data(&self) -> PathBuf {
        self.dir.join(".local/share/hearthnet")
    }
    fn state(&self, community: CommunityId) -> PathBuf {
        self.data()
            .join("communities")
            .join(hearthnet_config::community_dir_name(&community))
    }
    fn cmd(&self, binary: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(binary);
        c.args(args)
            .env_clear()
            .env("HOME", &self.dir)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HEARTHNET_TRANSPORT_API_PORT", "0")
            .env("HEARTHNET_TRANSPORT_PEER_PORT", "0")
            .env("HEARTHNET_TRANSPORT_PEER_HOST", "127.0.0.1")
            .env("HEARTHNET_EMERGENCY_ENABLED", "false")
            // Tests and benchmarks never announce on the host's real network;
            // discovery is tested inside network namespaces (tests/discovery.rs).
            .env("HEARTHNET_DISCOVERY_MDNS_ENABLED", "false")
            .env("HEARTHNET_EMERGENCY_ENABLED", "false")
            .env("HEARTHNET_DISCOVERY_UDP_ENABLED", "false")
            .env("HEARTHNET_OBSERVABILITY_LOG_LEVEL", "warn");
        c
    }
    fn start(&self, binary: &Path) -> anyhow::Result<(Child, String)> {
        let info = self.data().join("run/node.json");
        let _ = std::fs::remove_file(&info);
        let child = self
            .cmd(binary, &["run", "--no-ui"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(v) = std::fs::read(&info).map(|b| serde_json::from_slice::<Value>(&b))
                && let Ok(v) = v
                && let Some(peer) = v["peer"].as_str()
            {
                return Ok((child, peer.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("node did not start")
    }
    fn count(&self, binary: &Path) -> anyhow::Result<u64> {
        let out = self.cmd(binary, &["status", "--json"]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["events"]["count"]
            .as_u64()
            .ok_or_else(|| anyhow!("no count in {v}"))
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("cp failed");
    }
    Ok(())
}

fn sync_figures(binary: &Path) -> anyhow::Result<()> {
    println!(
        "\n== sync: A holds {TOTAL} events, B {} of them plus {OWN} of its own ==",
        TOTAL - OWN
    );
    let root = tempfile::tempdir()?;
    let (a, b) = (
        Home {
            dir: root.path().join("a"),
        },
        Home {
            dir: root.path().join("b"),
        },
    );
    let founder = DeviceKey::generate();
    let genesis = Genesis::create(&founder, "bench", CommunityPolicy::default())?;
    let community = genesis.manifest.community_id;
    let bkey = DeviceKey::generate();
    for (home, key) in [(&a, &founder), (&b, &bkey)] {
        KeyStore::new(home.data().join("keys")).create(key)?;
        genesis.write_to(&home.state(community))?;
        let config = home.dir.join(".config/hearthnet/config.toml");
        std::fs::create_dir_all(config.parent().context("config dir")?)?;
        std::fs::write(
            config,
            format!("[community]\ncommunity_id = \"{}\"\n", community.full()),
        )?;
    }
    let t = Instant::now();
    let invite = Event::create(
        NewEvent {
            community_id: community,
            lamport: 1,
            event_type: "community.member.invited",
            data: json!({"author_prev": null, "invitee_node_id": bkey.node_id(), "initial_level": "member", "expires_at": Timestamp::now().plus_seconds(3600)}),
        },
        &founder,
    )?;
    let joined = Event::create(
        NewEvent {
            community_id: community,
            lamport: 2,
            event_type: "community.member.joined",
            data: json!({"author_prev": null, "invite_event_id": invite.event_id, "node_manifest": {}}),
        },
        &bkey,
    )?;
    let mut common = vec![invite.to_value(), joined.to_value()];
    for i in 0..(TOTAL - OWN - 2 - 1) {
        common.push(post(&founder, community, 3 + i, &format!("c{i}"))?);
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for i in 0..OWN {
        // Written while apart: the same Lamport values on both sides.
        only_a.push(post(&founder, community, TOTAL + i, &format!("a{i}"))?);
        only_b.push(post(&bkey, community, TOTAL + i, &format!("b{i}"))?);
    }
    for (home, own) in [(&a, only_a), (&b, only_b)] {
        let log = EventLog::open(
            LogPaths::in_state_dir(&home.state(community)),
            community,
            Limits::default(),
            Some(genesis.created_event.to_value()),
            None,
        )?;
        for chunk in common.chunks(5000) {
            log.append_received_blocking(chunk.to_vec())?;
        }
        log.append_received_blocking(own)?;
        println!(
            "{}: {} events",
            if home.dir.ends_with("a") { "A" } else { "B" },
            log.view().count
        );
    }
    println!("(set-up: {:.1} s)", t.elapsed().as_secs_f64());

    for protocol in ["v2", "v1"] {
        let (ac, bc) = (
            Home {
                dir: root.path().join(format!("a-{protocol}")),
            },
            Home {
                dir: root.path().join(format!("b-{protocol}")),
            },
        );
        copy_dir(&a.dir, &ac.dir)?;
        copy_dir(&b.dir, &bc.dir)?;
        let (mut na, pa) = ac.start(binary)?;
        let (mut nb, pb) = bc.start(binary)?;
        let t = Instant::now();
        let mut rounds = Vec::new();
        // v2 converges in one round started by B; v1 only pushes, so both
        // sides push once.
        let plan: Vec<(&Home, &str)> = if protocol == "v2" {
            vec![(&bc, &pa)]
        } else {
            vec![(&bc, &pa), (&ac, &pb)]
        };
        for (home, peer) in plan {
            let out = home
                .cmd(
                    binary,
                    &["sync", "--peer", peer, "--protocol", protocol, "--json"],
                )
                .output()?;
            let v: Value = serde_json::from_slice(&out.stdout)
                .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
            rounds.push(v[0].clone());
        }
        let elapsed = t.elapsed();
        let (ca, cb) = (ac.count(binary)?, bc.count(binary)?);
        let _ = (na.kill(), nb.kill(), na.wait(), nb.wait());
        let sum = |k: &str| {
            rounds
                .iter()
                .map(|r| r[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let all_ids = 2 * TOTAL * 16;
        println!(
            "{protocol}: converged={} in {:.2} s; events out {} in {}; body bytes {} ; reconciliation bytes {} ({:.2} % of exchanging all {TOTAL}+{TOTAL} 16-byte ids = {all_ids} bytes)",
            ca == cb && ca == TOTAL + OWN,
            elapsed.as_secs_f64(),
            sum("events_out"),
            sum("events_in"),
            sum("bytes_sent") + sum("bytes_received"),
            sum("reconcile_bytes"),
            sum("reconcile_bytes") as f64 / all_ids as f64 * 100.0,
        );
    }
    Ok(())
}
