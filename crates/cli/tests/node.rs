//! `hearthnet run` and the commands that talk to it, against real
//! processes on loopback (each node on its own free port and HOME).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Sandbox, wait_bounded};
use hearthnet_base::request::SignedHeaders;
use hearthnet_base::{DeviceKey, ErrorCode, Timestamp};
use hearthnet_client::{CallReply, ClientError};
use serde_json::{Value, json};

fn node_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.init_non_interactive("node");
    sb
}

fn echo(text: &str) -> Value {
    json!({"params": {}, "input": {"text": text}})
}

fn wire_code(r: Result<CallReply, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Wire(w)) => w.code,
        Err(other) => panic!("expected a wire error, got {other}"),
        Ok(_) => panic!("expected a wire error, got an answer"),
    }
}

#[test]
fn test_full_init_then_run_then_status() {
    let sb = node_sandbox();
    let mut node = sb.start_node(&[]);
    let run = sb.run(&["status"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("node's community"), "{run:?}");
    assert!(run.stdout.contains("experimental.echo@1.0"), "{run:?}");
    let status = sb.status().expect("the node answers");
    assert_eq!(status.community.members, 1);
    assert_eq!(status.api, node.api);
    assert_eq!(status.node.display_name, "node");
    assert_eq!(status.node.id, sb.key().node_id());

    let (code, took) = node.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(!sb.data_dir().join("run/node.json").exists());
    let after = sb.run(&["status"], None);
    assert_eq!(after.code, 3, "{after:?}");
}

/// A data directory left 0755 with a 0644 database by an older version is
/// private (0700/0600) once the node has started.
#[test]
fn an_old_world_readable_data_dir_is_made_private_on_start() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let sb = node_sandbox();
    let data = sb.data_dir();
    let state = std::fs::read_dir(data.join("communities"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let database = state.join("events.sqlite");
    set(&data, 0o755);
    set(&state, 0o755);
    if !database.exists() {
        std::fs::write(&database, b"").unwrap();
    }
    set(&database, 0o644);

    let mut node = sb.start_node(&[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&database), 0o600);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
    }
    assert_eq!(node.terminate().0, Some(0));
}

#[test]
fn status_without_a_node_exits_3() {
    let sb = node_sandbox();
    let run = sb.run(&["status"], None);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("hearthnet run"), "{run:?}");
    // Not even initialised: still "no node", with the way forward.
    let fresh = Sandbox::new();
    let run = fresh.run(&["status"], None);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("hearthnet init"), "{run:?}");
}

#[test]
fn test_status_against_mock_node_returns_table() {
    // A stand-in node answers /local/v1/status with a document built from
    // the types the node uses, so this test is about the CLI's rendering.
    let sb = node_sandbox();
    let server = common::stand_in_node(&sb, |api| {
        let mut status = hearthnet_wire::local::samples::status(api);
        status.node.short_id = "ed25519:ABCD-EFGH-IJKL-MNOP".into();
        status.community.short_id = "ed25519:QRST-UVWX-YZ23-4567".into();
        status.capabilities.names = vec!["llm.chat@1.0".into(), "embed.text@1.0".into()];
        serde_json::to_value(status).unwrap()
    });
    let run = sb.run(&["status"], None);
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /local/v1/status "), "{request}");
    assert!(
        request
            .to_lowercase()
            .contains("x-hearthnet-signature: ed25519:"),
        "signed: {request}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "node          ed25519:ABCD-EFGH-IJKL-MNOP  garage-pc (anchor)"
    );
    assert_eq!(
        lines[1],
        "community     ed25519:QRST-UVWX-YZ23-4567  \"Niederrhein\", 7 members"
    );
    assert_eq!(lines[2], "uptime        1 h 2 min");
    assert_eq!(lines[4], "capabilities  2: llm.chat@1.0, embed.text@1.0");
    assert_eq!(
        lines[5],
        "models        smollm2-135m (llm.chat, llm.complete; here and 2 neighbours)"
    );
    assert_eq!(
        lines[6],
        "internet      degraded for 42 s; unreachable: quad9.net"
    );
    assert_eq!(lines[7], "in flight     3");
    assert_eq!(
        lines[8],
        "event log     head Lamport 41, 42 events, 1.0 MiB"
    );
}

