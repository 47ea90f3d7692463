//! A sandbox per test: its own HOME (so its own XDG directories), a clean
//! environment, and helpers to run the real `hearthnet` binary in it.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod community;
pub mod models;
pub mod needs;
pub mod netns;
pub mod probes;
pub mod python;

pub struct Sandbox {
    home_dir: PathBuf,
    /// Run every command inside this network namespace.
    netns: Option<String>,
    /// Owns (and finally removes) the directory, unless borrowed via `at`.
    _temp: Option<tempfile::TempDir>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        Self {
            home_dir: temp.path().to_path_buf(),
            netns: None,
            _temp: Some(temp),
        }
    }

    /// A sandbox whose commands (and node) run inside network namespace `ns`.
    pub fn in_netns(ns: &str) -> Self {
        Self {
            netns: Some(ns.to_owned()),
            ..Self::new()
        }
    }

    /// Another handle on an existing sandbox's HOME, which it does not own.
    pub fn at(home: &Path) -> Self {
        Self {
            home_dir: home.to_path_buf(),
            netns: None,
            _temp: None,
        }
    }

    pub fn home(&self) -> &Path {
        &self.home_dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home().join(".local/share/hearthnet")
    }

    pub fn config_file(&self) -> PathBuf {
        self.home().join(".config/hearthnet/config.toml")
    }

    pub fn key_file(&self) -> PathBuf {
        self.data_dir().join("keys/device.ed25519")
    }

    /// A `hearthnet` command in this sandbox, with nothing inherited that
    /// could point it at the real home or change its behaviour.
    pub fn command(&self, args: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_hearthnet");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            // `init` finds no models installed for Python unless a test
            // says where.
            .env("HEARTHNET_MODELS_PATH", "");
        cmd
    }

    /// Run to completion with `stdin` as input (None: stdin closed).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearthnet");
        {
            let mut input = child.stdin.take().expect("stdin");
            if let Some(text) = stdin {
                let _ = input.write_all(text.as_bytes());
            }
        }
        Run::from(wait_bounded(child, Duration::from_secs(60)))
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied()).stdin(Stdio::null());
        Run::from(cmd.output().expect("run hearthnet"))
    }

    pub fn init_non_interactive(&self, name: &str) -> Run {
        let run = self.run(&["init", "--non-interactive", "--name", name], None);
        assert_eq!(run.code, 0, "{run:?}");
        run
    }
}

/// Wait for `child`, killing it if it outlives `limit`.
/// A peer client speaking TLS as `key`, accepting any server (the tests
/// look at what the server does).
pub fn peer_client(
    key: &hearthnet_base::DeviceKey,
    community: hearthnet_base::CommunityId,
) -> hearthnet_transport::peer_client::PeerClient {
    let identity =
        std::sync::Arc::new(hearthnet_transport::tls::TlsIdentity::new(key).expect("TLS identity"));
    hearthnet_transport::peer_client::PeerClient::new(
        key.clone(),
        community,
        identity,
        std::sync::Arc::new(|_| true),
        false,
    )
}

/// A single-threaded runtime for a test's own async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

/// Poll `done` until it holds; fails naming `what` after `limit`. Returns
/// how long it took. Tests wait for what they check, never a fixed time.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    child.wait_with_output().expect("collect output")
}

/// A stand-in node for `sb`: its runtime file points the CLI at a
/// listener that answers one request with the JSON `answer(addr)` gives;
/// the thread returns that request's head.
pub fn stand_in_node(
    sb: &Sandbox,
    answer: impl FnOnce(std::net::SocketAddr) -> serde_json::Value + Send + 'static,
) -> std::thread::JoinHandle<String> {
    let (addr, server) = stand_in(answer);
    std::fs::create_dir_all(sb.data_dir().join("run")).expect("run dir");
    std::fs::write(
        sb.data_dir().join("run/node.json"),
        serde_json::json!({"pid": 1, "api": addr, "peer": null, "node_id": "x"}).to_string(),
    )
    .expect("runtime file");
    server
}

/// A plain-HTTP listener on loopback that answers one request with the
/// JSON `answer(addr)` gives, after reading the request's body; the
/// thread returns that request's head.
pub fn stand_in(
    answer: impl FnOnce(std::net::SocketAddr) -> serde_json::Value + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let addr = listener.local_addr().expect("its address");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the CLI connects");
        let mut reader = std::io::BufReader::new(conn.try_clone().expect("socket"));
        let mut request = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a request line");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            request.push_str(&line);
        }
        // Read the body too: closing a socket with unread bytes resets the
        // connection, which could cut off the answer.
        let length = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the request body");
        let answer = answer(addr).to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )
        .expect("the answer is sent");
        request
    });
    (addr, server)
}

/// The QR payload of a PNG written by `hearthnet`.
pub fn decode_qr_png(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("png readable");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {}", path.display());
    grids[0].decode().expect("QR decodes").1
}

