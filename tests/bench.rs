//! `switchboard bench`: it drives real servers and reports what happened.
//! These check correctness of the counts, never speed.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    Redis, Server, assert_one_line_error, closed_port, curl, repo_file, run_switchboard, stdout,
    switchboard, tool,
};

/// Runs `switchboard bench ARGS --json` and parses its one JSON object.
fn bench_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = run_switchboard(&all, b"");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_str(stdout(&output).trim()).expect("one JSON object")
}

#[test]
fn echo_mode_counts_replies_and_measures_the_server() {
    let server = Server::start(&["echo", "--raw"]);
    let pid = server.pid().to_string();
    let report = bench_json(&[
        "bench",
        "echo",
        &server.local(),
        "--conns",
        "8",
        "--size",
        "100",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--pid",
        &pid,
    ]);
    assert_eq!(report["connections"], 8);
    assert_eq!(report["errors"], 0);
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    let latency = &report["latency"];
    assert!(
        latency["p50_us"].as_u64() <= latency["max_us"].as_u64(),
        "{report}"
    );
    assert_server_cost_split(&report);
}

#[test]
fn replies_are_parsed_as_a_stream_when_the_server_merges_chunks() {
    // A pipelined client makes the chunk-mode server answer several requests
    // with one prefixed chunk: counting must still come out right.
    let server = Server::start(&["echo", "--prefix", "> "]);
    let report = bench_json(&[
        "bench",
        "echo",
        &server.local(),
        "--conns",
        "4",
        "--pipeline",
        "16",
        "--size",
        "32",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--prefix",
        "> ",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn a_wrong_prefix_is_reported_as_errors() {
    let server = Server::start(&["echo"]);
    let report = bench_json(&[
        "bench",
        "echo",
        &server.local(),
        "--conns",
        "3",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--prefix",
        "Nope: ",
    ]);
    assert_eq!(report["errors"], 3, "{report}");
}

#[test]
fn table_output_and_latency_plot() {
    let server = Server::start(&["echo", "--raw"]);
    let plot = std::env::temp_dir().join(format!("switchboard-plot-{}.svg", server.port));
    let output = run_switchboard(
        &[
            "bench",
            "echo",
            &server.local(),
            "--conns",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--plot",
            plot.to_str().unwrap(),
        ],
        b"",
    );
    assert!(output.status.success(), "{output:?}");
    let table = stdout(&output);
    assert!(
        table.contains("messages/s") && table.contains("p99.9"),
        "{table}"
    );
    assert!(
        table.contains("% of CPU time stolen by the hypervisor"),
        "{table}"
    );
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    std::fs::remove_file(&plot).ok();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
}

#[test]
fn idle_mode_holds_connections_and_reports_memory_per_connection() {
    let server = Server::start(&["echo", "--raw"]);
    let pid = server.pid().to_string();
    let report = bench_json(&[
        "bench",
        "idle",
        &server.local(),
        "--conns",
        "300",
        "--hold",
        "0.2",
        "--pid",
        &pid,
        "--sources",
        "3",
    ]);
    assert_eq!(report["established"], 300, "{report}");
    assert_eq!(report["alive_after_hold"], 300, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["server_bytes_per_connection"].as_f64().is_some(),
        "{report}"
    );
}

#[test]
fn bad_bench_input_gets_one_error_line() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = run_switchboard(&["bench", "echo", &addr, "--duration", "0.2"], b"");
    assert_one_line_error(
        &output,
        &format!("could not connect to {addr}: connection refused"),
    );
    for (args, expected) in [
        (
            vec!["bench", "echo", "127.0.0.1:9", "--conns", "0"],
            "must be at least 1",
        ),
        (
            vec![
                "bench",
                "echo",
                "127.0.0.1:9",
                "--size",
                "65536",
                "--pipeline",
                "64",
            ],
            "at most",
        ),
        (
            vec!["bench", "echo", "127.0.0.1:9", "--duration", "0"],
            "invalid --duration 0",
        ),
        (
            vec!["bench", "idle", "127.0.0.1:9", "--pid", "999999999"],
            "no process with --pid",
        ),
        (
            vec!["bench", "idle", "nowhere"],
            "invalid address 'nowhere'",
        ),
        (
            vec!["bench", "idle", "127.0.0.1:9", "--message-size", "10"],
            "--message-size needs a ws:// or wss:// URL",
        ),
        (
            vec![
                "bench",
                "chat",
                "wss://127.0.0.1:9/ws",
                "--cacert",
                "/nonexistent/ca.pem",
            ],
            "could not read CA certificate /nonexistent/ca.pem",
        ),
    ] {
        let output = run_switchboard(&args, b"");
        assert_one_line_error(&output, expected);
    }
}

#[test]
fn chat_mode_counts_every_delivery_in_order() {
    let server = Server::start(&["serve"]);
    assert_every_delivery_counted(&server, &server.local(), &[]);
}

#[test]
fn chat_mode_over_websockets_counts_every_delivery_in_order() {
    let server = Server::start(&["serve"]);
    let url = format!("ws://{}/ws", server.local());
    assert_every_delivery_counted(&server, &url, &["--in-step"]);
}

#[test]
fn chat_and_idle_modes_speak_tls_to_wss_and_tls_addresses() {
    let server = Server::start(&["serve", "--tls-self-signed"]);
    let url = format!("wss://{}/ws", server.local());
    assert_every_delivery_counted(&server, &url, &["--insecure"]);
    // Line members over TLS.
    let line = format!("tls://{}", server.local());
    assert_every_delivery_counted(&server, &line, &["--insecure"]);
    assert_one_line_error(
        &short_chat(&line),
        "the server's certificate is not trusted",
    );
    let report = bench_json(&[
        "bench", "idle", &url, "--conns", "20", "--hold", "0.2", "-k",
    ]);
    assert_eq!(report["alive_after_hold"], 20, "{report}");
    // Without --insecure the self-signed certificate is refused: TLS it is.
    let output = short_chat(&url);
    assert_one_line_error(&output, "the server's certificate is not trusted");
}

/// Runs a short `bench chat` (2 subscribers, 0.2 s) against `target`.
fn short_chat(target: &str) -> Output {
    run_switchboard(
        &[
            "bench",
            "chat",
            target,
            "--subscribers",
            "2",
            "--duration",
            "0.2",
        ],
        b"",
    )
}

/// Runs `bench chat` against `target` (20 subscribers, 40 msg/s, and
/// `extra` flags) and checks that every message reached every subscriber, in order.
fn assert_every_delivery_counted(server: &Server, target: &str, extra: &[&str]) {
    let pid = server.pid().to_string();
    let mut args = vec![
        "bench",
        "chat",
        target,
        "--subscribers",
        "20",
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    let report = bench_json(&args);
    assert_eq!(report["target"], target, "{report}");
    assert_eq!(report["in_step"], extra.contains(&"--in-step"), "{report}");
    assert_eq!(report["subscribers"], 20, "{report}");
    assert_eq!(
        report["publishers"], 3,
        "40 msg/s spread so none exceeds 15/s: {report}"
    );
    let messages = report["messages"].as_u64().unwrap();
    assert!(messages > 0, "{report}");
    assert_eq!(
        report["deliveries"].as_u64().unwrap(),
        messages * 20,
        "{report}"
    );
    assert_eq!(
        (report["lost"].clone(), report["out_of_order"].clone()),
        (0.into(), 0.into()),
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert_server_cost_split(&report);
    let steal = report["steal_percent"].as_f64().expect("steal measured");
    assert!((0.0..=100.0).contains(&steal), "{report}");
}

#[test]
fn chat_mode_spreads_members_over_several_nodes() {
    // Two hubs that know nothing of each other: what is said on one stays
    // there, so only same-node deliveries arrive, and the report says so.
    let (a, b) = (
        Server::start(&["serve", "--memory"]),
        Server::start(&["serve", "--memory"]),
    );
    let (pid_a, pid_b) = (a.pid().to_string(), b.pid().to_string());
    let url_b = format!("ws://{}/ws", b.local());
    let report = bench_json(&[
        "bench",
        "chat",
        &a.local(),
        &url_b,
        "--subscribers",
        "20",
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--pid",
        &pid_a,
        "--pid",
        &pid_b,
    ]);
    assert_eq!(
        report["target"],
        format!("{} {url_b}", a.local()),
        "{report}"
    );
    let nodes: Vec<(String, u64, u64)> = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let count = |field: &str| n[field].as_u64().expect("a count");
            (
                n["target"].as_str().expect("a name").to_string(),
                count("subscribers"),
                count("publishers"),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [(a.local(), 10, 2), (url_b.clone(), 10, 1)],
        "3 publishers and 20 subscribers, round-robin: {report}"
    );
    let messages = report["messages"].as_u64().unwrap();
    assert!(messages > 0, "{report}");
    let (same, cross) = (&report["same_node"], &report["cross_node"]);
    let count = |share: &Value, field: &str| share[field].as_u64().expect("a count");
    assert!(count(same, "deliveries") > 0, "{report}");
    assert_eq!(count(same, "lost"), 0, "{report}");
    assert_eq!(
        (count(cross, "deliveries"), count(cross, "lost")),
        (0, report["lost"].as_u64().unwrap()),
        "separate hubs carry nothing across: {report}"
    );
    assert_eq!(
        count(same, "deliveries") + count(cross, "lost"),
        messages * 20,
        "{report}"
    );
    assert_eq!(report["deliveries"], same["deliveries"], "{report}");
    for share in [same, cross] {
        for field in ["p50_us", "p99_us", "max_us"] {
            assert!(share["latency"][field].is_u64(), "{field}: {report}");
        }
        assert!(share["deliveries_per_sec"].is_f64(), "{report}");
    }
    assert_eq!(
        (report["out_of_order"].as_u64(), report["errors"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    let servers = report["servers"].as_array().expect("servers");
    let pids: Vec<u64> = servers.iter().map(|s| s["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, [u64::from(a.pid()), u64::from(b.pid())], "{report}");
    assert_server_cost_split(&report);
    let each: f64 = servers
        .iter()
        .map(|s| s["cpu_seconds"].as_f64().unwrap())
        .sum();
    let total = report["server"]["cpu_seconds"].as_f64().unwrap();
    assert!(
        (each - total).abs() < 1e-9,
        "the total is the sum: {report}"
    );
    assert_eq!(report["redis"], Value::Null, "{report}");
    // The table, for people, shows the split.
    let output = run_switchboard(
        &[
            "bench",
            "chat",
            &a.local(),
            &b.local(),
            "--subscribers",
            "4",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ],
        b"",
    );
    assert!(output.status.success(), "{output:?}");
    let table = stdout(&output);
    for expected in ["members per node: ", "same node", "cross-node"] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
}

/// Starts `node bench/servers/socketio_chat.mjs 0 EXTRA…`, the Socket.IO
/// reference server, failing with the fix when its packages are missing.
fn socket_io_server(extra: &[&str]) -> Server {
    for package in ["socket.io", "@socket.io/redis-adapter", "redis"] {
        assert!(
            repo_file(&format!("bench/node_modules/{package}")).is_dir(),
            "bench/node_modules/{package} is missing: run `npm install --prefix bench` \
             (scripts/setup.sh does)"
        );
    }
    let mut node = tool("node");
    node.arg(repo_file("bench/servers/socketio_chat.mjs"))
        .arg("0")
        .args(extra);
    Server::spawn(node)
}

#[test]
fn chat_mode_speaks_socket_io() {
    let server = socket_io_server(&[]);
    let target = format!("socketio://127.0.0.1:{}", server.port);
    assert_every_delivery_counted(&server, &target, &[]);
    // The same server under its path written out, bursts and all.
    let target = format!("socketio://127.0.0.1:{}/socket.io/", server.port);
    assert_every_delivery_counted(&server, &target, &["--in-step"]);
}

#[test]
fn chat_mode_measures_a_socket_io_cluster_over_redis() {
    let redis = Redis::start();
    let nodes = [
        socket_io_server(&["--redis", &redis.url()]),
        socket_io_server(&["--redis", &redis.url()]),
    ];
    let targets: Vec<String> = nodes
        .iter()
        .map(|node| format!("socketio://127.0.0.1:{}", node.port))
        .collect();
    assert_cluster_delivers_everything(&nodes, &targets, &redis);
}

#[test]
fn chat_mode_measures_a_switchboard_cluster_over_redis() {
    let redis = Redis::start();
    let nodes = [
        Server::start(&["serve", "--redis", &redis.url()]),
        Server::start(&["serve", "--redis", &redis.url()]),
    ];
    let targets = [nodes[0].local(), format!("ws://{}/ws", nodes[1].local())];
    assert_cluster_delivers_everything(&nodes, &targets, &redis);
}

/// Runs `bench chat` against the two `nodes` of one cluster (at `targets`)
/// and `redis`: every delivery, also across nodes, arrives, and the costs
/// of both nodes and of Redis are measured.
fn assert_cluster_delivers_everything(nodes: &[Server], targets: &[String], redis: &Redis) {
    let pids: Vec<String> = nodes.iter().map(|node| node.pid().to_string()).collect();
    let redis_pid = redis.pid().to_string();
    let report = bench_json(&[
        "bench",
        "chat",
        &targets[0],
        &targets[1],
        "--subscribers",
        "20",
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--pid",
        &pids[0],
        "--pid",
        &pids[1],
        "--redis-pid",
        &redis_pid,
    ]);
    let messages = report["messages"].as_u64().unwrap();
    assert!(messages > 0, "{report}");
    assert_eq!(
        report["deliveries"].as_u64().unwrap(),
        messages * 20,
        "{report}"
    );
    assert_eq!(
        (
            report["lost"].as_u64(),
            report["out_of_order"].as_u64(),
            report["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{report}"
    );
    let (same, cross) = (&report["same_node"], &report["cross_node"]);
    assert!(cross["deliveries"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        (same["lost"].as_u64(), cross["lost"].as_u64()),
        (Some(0), Some(0)),
        "nothing lost across nodes: {report}"
    );
    assert_server_cost_split(&report);
    let redis_cost = &report["redis"];
    assert_eq!(
        redis_cost["pid"].as_u64(),
        Some(u64::from(redis.pid())),
        "{report}"
    );
    assert!(
        redis_cost["cpu_us_per_message"].as_f64().is_some(),
        "{report}"
    );
}

#[test]
fn chat_mode_refuses_bad_input() {
    // A process that surely exists, for --pid.
    let own_pid = std::process::id().to_string();
    let own = own_pid.as_str();
    for (args, expected) in [
        (
            vec!["bench", "chat", "127.0.0.1:9", "--subscribers", "0"],
            "must be at least 1",
        ),
        (
            vec!["bench", "chat", "127.0.0.1:9", "--rate", "0"],
            "--rate must be a positive",
        ),
        (
            vec!["bench", "chat", "127.0.0.1:9", "--room", "no room"],
            "invalid --room 'no room'",
        ),
        (
            vec!["bench", "chat", "ws://"],
            "invalid address 'ws://': not a valid WebSocket URL",
        ),
        (
            vec!["bench", "chat", "http://127.0.0.1:9/ws"],
            "only ws:// and wss:// URLs are understood",
        ),
        (
            vec!["bench", "chat", "tls://nowhere"],
            "invalid address 'nowhere': the port must be a number",
        ),
        (
            vec!["bench", "chat", "socketio://nowhere"],
            "invalid address 'socketio://nowhere': the port must be a number",
        ),
        (
            vec!["bench", "chat", "socketio://127.0.0.1:9/sio"],
            "a Socket.IO path ends with '/'",
        ),
        (
            vec!["bench", "chat", "127.0.0.1:9", "--pid", own, "--pid", own],
            "--pid is given 2 times for 1 node(s): at most once per node",
        ),
        (
            vec!["bench", "chat", "127.0.0.1:9", "--redis-pid", "999999999"],
            "no process with --redis-pid 999999999",
        ),
        (
            vec!["bench", "echo", "127.0.0.1:9", "--pid", own, "--pid", own],
            "--pid is given more than once: this mode measures one server",
        ),
    ] {
        let output = run_switchboard(&args, b"");
        assert_one_line_error(&output, expected);
    }
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = short_chat(&addr);
    assert_one_line_error(&output, &format!("could not connect to {addr}"));
    // A server that does not speak WebSocket: no handshake completes.
    let echo = Server::start(&["echo", "--raw"]);
    let url = format!("ws://{}/ws", echo.local());
    let output = short_chat(&url);
    assert_one_line_error(&output, "only 0 connections joined #bench");
}

/// Holds `conns` idle connections to a fresh chat hub at the target
/// `target_of(port)` names, asserts every one stayed served, and returns the
/// report.
fn hold_idle_on_chat_hub(target_of: impl Fn(u16) -> String, conns: usize) -> Value {
    let server = Server::start(&["serve"]);
    let pid = server.pid().to_string();
    let target = target_of(server.port);
    let conns_arg = conns.to_string();
    let report = bench_json(&[
        "bench", "idle", &target, "--conns", &conns_arg, "--hold", "0.2", "--pid", &pid,
    ]);
    assert_eq!(report["established"], conns, "{report}");
    assert_eq!(report["alive_after_hold"], conns, "{report}");
    report
}

#[test]
fn idle_mode_holds_websockets_to_the_chat_hub() {
    let report = hold_idle_on_chat_hub(|port| format!("ws://127.0.0.1:{port}/ws"), 100);
    assert!(
        report["server_bytes_per_connection"].as_f64().is_some(),
        "{report}"
    );
}

#[test]
fn idle_mode_holds_line_clients_of_the_chat_hub() {
    hold_idle_on_chat_hub(|port| format!("127.0.0.1:{port}"), 50);
}

#[test]
fn idle_mode_sends_each_web_socket_s_message_before_the_hold() {
    let server = Server::start(&["serve"]);
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let mut bench = switchboard()
        .args(["bench", "idle", &url, "--conns", "20", "--hold", "60"])
        .args(["--message-size", "60000", "--json"])
        .stdout(Stdio::null())
        .spawn()
        .expect("bench starts");
    // While the bench holds them, the diary shows what each one sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = curl(&[&server.url("/api/connections")]);
        assert_eq!(status, 200, "{body}");
        let diary: Value = serde_json::from_str(&body).expect("JSON diary");
        let talked = diary
            .as_array()
            .expect("an array")
            .iter()
            .filter(|c| c["transport"] == "ws" && c["bytes_in"].as_u64() >= Some(60_000))
            .count();
        if talked == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{talked} of 20 sent: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    bench.kill().expect("bench stops");
    bench.wait().expect("bench reaped");
}

/// The server's CPU per message is measured, with its kernel part no more than the whole.
fn assert_server_cost_split(report: &Value) {
    let server = &report["server"];
    let all = server["cpu_us_per_message"]
        .as_f64()
        .expect("CPU per message");
    let kernel = server["kernel_us_per_message"]
        .as_f64()
        .expect("kernel part");
    assert!((0.0..=all).contains(&kernel), "{report}");
    let seconds = server["cpu_seconds"].as_f64().unwrap();
    let system = server["system_cpu_seconds"].as_f64().unwrap();
    assert!((0.0..=seconds).contains(&system), "{report}");
}

/// Runs `bench publish` against `target` with `extra` flags (and `--pid`)
/// and checks what every publish report holds: acks and no errors, latency
/// percentiles in order, the server's cost and memory.
fn assert_publish_report(server: &Server, target: &str, extra: &[&str]) -> Value {
    let pid = server.pid().to_string();
    let mut args = vec![
        "bench",
        "publish",
        target,
        "--publishers",
        "20",
        "--rooms",
        "4",
        "--warmup",
        "0.2",
        "--pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    let report = bench_json(&args);
    assert_eq!(report["mode"], "publish", "{report}");
    assert_eq!(report["target"], target, "{report}");
    assert_eq!(
        (report["publishers"].clone(), report["rooms"].clone()),
        (20.into(), 4.into()),
        "{report}"
    );
    assert!(report["acked"].as_u64().unwrap() > 0, "{report}");
    assert!(report["acked_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["error_codes"], serde_json::json!({}), "{report}");
    let latency = &report["latency"];
    let percentiles: Vec<u64> = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]
        .iter()
        .map(|field| latency[field].as_u64().expect("latency field"))
        .collect();
    assert!(percentiles.is_sorted(), "{report}");
    assert_server_cost_split(&report);
    let memory = &report["server_memory"];
    let rss = |field: &str| memory[field].as_u64().expect("RSS field");
    assert!(rss("rss_kib_start") > 0, "{report}");
    assert!(
        rss("rss_kib_peak") >= rss("rss_kib_start").max(rss("rss_kib_end")),
        "{report}"
    );
    assert!(memory["samples"].as_u64() >= Some(2), "{report}");
    report
}

#[test]
fn publish_mode_counts_acks_at_full_speed() {
    let server = Server::start(&["serve", "--memory", "--rate", "0"]);
    let report = assert_publish_report(
        &server,
        &server.local(),
        &["--duration", "1", "--pipeline", "4"],
    );
    assert_eq!(report["pipeline"], 4, "{report}");
    assert_eq!(report["offered_per_sec"], Value::Null, "{report}");
}

#[test]
fn publish_mode_over_websockets_at_a_set_rate() {
    let server = Server::start(&["serve", "--memory", "--rate", "0"]);
    let url = format!("ws://{}/ws", server.local());
    let report = assert_publish_report(&server, &url, &["--duration", "1", "--rate", "400"]);
    assert_eq!(report["offered_per_sec"], 400.0, "{report}");
    assert_eq!(report["pipeline"], Value::Null, "{report}");
}

#[test]
fn publish_mode_stops_after_so_many_acks() {
    let server = Server::start(&["serve", "--memory", "--rate", "0"]);
    let report = assert_publish_report(&server, &server.local(), &["--messages", "500"]);
    assert_eq!(report["acked"], 500, "{report}");
    // The table, for people.
    let pid = server.pid().to_string();
    let output = run_switchboard(
        &[
            "bench",
            "publish",
            &server.local(),
            "--publishers",
            "4",
            "--rooms",
            "2",
            "--messages",
            "100",
            "--warmup",
            "0",
            "--pid",
            &pid,
        ],
        b"",
    );
    assert!(output.status.success(), "{output:?}");
    let table = stdout(&output);
    for expected in [
        "4 publishers in 2 rooms, closed loop, pipeline 1",
        "acked/s",
        "p99.9",
        "CPU per message",
        "server memory: RSS",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
}

#[test]
fn publish_mode_refuses_bad_input() {
    for (args, expected) in [
        (
            vec!["bench", "publish", "127.0.0.1:9", "--publishers", "0"],
            "must be at least 1",
        ),
        (
            vec!["bench", "publish", "127.0.0.1:9", "--rooms", "0"],
            "must be at least 1",
        ),
        (
            vec!["bench", "publish", "127.0.0.1:9", "--messages", "0"],
            "must be at least 1",
        ),
        (
            vec!["bench", "publish", "127.0.0.1:9", "--publishers", "3"],
            "--rooms 10 is more than --publishers 3",
        ),
        (
            vec!["bench", "publish", "127.0.0.1:9", "--room", "no room"],
            "invalid --room 'no room'",
        ),
        (
            vec!["bench", "publish", "127.0.0.1:9", "--rate", "0"],
            "--rate must be a positive",
        ),
        (
            vec![
                "bench",
                "publish",
                "127.0.0.1:9",
                "--rate",
                "5",
                "--pipeline",
                "2",
            ],
            "cannot be used with",
        ),
        (
            vec![
                "bench",
                "publish",
                "127.0.0.1:9",
                "--messages",
                "5",
                "--duration",
                "2",
            ],
            "cannot be used with",
        ),
        (
            vec!["bench", "publish", "ws://"],
            "invalid address 'ws://': not a valid WebSocket URL",
        ),
        (
            vec!["bench", "publish", "http://127.0.0.1:9/ws"],
            "only ws:// and wss:// URLs are understood",
        ),
    ] {
        let output = run_switchboard(&args, b"");
        assert_one_line_error(&output, expected);
    }
    let addr = format!("127.0.0.1:{}", closed_port());
    let output = run_switchboard(&["bench", "publish", &addr, "--duration", "0.2"], b"");
    assert_one_line_error(
        &output,
        &format!(
            "could not connect to {addr}: no publisher joined (first failure: connection refused)"
        ),
    );
    // A server that does not speak WebSocket: no handshake completes.
    let echo = Server::start(&["echo", "--raw"]);
    let url = format!("ws://{}/ws", echo.local());
    let output = run_switchboard(&["bench", "publish", &url, "--duration", "0.2"], b"");
    assert_one_line_error(&output, "no publisher joined");
}