#[test]
fn a_status_missing_a_field_exits_1_naming_it() {
    let sb = node_sandbox();
    let server = common::stand_in_node(&sb, |api| {
        let mut status = serde_json::to_value(hearthnet_wire::local::samples::status(api)).unwrap();
        status["community"]
            .as_object_mut()
            .unwrap()
            .remove("members");
        status
    });
    let run = sb.run(&["status"], None);
    server.join().unwrap();
    assert_eq!(run.code, 1, "a bad answer: {run:?}");
    assert!(
        run.stderr
            .contains("the node's status: field `community.members`: missing field"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "nothing half-shown: {run:?}");
}

#[test]
fn test_call_streams_stdout_then_zero() {
    let sb = node_sandbox();
    let _node = sb.start_node(&[]);
    let body = json!({"input": {"text": "Sie ", "repeat": 4, "interval_ms": 10}}).to_string();
    let run = sb.run(
        &["call", "experimental.echo@1.0", "--stream", "--body", &body],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "Sie Sie Sie Sie \n");
    // The same from a file and from stdin, without streaming.
    let file = sb.home().join("body.json");
    std::fs::write(&file, echo("aus Datei").to_string()).unwrap();
    let run = sb.run(
        &[
            "call",
            "experimental.echo",
            "--body",
            &format!("@{}", file.display()),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let reply: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(reply["output"]["text"], "aus Datei");
    let run = sb.run(
        &["call", "experimental.echo", "--body", "-"],
        Some(&echo("über stdin").to_string()),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("über stdin"), "{run:?}");
}

#[test]
fn test_call_returns_nonzero_on_wire_error() {
    let sb = node_sandbox();
    let _node = sb.start_node(&[]);
    let call = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["call"];
        all.extend_from_slice(args);
        sb.run_with_env(&all, env)
    };

    // 2: bad_request, schema_mismatch (and bad usage before any request).
    let r = call(
        &[
            "experimental.echo",
            "--body",
            r#"{"params": [], "input": {"text": "x"}}"#,
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("bad_request"), "{r:?}");
    let r = call(
        &["experimental.echo", "--body", r#"{"input": {"repeat": 1}}"#],
        &[],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("schema_mismatch"), "{r:?}");
    assert_eq!(
        call(&["experimental.echo", "--body", "{not json"], &[]).code,
        2
    );

    // 4: a caller whose key is not a member of this community.
    let stranger = sb.home().join("stranger-keys");
    hearthnet_identity::KeyStore::new(&stranger)
        .load_or_create()
        .unwrap();
    let r = call(
        &["experimental.echo", "--body", &echo("x").to_string()],
        &[("HEARTHNET_IDENTITY_KEYS_DIR", stranger.to_str().unwrap())],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("unauthorized"), "{r:?}");

    // 6: nobody offers it.
    let r = call(&["llm.chat@1.0", "--body", "{}"], &[]);
    assert_eq!(r.code, 6, "{r:?}");
    let r = call(
        &["experimental.echo@2.0", "--body", &echo("x").to_string()],
        &[],
    );
    assert_eq!(r.code, 6, "{r:?}");

    // 7: the deadline passes before the provider finishes.
    let slow = json!({"input": {"text": "x", "repeat": 2, "interval_ms": 2000}}).to_string();
    let r = call(
        &["experimental.echo", "--timeout", "0.3", "--body", &slow],
        &[],
    );
    assert_eq!(r.code, 7, "{r:?}");
    assert!(r.stderr.contains("timeout"), "{r:?}");

    // 5: every slot of the provider busy.
    let client = std::sync::Arc::new(sb.client());
    let long = json!({"input": {"text": "x", "repeat": 100, "interval_ms": 100}});
    let mut held = Vec::new();
    for _ in 0..64 {
        match client
            .call("experimental.echo", "1.0", &long, true, None)
            .unwrap()
        {
            CallReply::Stream(mut frames) => {
                frames.next().unwrap().unwrap();
                held.push(frames);
            }
            CallReply::Json(v) => panic!("expected a stream: {v}"),
        }
    }
    let r = call(
        &["experimental.echo", "--body", &echo("x").to_string()],
        &[],
    );
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("capacity_exceeded"), "{r:?}");
    drop(held);
}

#[test]
fn refused_requests_get_the_contract_codes() {
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let client = sb.client();
    let key = sb.key();
    let community = hearthnet_base::CommunityId::of_root(key.node_id());
    let body = echo("x");

    // Unsigned.
    let resp = ureq::post(format!("http://{}/bus/v1/call", node.api))
        .config()
        .http_status_as_error(false)
        .build()
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Signed over another body.
    let headers =
        SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &echo("y")).unwrap();
    assert_eq!(
        wire_code(client.send_call(&headers, &body, false, None)),
        ErrorCode::InvalidSignature
    );

    // Signed by a stranger.
    let stranger = DeviceKey::generate();
    assert_eq!(
        wire_code(client.call_signed_by(&stranger, "experimental.echo", "1.0", &body, false, None)),
        ErrorCode::Unauthorized
    );

    // Replayed: the first use works, the second is refused.
    let headers = SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &body).unwrap();
    assert!(client.send_call(&headers, &body, false, None).is_ok());
    assert_eq!(
        wire_code(client.send_call(&headers, &body, false, None)),
        ErrorCode::Unauthorized
    );

    // Captured long ago: outside the timestamp window.
    let old = Timestamp::now().plus_seconds(-600);
    let headers =
        SignedHeaders::sign_at(&key, community, "experimental.echo", "1.0", &body, old).unwrap();
    assert_eq!(
        wire_code(client.send_call(&headers, &body, false, None)),
        ErrorCode::Expired
    );

    // Metrics are for members, in the Prometheus text format.
    let m = client.get_text("/metrics").unwrap();
    assert!(
        m.contains("hearthnet_requests_total{capability=\"experimental.echo\",result=\"ok\"}"),
        "{m}"
    );
    assert!(
        m.contains("hearthnet_signature_failures_total{reason=\"mismatch\"} 1"),
        "{m}"
    );

    // Local introspection answers only to the node's own key; /health needs nothing.
    assert_eq!(client.health().unwrap().node_id, key.node_id());
    let resp = ureq::get(format!("http://{}/local/v1/status", node.api))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[test]
fn bad_input_never_wedges_the_node() {
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let client = sb.client();
    let raw_post = |body: &[u8]| {
        let mut conn = TcpStream::connect(node.api).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(conn, "POST /bus/v1/call HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).unwrap();
        let _ = conn.write_all(body);
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply
    };
    for body in [&b"{not json"[..], b"[1,2,3]"] {
        assert!(
            raw_post(body).starts_with("HTTP/1.1 401"),
            "unsigned, whatever the body: refused before it is read"
        );
    }
    let huge = vec![b'x'; 17 * 1024 * 1024];
    let reply = raw_post(&huge);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
        "{}",
        &reply[..reply.len().min(200)]
    );

    // Wrong types inside a signed body.
    let typed = json!({"params": [], "input": "text"});
    let r = client.call("experimental.echo", "1.0", &typed, false, None);
    assert_eq!(wire_code(r), ErrorCode::BadRequest);

    // A client that sends half a request and stalls holds only its own slot.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(node.api).unwrap();
        c.write_all(b"POST /bus/v1/call HTTP/1.1\r\nhost: localhost\r\ncontent-le")
            .unwrap();
        stalled.push(c);
    }
    let t = Instant::now();
    let reply = client
        .call("experimental.echo", "1.0", &echo("still here"), false, None)
        .unwrap();
    assert!(matches!(reply, CallReply::Json(v) if v["output"]["text"] == "still here"));
    assert!(t.elapsed() < Duration::from_secs(2));
    let (code, ready) = client.readiness().unwrap();
    assert_eq!(code, 200);
    assert_eq!(ready.state, hearthnet_wire::local::Phase::Ready);
}

#[test]
fn a_caller_that_disconnects_cancels_the_provider_within_200_ms() {
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let client = sb.client();
    let key = sb.key();
    let community = hearthnet_base::CommunityId::of_root(key.node_id());
    let body = json!({"params": {}, "input": {"text": "t", "repeat": 10000, "interval_ms": 20}});
    let headers = SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &body).unwrap();
    let payload = body.to_string();

    let started = Instant::now();
    let mut conn = TcpStream::connect(node.api).unwrap();
    let mut request = format!(
        "POST /bus/v1/call HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        payload.len()
    );
    for (name, value) in headers.to_pairs() {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut tokens = 0;
    let mut line = String::new();
    while tokens < 5 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("event: token") {
            tokens += 1;
        }
    }
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(reader);
    drop(conn);
    let connected_for = started.elapsed();

    // The call's record shows how long the provider ran.
    let mut found = None;
    common::wait_until(
        Duration::from_secs(5),
        "a trace of the cancelled call",
        || {
            found = client
                .traces(10, None)
                .unwrap()
                .traces
                .into_iter()
                .find(|t| t.trace_id == headers.request_id);
            found.is_some()
        },
    );
    let trace = found.unwrap();
    assert_eq!(trace.result, "cancelled");
    let ran_ms = trace.ms;
    let limit = connected_for.as_secs_f64() * 1000.0 + 200.0;
    eprintln!(
        "provider ran {ran_ms:.0} ms; the caller left after {:.0} ms",
        connected_for.as_secs_f64() * 1000.0
    );
    assert!(
        ran_ms <= limit,
        "provider ran {ran_ms} ms, caller left after {connected_for:?}"
    );
}