/// The first line of `text` starting with `prefix`.
pub fn line_starting(text: &str, prefix: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix} in:\n{text}"))
        .to_owned()
}

/// A `hearthnet run` process in a sandbox, stopped (SIGTERM, then SIGKILL)
/// when dropped.
/// Read `pipe` to its end on a thread, keeping its last 64 KiB: a node
/// whose stderr nobody read would stall once it logged a pipe's worth
/// (its writer blocks), so every node's stderr is drained.
fn drain_keeping_the_tail(mut pipe: std::process::ChildStderr) -> std::thread::JoinHandle<Vec<u8>> {
    const KEEP: usize = 64 * 1024;
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > KEEP {
                tail.drain(..tail.len() - KEEP);
            }
        }
        tail
    })
}

pub struct RunningNode {
    pub child: Option<Child>,
    pub api: std::net::SocketAddr,
}

impl Sandbox {
    /// Start the node on a free local API port and wait until `/ready`.
    pub fn start_node(&self, extra_env: &[(&str, &str)]) -> RunningNode {
        self.start_node_from(self.command(&["run", "--no-ui"]), extra_env)
    }

    /// Start the node with its web UI on a free port; the UI's address is
    /// in the runtime file ([`Self::ui_addr`]), its first login link the
    /// first line of stdout ([`RunningNode::first_ui_link`]).
    pub fn start_node_with_ui(&self, extra_env: &[(&str, &str)]) -> RunningNode {
        let mut env = vec![("HEARTHNET_UI_PORT", "0")];
        env.extend_from_slice(extra_env);
        self.start_node_from(self.command(&["run"]), &env)
    }