#[test]
fn sigterm_ends_streams_with_an_error_frame() {
    let sb = node_sandbox();
    let mut node = sb.start_node(&[]);
    let client = sb.client();
    let body = json!({"input": {"text": "t", "repeat": 10000, "interval_ms": 20}});
    let CallReply::Stream(mut frames) = client
        .call("experimental.echo", "1.0", &body, true, None)
        .unwrap()
    else {
        panic!("expected a stream");
    };
    frames.next().unwrap().unwrap();
    let reader = std::thread::spawn(move || frames.map(Result::unwrap).last());
    let (code, took) = node.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let last = reader.join().unwrap().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["error"], "partition");
}

#[test]
fn a_second_node_on_the_same_data_dir_or_port_fails_fast() {
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let t = Instant::now();
    let second = sb.run_with_env(
        &["run", "--no-ui"],
        &[("HEARTHNET_TRANSPORT_API_PORT", "0")],
    );
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.contains("already running"), "{second:?}");
    assert!(t.elapsed() < Duration::from_secs(5));

    let other = node_sandbox();
    let port = node.api.port().to_string();
    let clash = other.run_with_env(
        &["run", "--no-ui"],
        &[("HEARTHNET_TRANSPORT_API_PORT", &port)],
    );
    assert_eq!(clash.code, 1, "{clash:?}");
    assert!(
        clash
            .stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{clash:?}"
    );
    assert!(
        !other.data_dir().join("run/node.json").exists(),
        "no half-started node"
    );
}

#[test]
fn caps_and_trace_show_what_the_node_did() {
    let sb = node_sandbox();
    let _node = sb.start_node(&[]);
    let run = sb.run(&["caps", "--local-only"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let header = run.stdout.lines().next().unwrap();
    for col in [
        "NAME",
        "VERSION",
        "STABILITY",
        "NODE",
        "MODEL/PARAMS",
        "HEALTH",
        "P50MS",
        "IN_FLIGHT",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(run.stdout.contains("experimental.echo"));
    let none = sb.run(&["caps", "--remote-only", "--json"], None);
    assert_eq!(none.stdout.trim(), "[]");
    let filtered = sb.run(&["caps", "--name", "llm.*", "--json"], None);
    assert_eq!(filtered.stdout.trim(), "[]");

    for i in 0..3 {
        assert_eq!(
            sb.run(
                &[
                    "call",
                    "experimental.echo",
                    "--body",
                    &echo(&i.to_string()).to_string()
                ],
                None
            )
            .code,
            0
        );
    }
    let traces = sb.run(&["trace", "recent", "2", "--json"], None);
    let list: Vec<Value> = serde_json::from_str(&traces.stdout).unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|t| t["result"] == "ok" && t["capability"] == "experimental.echo")
    );
    let table = sb.run(
        &["trace", "recent", "--capability", "experimental.echo"],
        None,
    );
    assert_eq!(table.stdout.lines().count(), 4, "{table:?}");
}

#[test]
fn log_follow_sees_new_lines_and_rotation() {
    let sb = node_sandbox();
    let dir = sb.home().join(".local/state/hearthnet/log");
    std::fs::create_dir_all(&dir).unwrap();
    let line = |msg: &str, level: &str| {
        format!(
            "{}\n",
            json!({"ts": "2026-11-24T23:59:59.000Z", "level": level, "component": "hearthnet_test", "msg": msg})
        )
    };
    std::fs::write(dir.join("2026-11-24.log"), line("before start", "info")).unwrap();
    let mut child = sb
        .command(&["log", "--follow", "--level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let expect = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("never saw {needle}"));
            if l.contains(needle) {
                return l;
            }
        }
    };
    expect("before start");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("2026-11-24.log"))
        .unwrap();
    f.write_all(line("debug noise", "debug").as_bytes())
        .unwrap();
    f.write_all(line("appended later", "warn").as_bytes())
        .unwrap();
    let seen = expect("appended later");
    assert!(seen.contains("WARN"), "{seen}");
    std::fs::write(dir.join("2026-11-25.log"), line("after rotation", "error")).unwrap();
    expect("after rotation");
    child.kill().unwrap();
    let out = wait_bounded(child, Duration::from_secs(5));
    let _ = out;
    let all: Vec<String> = rx.try_iter().collect();
    assert!(all.iter().all(|l| !l.contains("debug noise")), "{all:?}");
}