    /// The running node's web UI address, from its runtime file.
    pub fn ui_addr(&self) -> std::net::SocketAddr {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.data_dir().join("run/node.json")).expect("node.json"),
        )
        .expect("node.json is JSON");
        info["ui"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("the node serves a UI")
    }

    /// Start the node with its blob store on a fresh tmpfs of `size`
    /// (e.g. `2m`), mounted in a private mount namespace only it sees.
    /// `None` where mounting is not allowed (see [`needs::cannot_run_here`]).
    pub fn start_node_with_small_disk(
        &self,
        size: &str,
        extra_env: &[(&str, &str)],
    ) -> Option<RunningNode> {
        let blobs = self.data_dir().join("blobs");
        std::fs::create_dir_all(&blobs).expect("blobs dir");
        needs::program("unshare", "util-linux");
        let probe = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .output()
            .expect("run unshare");
        if !probe.status.success() {
            needs::cannot_run_here(&format!(
                "no private mount namespace can be made here (needs CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            ));
            return None;
        }
        let script = format!(
            "mount -t tmpfs -o size={size} tmpfs '{}' && exec '{}' run --no-ui",
            blobs.display(),
            env!("CARGO_BIN_EXE_hearthnet")
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1");
        Some(self.start_node_from(cmd, extra_env))
    }

    /// Start `hearthnet run` with its web UI on a device that has a key
    /// but no community: it serves the join page, whose login link is the
    /// first line of stdout ([`RunningNode::first_ui_link`]); no runtime
    /// file until it has joined.
    pub fn start_joining(&self) -> RunningNode {
        let (node, _stderr) =
            self.spawn_node(self.command(&["run"]), &[("HEARTHNET_UI_PORT", "0")]);
        node
    }

    /// Spawn a node as [`Self::start_node_from`] does, without waiting:
    /// the node and the thread draining its stderr.
    fn spawn_node(
        &self,
        mut cmd: Command,
        extra_env: &[(&str, &str)],
    ) -> (RunningNode, std::thread::JoinHandle<Vec<u8>>) {
        let child = cmd
            .env("HEARTHNET_TRANSPORT_API_PORT", "0")
            .env("HEARTHNET_TRANSPORT_PEER_PORT", "0")
            .env("HEARTHNET_TRANSPORT_PEER_HOST", "127.0.0.1")
            .env("HEARTHNET_EMERGENCY_ENABLED", "false")
            // Tests and benchmarks never announce on the host's real network;
            // discovery is tested inside network namespaces (tests/discovery.rs).
            .env("HEARTHNET_DISCOVERY_MDNS_ENABLED", "false")
            .env("HEARTHNET_DISCOVERY_UDP_ENABLED", "false")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            // Only the UI's login link is printed there.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearthnet run");
        let mut child = child;
        let stderr = drain_keeping_the_tail(child.stderr.take().expect("piped stderr"));
        let node = RunningNode {
            child: Some(child),
            api: "127.0.0.1:1".parse().unwrap(),
        };
        (node, stderr)
    }

    fn start_node_from(&self, cmd: Command, extra_env: &[(&str, &str)]) -> RunningNode {
        let runtime_file = self.data_dir().join("run/node.json");
        let _ = std::fs::remove_file(&runtime_file);
        let (mut node, stderr) = self.spawn_node(cmd, extra_env);
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node did not become ready"
            );
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let tail = stderr.join().unwrap_or_default();
                panic!(
                    "node exited early with {status}: {}",
                    String::from_utf8_lossy(&tail)
                );
            }
            if self.netns.is_some() {
                // The API listens on the namespace's loopback: ask from there.
                if self.run(&["status", "--json"], None).code == 0 {
                    return node;
                }
            } else if let Ok(text) = std::fs::read_to_string(&runtime_file)
                && let Ok(info) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(api) = info["api"].as_str().and_then(|a| a.parse().ok())
            {
                node.api = api;
                if let Ok(resp) = ureq::get(format!("http://{api}/ready")).call()
                    && resp.status() == 200
                {
                    return node;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The running node's peer (TLS) address, from its runtime file.
    pub fn peer_addr(&self) -> String {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.data_dir().join("run/node.json")).expect("node.json"),
        )
        .expect("node.json is JSON");
        info["peer"].as_str().expect("a peer address").to_owned()
    }

    /// This sandbox's device key.
    pub fn key(&self) -> hearthnet_base::DeviceKey {
        hearthnet_identity::KeyStore::new(self.data_dir().join("keys"))
            .load()
            .expect("device key")
    }

    /// `status --json`, as the node's status document (`None` when the
    /// node does not answer).
    pub fn status(&self) -> Option<hearthnet_wire::local::Status> {
        let run = self.run(&["status", "--json"], None);
        (run.code == 0).then(|| serde_json::from_str(&run.stdout).expect("a status document"))
    }

    /// Events in the running node's log, from `status --json`.
    pub fn event_count(&self) -> u64 {
        self.status().expect("the node answers").events.count
    }

    /// A signed client of this sandbox's node, as the CLI builds it.
    pub fn client(&self) -> hearthnet_client::LocalClient {
        let env = hearthnet_config::Env::from_pairs([("HOME", self.home().to_str().unwrap())]);
        let loaded = hearthnet_config::load(None, &env).expect("config loads");
        hearthnet_client::LocalClient::for_config(&loaded).expect("client")
    }
}

impl RunningNode {
    /// The login link `hearthnet run` printed (its first line of stdout).
    pub fn first_ui_link(&mut self) -> String {
        use std::io::BufRead;
        let stdout = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("the node's stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("a line on stdout");
        assert!(line.starts_with("http://"), "a link, got {line:?}");
        line.trim().to_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM, and the exit status with how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let start = Instant::now();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Sandbox {
    /// `init` on a fresh device: it shows its identity card and stops at
    /// the invite prompt; returns the card.
    pub fn identity_card(&self, name: &str) -> String {
        // The headless way in: nothing read from stdin.
        let shown = self.run(&["init", "--join", "--name", name], None);
        assert_eq!(shown.code, 0, "{shown:?}");
        let card = line_starting(&shown.stdout, "hearthnet-id://");
        assert_eq!(decode_qr_png(&self.data_dir().join("node-id.png")), card);
        card
    }
}

impl Sandbox {
    /// Append `n` events through the running node (diagnostic capability):
    /// history for others to sync.
    pub fn write_history(&self, n: usize) {
        for i in 0..n {
            let body = serde_json::json!({"input": {"event_type": "file.cid.unpinned",
                "data": {"cid": hearthnet_base::Blake3Id::of(format!("history {i}").as_bytes())}}});
            let r = self.run(
                &[
                    "call",
                    "experimental.event.append",
                    "--body",
                    &body.to_string(),
                ],
                None,
            );
            assert_eq!(r.code, 0, "{r:?}");
        }
    }

    /// Peers in `status --json` (0 when the node does not answer).
    pub fn peer_count(&self) -> usize {
        self.status().map_or(0, |s| s.peers.len())
    }

    /// Wait until the node has verified `n` peers and their offers are on
    /// its bus (they reach the bus a moment after the registry), at most
    /// 20 s.
    pub fn wait_for_peers(&self, n: usize) {
        wait_until(Duration::from_secs(20), &format!("{n} peers"), || {
            self.peer_count() >= n && self.providing_peers() >= n
        });
    }

    /// How many peers have capabilities on this node's bus.
    fn providing_peers(&self) -> usize {
        let Ok(caps) = self.client().caps() else {
            return 0;
        };
        let peers: std::collections::HashSet<_> = caps
            .capabilities
            .iter()
            .filter(|c| !c.local)
            .map(|c| c.node)
            .collect();
        peers.len()
    }
}

/// `invite create` on the founder's node for `card`: the invite text and
/// the QR PNG it saved.
pub fn invite(founder: &Sandbox, card: &str, extra: &[&str]) -> (String, PathBuf) {
    let mut args = vec!["invite", "create", "--node-id", card];
    args.extend_from_slice(extra);
    let run = founder.run(&args, None);
    assert_eq!(run.code, 0, "{run:?}");
    let text = line_starting(&run.stdout, "hearthnet://v1/");
    let png = std::fs::read_dir(founder.data_dir())
        .expect("data dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("invite-"))
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("an invite PNG");
    (text, png)
}