/// Contract §5.4: a body that breaks a capability's request schema is
/// refused with 400 `schema_mismatch`, naming where, on the local API and
/// on the peer port alike, before the handler runs.
#[test]
fn a_body_that_breaks_the_schema_is_refused_on_both_listeners() {
    let sb = node_sandbox();
    let _node = sb.start_node(&[]);
    let bad = json!({"params": {}, "input": {"text": 5}});
    let local = sb.client();
    // The client takes a wire error only with its code's HTTP status (400).
    let hash = match local.call("experimental.echo", "1.0", &bad, false, None) {
        Err(ClientError::Wire(e)) => {
            assert_eq!(e.code, ErrorCode::SchemaMismatch, "{e:?}");
            assert!(e.message.contains("`/input/text`"), "{e:?}");
            e.body["schema_hash_expected"].clone()
        }
        Err(other) => panic!("expected a wire error, got {other}"),
        Ok(_) => panic!("a body with a number for text was served"),
    };
    let caps = local.get("/local/v1/caps", &[]).unwrap();
    let echo_entry = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "experimental.echo")
        .cloned()
        .unwrap();
    assert_eq!(
        hash, echo_entry["schema_hash"],
        "the hash of what is enforced"
    );

    let status: Value = serde_json::from_str(&sb.run(&["status", "--json"], None).stdout).unwrap();
    let community: hearthnet_base::CommunityId =
        serde_json::from_value(status["community"]["id"].clone()).unwrap();
    let key = sb.key();
    let reply = common::runtime().block_on(async {
        common::peer_client(&key, community)
            .call(
                &sb.peer_addr(),
                key.node_id(),
                "experimental.echo",
                "1.0",
                &json!({"input": {"text": "x", "repeat": "twice"}}),
                false,
                Duration::from_secs(10),
            )
            .await
    });
    match reply {
        Ok(hearthnet_transport::peer_client::CallReply::Failed(body)) => {
            assert_eq!(body["error"], "schema_mismatch", "{body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("`/input/repeat`"), "{body}");
        }
        Ok(_) => panic!("the peer port served a bad body"),
        Err(e) => panic!("the peer port did not answer: {e}"),
    }
    // Refused before any handler ran: no echo call was traced.
    let traces = local.get("/trace/recent", &[]).unwrap();
    assert_eq!(traces["traces"], json!([]), "{traces}");
    // And a good body is served.
    assert!(
        local
            .call("experimental.echo", "1.0", &echo("ok"), false, None)
            .is_ok()
    );
}

#[test]
fn the_local_api_refuses_requests_addressed_to_another_host() {
    let sb = node_sandbox();
    let node = sb.start_node(&[]);
    let get = |host: &str| {
        let mut conn = TcpStream::connect(node.api).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            conn,
            "GET /health HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply
    };
    let port = node.api.port();
    // What a DNS-rebinding page's requests carry: its own name.
    let rebound = get(&format!("attacker.example:{port}"));
    assert!(rebound.starts_with("HTTP/1.1 401"), "{rebound}");
    assert!(rebound.contains(r#""error":"unauthorized""#), "{rebound}");
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let reply = get(&host);
        assert!(reply.starts_with("HTTP/1.1 200"), "{host}: {reply}");
    }
}

#[test]
fn a_request_signed_before_a_restart_is_refused_after_it() {
    let sb = node_sandbox();
    let mut node = sb.start_node(&[]);
    let key = sb.key();
    let community = hearthnet_base::CommunityId::of_root(key.node_id());
    let body = echo("captured");
    let headers = SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &body).unwrap();
    assert!(sb.client().send_call(&headers, &body, false, None).is_ok());
    node.terminate();
    // Stamps have whole seconds: a replay within the second of a restart
    // is the one the rule cannot see (see `check_clock`).
    common::wait_until(Duration::from_secs(3), "the next second", || {
        Timestamp::now() > headers.timestamp
    });

    let _node = sb.start_node(&[]);
    let client = sb.client();
    assert_eq!(
        wire_code(client.send_call(&headers, &body, false, None)),
        ErrorCode::Expired,
        "captured before the restart, replayed after it"
    );
    let fresh = SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &body).unwrap();
    assert!(client.send_call(&fresh, &body, false, None).is_ok());
}
