"""Turns bench/run.sh's results (one JSON object a line) into BENCHMARKS.md:
tables per case with ratios against every reference server, and the targets
of issue 3 checked one by one.

    python3 bench/report.py target/bench/results.jsonl --command "bench/run.sh" > BENCHMARKS.md
"""

import argparse
import datetime
import json
import os
import platform
import subprocess

import tls_report

RAW_REFERENCES = ["node-raw", "tokio-echo", "c-epoll"]
# The label of the run that measures the load client itself (bench/run.sh).
PIPELINED = "c-epoll-pipeline-8"


def machine():
    """One line describing this machine."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cores} cores ({model}){memory}, Linux {platform.release()}"


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def combine(runs):
    """One result from several interleaved runs: the median run by messages/s,
    with the median server CPU per message and the run count."""
    runs = sorted(runs, key=lambda r: r["messages_per_sec"])
    result = dict(runs[len(runs) // 2])
    result["messages_per_sec"] = median([r["messages_per_sec"] for r in runs])
    result["mb_per_sec"] = median([r["mb_per_sec"] for r in runs])
    result["server"] = dict(result.get("server") or {}, **median_cost(runs))
    result["runs"] = len(runs)
    result["errors"] = sum(r["errors"] for r in runs)
    return result


def median_cost(runs):
    """The server's median CPU per message, and its median kernel part, over `runs`."""
    server = {}
    for field in ("cpu_us_per_message", "kernel_us_per_message"):
        values = [v for v in ((r.get("server") or {}).get(field) for r in runs) if v is not None]
        if values:
            server[field] = median(values)
    return server


def load(path):
    """Echo results keyed by (server, conns, size), combined over rounds; chat
    and publish runs by label (all rounds); idle results keyed by server;
    cluster runs by (setup, subscribers, msg/s offered) (all rounds)."""
    runs, chat, publish, idle, cluster = {}, {}, {}, {}, {}
    with open(path) as results:
        for line in results:
            record = json.loads(line)
            result = record["result"]
            if result["mode"] == "echo":
                key = (record["server"], result["connections"], result["size"])
                runs.setdefault(key, []).append(result)
            elif result["mode"] == "chat" and record["server"].startswith(CLUSTER_LABEL):
                key = (record["server"][len(CLUSTER_LABEL):], result["subscribers"], result["offered_per_sec"])
                cluster.setdefault(key, []).append(result)
            elif result["mode"] == "chat":
                chat.setdefault(record["server"], []).append(result)
            elif result["mode"] == "publish":
                publish.setdefault(record["server"], []).append(result)
            else:
                idle[record["server"]] = result
    return {key: combine(group) for key, group in runs.items()}, chat, publish, idle, cluster


def chat_median(runs):
    """The median chat run by p99 latency, with the median CPU per delivery."""
    runs = sorted(runs, key=lambda r: r["latency"]["p99_us"])
    result = dict(runs[len(runs) // 2])
    result["server"] = dict(result.get("server") or {}, **median_cost(runs))
    result["runs"] = len(runs)
    result["lost"] = sum(r["lost"] for r in runs)
    result["out_of_order"] = sum(r["out_of_order"] for r in runs)
    return result


def chat_table(chat):
    lines = [
        "| server | runs | subscribers joined | deliveries/s | p50 | p99 | max (median run) | p99 of each run | lost | out of order | errors | server CPU/delivery (kernel) | CPU stolen by the hypervisor (median run) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for server, runs in chat.items():
        r = chat_median(runs)
        lat = r["latency"]
        each = ", ".join(us(x["latency"]["p99_us"]) for x in runs)
        lines.append(
            f"| {server} | {r['runs']} | {r['subscribers']:,} | {r['deliveries_per_sec']:,.0f} | {us(lat['p50_us'])} | {us(lat['p99_us'])} | "
            f"{us(lat['max_us'])} | {each} | {r['lost']} | {r['out_of_order']} | {r['errors']} | {fmt_cpu(r)} | "
            f"{fmt_steal(r.get('steal_percent'))} |"
        )
    return "\n".join(lines)


# bench/run.sh labels publish runs publish-{engine}{-ws}{-open}: the engine
# (`serve --memory`, or SQLite in `--data DIR`), line clients or WebSockets,
# and the closed loop (full speed) or the open loop (`--rate`).
PUBLISH_ENGINES = (("memory", "--memory"), ("sqlite", "SQLite"), ("sqlite-full", "SQLite, --sync full"))
PUBLISH_CASES = (("", "line", "full speed"), ("-ws", "WebSocket", "full speed"),
                 ("-open", "line", "open loop"), ("-ws-open", "WebSocket", "open loop"))
# The long run (BENCH_PUBLISH_MESSAGES): SQLite only.
PUBLISH_LONG = "publish-sqlite-long"


def publish_median(runs):
    """The median publish run: by acknowledged rate at full speed, by p99
    latency in the open loop; with the median CPU per message and the errors
    of every run."""
    open_loop = runs[0].get("offered_per_sec") is not None
    key = (lambda r: r["latency"]["p99_us"]) if open_loop else (lambda r: r["acked_per_sec"])
    runs = sorted(runs, key=key)
    result = dict(runs[len(runs) // 2])
    result["acked_per_sec"] = median([r["acked_per_sec"] for r in runs])
    result["server"] = dict(result.get("server") or {}, **median_cost(runs))
    result["runs"] = len(runs)
    result["errors"] = sum(r["errors"] for r in runs)
    codes = {}
    for r in runs:
        for code, count in (r.get("error_codes") or {}).items():
            codes[code] = codes.get(code, 0) + count
    result["error_codes"] = codes
    return result


def publish_cases(publish):
    """Per case present: (suffix, transport, load, {engine: median run})."""
    cases = []
    for suffix, transport, load in PUBLISH_CASES:
        engines = {e: publish_median(publish[f"publish-{e}{suffix}"])
                   for e, _ in PUBLISH_ENGINES if f"publish-{e}{suffix}" in publish}
        if engines:
            cases.append((suffix, transport, load, engines))
    return cases


def publish_setup(publish):
    """How many publishers in how many rooms, as the runs had them."""
    runs = [r for label, group in publish.items() if label != PUBLISH_LONG for r in group]
    if not runs:
        return "publishers spread over rooms"
    return f"{runs[0]['publishers']} publishers spread over {runs[0]['rooms']} rooms"


def fmt_errors(result):
    codes = result.get("error_codes") or {}
    detail = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
    return f"{result['errors']}" + (f" ({detail})" if detail else "")


def publish_table(publish):
    lines = [
        "| transport | load | engine | runs | acked/s | SQLite / memory | p50 | p99 | p99 of each run | server CPU/msg (kernel) | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for suffix, transport, load, engines in publish_cases(publish):
        offered = next(iter(engines.values())).get("offered_per_sec")
        if offered is not None:
            load = f"{offered:,.0f} msg/s"
        memory = engines.get("memory")
        for engine, name in PUBLISH_ENGINES:
            r = engines.get(engine)
            if r is None:
                continue
            lat = r["latency"]
            versus = "n/a"
            if engine != "memory" and memory:
                versus = f"{ratio(r['acked_per_sec'], memory['acked_per_sec']):.2f}x"
            each = ", ".join(us(x["latency"]["p99_us"]) for x in publish[f"publish-{engine}{suffix}"])
            lines.append(
                f"| {transport} | {load} | {name} | {r['runs']} | {r['acked_per_sec']:,.0f} | {versus} | "
                f"{us(lat['p50_us'])} | {us(lat['p99_us'])} | {each} | {fmt_cpu(r)} | {fmt_errors(r)} |"
            )
    return "\n".join(lines)


def publish_long(publish):
    """The long SQLite run, if there was one: whether memory stayed flat."""
    runs = publish.get(PUBLISH_LONG)
    if not runs:
        return ("Not run (set `BENCH_PUBLISH_MESSAGES`, e.g. 10000000, for a long SQLite run "
                "that reports the server's memory at its start, end and peak).")
    r = runs[-1]
    memory = r.get("server_memory") or {}

    def mib(field):
        return f"{memory[field] / 1024:,.1f} MiB" if field in memory else "n/a"

    lat = r["latency"]
    return (
        f"SQLite, {r['publishers']} publishers in {r['rooms']} rooms at full speed until "
        f"{r['acked']:,} messages were acknowledged ({r['seconds']:,.0f} s, {r['acked_per_sec']:,.0f} acked/s, "
        f"p50 {us(lat['p50_us'])}, p99 {us(lat['p99_us'])}, max {us(lat['max_us'])}, errors {fmt_errors(r)}): "
        f"server RSS {mib('rss_kib_start')} at the start, {mib('rss_kib_end')} at the end, "
        f"peak {mib('rss_kib_peak')} over {memory.get('samples', 0)} samples (one a second)."
    )


# bench/run.sh labels cluster runs cluster-{setup}.
CLUSTER_LABEL = "cluster-"
CLUSTER_SETUPS = (("switchboard-1node", "switchboard, one node"),
                  ("switchboard-2nodes", "switchboard, 2 nodes + Redis"),
                  ("socketio-2nodes", "Socket.IO, 2 nodes + Redis adapter"))
# The bar: cross-node p99 under 25 ms at 100,000 deliveries/s offered.
CLUSTER_P99_US = 25_000
CLUSTER_TARGET_DELIVERIES = 100_000


def judged_p99(run):
    """The p99 a cluster run is judged by: the cross-node one with several nodes."""
    return (run.get("cross_node") or run)["latency"]["p99_us"]


def cluster_median(runs):
    """The median cluster run by its judged p99, with the median CPU per
    delivery and Redis CPU per message, and the losses and errors of every run."""
    runs = sorted(runs, key=judged_p99)
    result = dict(runs[len(runs) // 2])
    result["server"] = dict(result.get("server") or {}, **median_cost(runs))
    redis = [r["redis"]["cpu_us_per_message"] for r in runs
             if (r.get("redis") or {}).get("cpu_us_per_message") is not None]
    if redis:
        result["redis"] = dict(result["redis"] or {}, cpu_us_per_message=median(redis))
    result["runs"] = len(runs)
    for field in ("lost", "out_of_order", "errors"):
        result[field] = sum(r[field] for r in runs)
    return result


def sustained(run):
    """Whether a (median) cluster run held the bar: judged p99 under 25 ms, nothing lost."""
    return judged_p99(run) < CLUSTER_P99_US and run["lost"] == 0


def room_sizes(cluster):
    return sorted({subscribers for _, subscribers, _ in cluster}, reverse=True)


def ladder(cluster, setup, subscribers):
    """One setup's median runs in one room size, by rate offered."""
    return [(rate, cluster_median(runs)) for (s, subs, rate), runs in sorted(cluster.items(), key=lambda kv: kv[0][2])
            if s == setup and subs == subscribers]


def ceiling(cluster, setup, subscribers):
    """The most deliveries/s offered that `setup` sustained in a room of
    `subscribers`: (deliveries/s or None, whether it was the highest rate
    tried, the lowest rate's run)."""
    steps = ladder(cluster, setup, subscribers)
    if not steps:
        return None, False, None
    held = [rate for rate, run in steps if sustained(run)]
    best = max(held) if held else None
    top = best is not None and best == steps[-1][0]
    return (best * subscribers if best is not None else None), top, steps[0][1]


def fmt_ceiling(cluster, setup, subscribers):
    best, top, lowest = ceiling(cluster, setup, subscribers)
    if lowest is None:
        return "not run"
    if best is None:
        return (f"none of the rates tried (lowest {lowest['offered_per_sec'] * subscribers:,.0f}/s: "
                f"p99 {us(judged_p99(lowest))}, lost {lowest['lost']})")
    return f"{'≥ ' if top else ''}{best:,.0f}"


def cluster_ceilings(cluster):
    setups = [(key, name) for key, name in CLUSTER_SETUPS if any(s == key for s, _, _ in cluster)]
    lines = ["| members | " + " | ".join(name for _, name in setups) + " |",
             "|---:|" + "---:|" * len(setups)]
    for subscribers in room_sizes(cluster):
        cells = [fmt_ceiling(cluster, key, subscribers) for key, _ in setups]
        lines.append(f"| {subscribers:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_share_latency(run, kind, field):
    share = run.get(kind)
    return us(share["latency"][field]) if share else "n/a"


def fmt_redis(run):
    value = (run.get("redis") or {}).get("cpu_us_per_message")
    return "n/a" if value is None else f"{value:.2f} µs"


def cluster_table(cluster):
    lines = [
        "| members | setup | msg/s | deliveries/s offered | runs | deliveries/s | p50 | p99 | cross-node p50 | cross-node p99 "
        "| judged p99 of each run | lost | out of order | errors | server CPU/delivery, all nodes (kernel) | Redis CPU/msg |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for subscribers in room_sizes(cluster):
        for rate in sorted({r for _, subs, r in cluster if subs == subscribers}):
            for setup, name in CLUSTER_SETUPS:
                runs = cluster.get((setup, subscribers, rate))
                if not runs:
                    continue
                r = cluster_median(runs)
                lat = r["latency"]
                each = ", ".join(us(judged_p99(x)) for x in runs)
                lines.append(
                    f"| {subscribers:,} | {name} | {rate:,.0f} | {rate * subscribers:,.0f} | {r['runs']} | "
                    f"{r['deliveries_per_sec']:,.0f} | {us(lat['p50_us'])} | {us(lat['p99_us'])} | "
                    f"{fmt_share_latency(r, 'cross_node', 'p50_us')} | {fmt_share_latency(r, 'cross_node', 'p99_us')} | "
                    f"{each} | {r['lost']} | {r['out_of_order']} | {r['errors']} | {fmt_cpu(r)} | {fmt_redis(r)} |"
                )
    return "\n".join(lines)


def cluster_targets(cluster, check):
    """The issue's cluster targets, through `check(name, measured, ok)`."""
    at_target = [(subs, rate) for s, subs, rate in cluster
                 if s == "switchboard-2nodes" and subs * rate == CLUSTER_TARGET_DELIVERIES]
    for subscribers, rate in at_target:
        r = cluster_median(cluster[("switchboard-2nodes", subscribers, rate)])
        label = f"cluster, 2 switchboard nodes + Redis, {subscribers:,} members × {rate:,.0f} msg/s ({CLUSTER_TARGET_DELIVERIES:,} deliveries/s offered)"
        p99 = judged_p99(r)
        measured = us(p99)
        if (alone := cluster.get(("switchboard-1node", subscribers, rate))):
            measured += f" (one node alone: p99 {us(cluster_median(alone)['latency']['p99_us'])})"
        check(f"{label}: cross-node p99 < 25 ms (median run)", measured, p99 < CLUSTER_P99_US)
        check(f"{label}: nothing lost, nothing out of order (all runs)",
              f"lost {r['lost']}, out of order {r['out_of_order']}", r["lost"] == 0 and r["out_of_order"] == 0)
    for subscribers in room_sizes(cluster):
        ours, top, _ = ceiling(cluster, "switchboard-2nodes", subscribers)
        theirs, _, their_lowest = ceiling(cluster, "socketio-2nodes", subscribers)
        if their_lowest is None or not ladder(cluster, "switchboard-2nodes", subscribers):
            continue
        name = (f"cluster, {subscribers:,} members: deliveries/s sustained at cross-node p99 < 25 ms ≥ 3x "
                f"Socket.IO's (2 nodes + Redis adapter)")
        mine = "none" if ours is None else f"{'≥ ' if top else ''}{ours:,.0f}"
        if ours is None:
            check(name, f"switchboard sustained none of the rates tried; Socket.IO {fmt_ceiling(cluster, 'socketio-2nodes', subscribers)}", False)
        elif theirs is None:
            # Socket.IO held none, not even the lowest rate: its ceiling lies below that.
            lowest = their_lowest["offered_per_sec"] * subscribers
            x = ratio(ours, lowest)
            check(name, f"{mine} vs Socket.IO: none of the rates tried (lowest {lowest:,.0f}/s, cross-node p99 "
                        f"{us(judged_p99(their_lowest))}), so more than {x:.1f}x", x >= 3)
        else:
            x = ratio(ours, theirs)
            check(name, f"{mine} vs {theirs:,.0f} ({'at least ' if top else ''}{x:.1f}x, to the ladder's steps)", x >= 3)


def fmt_steal(percent):
    return "n/a" if percent is None else f"{percent:.1f} %"


def us(value):
    return f"{value:,.0f} µs" if value < 10_000 else f"{value / 1000:,.1f} ms"


def cpu_per_message(result):
    return (result.get("server") or {}).get("cpu_us_per_message")


def kernel_per_message(result):
    return (result.get("server") or {}).get("kernel_us_per_message")


def fmt_cpu(result):
    """CPU per message with its kernel part: "4.73 µs (3.40)"."""
    value, kernel = cpu_per_message(result), kernel_per_message(result)
    if value is None:
        return "n/a"
    return f"{value:.2f} µs" + ("" if kernel is None else f" ({kernel:.2f})")


def ratio(a, b):
    return a / b if b else float("nan")


def echo_table(echo, servers, cases):
    """A table: one row per (case, server)."""
    lines = [
        "| connections | size | server | messages/s | MB/s | p50 | p99 | p99.9 | server CPU/msg (kernel) | errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conns, size in cases:
        for server in servers:
            r = echo.get((server, conns, size))
            if r is None:
                continue
            lat = r["latency"]
            lines.append(
                f"| {conns} | {size} B | {server} | {r['messages_per_sec']:,.0f} | "
                f"{r['mb_per_sec']:.1f} | {us(lat['p50_us'])} | {us(lat['p99_us'])} | "
                f"{us(lat['p999_us'])} | {fmt_cpu(r)} | {r['errors']} |"
            )
    return "\n".join(lines)


def ratio_table(echo, subject, references, cases):
    """Messages/s ratios of `subject` against each reference, per case."""
    header = "| connections | size | " + " | ".join(f"vs {r}" for r in references) + " |"
    lines = [header, "|---:|---:|" + "---:|" * len(references)]
    for conns, size in cases:
        s = echo.get((subject, conns, size))
        if s is None:
            continue
        cells = []
        for ref in references:
            r = echo.get((ref, conns, size))
            cells.append(f"{ratio(s['messages_per_sec'], r['messages_per_sec']):.2f}x" if r else "n/a")
        lines.append(f"| {conns} | {size} B | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(echo, chat, publish, idle, cluster, tls):
    """Each benchmark target, with the measured value and whether it was met."""
    rows = []

    def check(name, value, ok):
        rows.append(f"| {name} | {value} | {'met' if ok else '**not met**'} |")

    for conns in (50, 500):
        for size in (64, 4096):
            s = echo.get(("switchboard", conns, size))
            if s is None:
                continue
            case = f"{conns} conns, {size} B"
            c = echo.get(("c-epoll", conns, size))
            for ref, need in (("node-raw", 1.7), ("tokio-echo", 1.15), ("c-epoll", 0.9)):
                r = echo.get((ref, conns, size))
                if r:
                    x = ratio(s["messages_per_sec"], r["messages_per_sec"])
                    measured = f"{x:.2f}x"
                    if ref == "tokio-echo" and c:
                        measured += f" (c-epoll: {ratio(c['messages_per_sec'], r['messages_per_sec']):.2f}x)"
                    check(f"raw {case}: messages/s vs {ref} ≥ {need}x", measured, x >= need)
            t = echo.get(("tokio-echo", conns, size))
            if t:
                check(
                    f"raw {case}: p99 ≤ tokio-echo's",
                    f"{us(s['latency']['p99_us'])} vs {us(t['latency']['p99_us'])}",
                    s["latency"]["p99_us"] <= t["latency"]["p99_us"],
                )
                sc, tc = cpu_per_message(s), cpu_per_message(t)
                if sc is not None and tc is not None:
                    check(f"raw {case}: server CPU/msg ≤ tokio-echo's", f"{sc:.2f} vs {tc:.2f} µs", sc <= tc)
    for conns, size in ((50, 64), (500, 64), (50, 4096), (500, 4096)):
        s, n = echo.get(("switchboard-prefix", conns, size)), echo.get(("node-tutorial", conns, size))
        if s and n:
            x = ratio(s["messages_per_sec"], n["messages_per_sec"])
            check(f"`Echo: ` mode {conns} conns, {size} B: vs node-tutorial ≥ 1.5x", f"{x:.2f}x", x >= 1.5)
    s = idle.get("switchboard")
    if s:
        per = s.get("server_bytes_per_connection")
        if per is not None:
            check(f"{s['requested']:,} idle connections: ≤ 1 KiB server memory each", f"{per:,.0f} B", per <= 1024)
        lost = s["requested"] - s["established"]
        check(
            f"{s['requested']:,} connections set up, none lost",
            f"{s['established']:,} established, listen overflows {s.get('listen_overflows')}",
            lost == 0 and not s.get("listen_overflows"),
        )
    chat_cases = [(t + p, f"{name}, {pacing}") for p, pacing in (("", "spread"), ("-in-step", "in step"))
                  for t, name in (("", "line"), ("-ws", "WebSocket"))]
    for suffix, transport in chat_cases:
        if f"switchboard-chat{suffix}" not in chat:
            continue
        s = chat_median(chat[f"switchboard-chat{suffix}"])
        label = f"chat ({transport}) {s['subscribers']:,} subscribers × {s['offered_per_sec']:.0f} msg/s"
        check(f"{label}: nothing lost, nothing out of order", f"lost {s['lost']}, out of order {s['out_of_order']}",
              s["lost"] == 0 and s["out_of_order"] == 0)
        measured = us(s["latency"]["p99_us"])
        if f"c-epoll-chat{suffix}" in chat:
            measured += f" (c-epoll-chat: {us(chat_median(chat[f'c-epoll-chat{suffix}'])['latency']['p99_us'])})"
        check(f"{label}: p99 delivery < 20 ms (median run)", measured, s["latency"]["p99_us"] < 20_000)
        if f"switchboard-chat-memory{suffix}" in chat:
            m = chat_median(chat[f"switchboard-chat-memory{suffix}"])
            sp, mp = s["latency"]["p99_us"], m["latency"]["p99_us"]
            check(f"{label}: fan-out p99 with SQLite no worse than with --memory (same run; ±15 % is noise here)",
                  f"{us(sp)} vs {us(mp)} ({sp / mp:.2f}x); CPU per delivery "
                  f"{cpu_per_message(s) or 0:.2f} vs {cpu_per_message(m) or 0:.2f} µs", sp <= mp * 1.15)
        if f"node-chat{suffix}" in chat:
            n = chat_median(chat[f"node-chat{suffix}"])
            sc, nc = cpu_per_message(s), cpu_per_message(n)
            if sc is not None and nc:
                measured = f"{sc:.2f} vs {nc:.2f} µs ({sc / nc:.2f}x)"
                c = chat.get(f"c-epoll-chat{suffix}")
                ck = kernel_per_message(chat_median(c)) if c else None
                if ck is not None:
                    measured += f"; c-epoll-chat's kernel part alone: {ck:.2f} µs"
                check(f"{label}: server CPU per delivery ≤ 1/3 of Node's", measured, sc <= nc / 3)
    s = idle.get("switchboard-chat-ws")
    if s and s.get("server_bytes_per_connection") is not None:
        per = s["server_bytes_per_connection"]
        check(f"{s['requested']:,} idle WebSockets on `serve`: ≤ 2 KiB server memory each", f"{per:,.0f} B", per <= 2048)
    for suffix, transport, load, engines in publish_cases(publish):
        memory, sqlite = engines.get("memory"), engines.get("sqlite")
        if not sqlite:
            continue
        if load == "full speed" and memory:
            x = ratio(sqlite["acked_per_sec"], memory["acked_per_sec"])
            check(f"publish ({transport}), full speed: SQLite ≥ 0.8x the --memory acknowledged rate",
                  f"{x:.2f}x ({sqlite['acked_per_sec']:,.0f} vs {memory['acked_per_sec']:,.0f} msg/s)", x >= 0.8)
        if load == "open loop":
            p99 = sqlite["latency"]["p99_us"]
            check(f"publish ({transport}): p99 ack latency < 5 ms at {sqlite['offered_per_sec']:,.0f} msg/s (SQLite)",
                  us(p99), p99 < 5_000)
    cluster_targets(cluster, check)
    for name, value, ok in tls_report.targets(tls):
        check(name, value, ok)
    return "\n".join(["| target | measured | |", "|---|---|---|", *rows])


def client_capacity(echo):
    """What the load client does on its own thread, against the C server."""
    one, many = echo.get(("c-epoll", 50, 64)), echo.get((PIPELINED, 50, 64))
    if not (one and many and one.get("server")):
        return "Not measured in this run."
    return (
        f"Against c-epoll at 50 connections × 64 B, `switchboard bench echo` (one thread) completed "
        f"{many['messages_per_sec']:,.0f} messages/s with 8 requests in flight per connection "
        f"(`--pipeline 8`; client at {many['client_cpu_percent']:.0f} % of its core). "
        f"With one in flight, as in the tables above, it was {one['messages_per_sec']:,.0f} messages/s, with the server at "
        f"{one['server']['cpu_seconds'] / one['seconds'] * 100:.0f} % of its core and the client at "
        f"{one['client_cpu_percent']:.0f} %: each exchange costs both ends a loopback send and receive "
        f"in the kernel, so both are near a full core and messages/s is set by whichever is slower. "
        f"Server CPU per message does not depend on that."
    )


def idle_table(idle):
    lines = [
        "| server | established | alive after hold | server memory / connection | listen overflows | setup |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for server, r in idle.items():
        per = r.get("server_bytes_per_connection")
        lines.append(
            f"| {server} | {r['established']:,} / {r['requested']:,} | {r['alive_after_hold']:,} | "
            f"{'n/a' if per is None else f'{per:,.0f} B'} | {r.get('listen_overflows')} | "
            f"{r['setup_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--command", default="bench/run.sh")
    parser.add_argument("--tls", help="bench/tls.sh's results, for the TLS section")
    args = parser.parse_args()
    echo, chat, publish, idle, cluster = load(args.results)
    tls = tls_report.load(args.tls) if args.tls and os.path.exists(args.tls) else []
    cases = [(c, s) for c in (1, 50, 500) for s in (64, 4096)]
    raw_servers = ["switchboard", *RAW_REFERENCES]
    print(f"""# Benchmarks

Measured {datetime.date.today().isoformat()} on {machine()}.
Reproduce with `{args.command}`. Every server ran pinned to CPU 0 and the
load client (`switchboard bench`, one thread) to CPU 1, all in one run; each
case ran once per round with the servers interleaved, each time on a fresh
server process, and the tables show medians. These machines are noisy
(the same server varies ±15 % between runs): compare ratios, and do not trust
a difference under ~10 %. "server CPU/msg" is the server's user+system CPU time
per reply over the measured window (from `/proc/PID/stat`); it does not depend
on which side saturates first. In brackets, the part of it spent in the kernel
(`stime`): on loopback that includes the receiving side's TCP work for every
write, a cost any server pays per write, however little it does itself.

## Targets

{targets(echo, chat, publish, idle, cluster, tls)}

## Raw echo (`switchboard echo --raw`)

switchboard's messages/s relative to each reference:

{ratio_table(echo, "switchboard", RAW_REFERENCES, cases)}

{echo_table(echo, raw_servers, cases)}

## `Echo: ` prefix mode (the Node tutorial's behaviour)

switchboard (`switchboard echo`) relative to the Node tutorial server:

{ratio_table(echo, "switchboard-prefix", ["node-tutorial"], cases)}

{echo_table(echo, ["switchboard-prefix", "node-tutorial"], cases)}

## The load client

{client_capacity(echo)}

## Chat fan-out (`switchboard serve` against the Node `ws` reference hub)

`switchboard bench chat`: subscribers and publishers in one room over the line
protocol (rows with `-ws`: WebSockets at `/ws` speaking JSON), with enough
publishers that none exceeds 15 messages/s. By default the publishers are
spread evenly in time, so the room gets a steady stream (one message every
5 ms at 200/s); rows ending `-in-step` ran with `--in-step`, every publisher
sending at the same instant each period: bursts of one message per publisher,
which a server can batch into one write per member. Latency is from the
publisher's scheduled send time (in the text) to the subscriber reading it.
"lost" counts deliveries of messages sent in the window that had not arrived
2 s after it ended: for a saturated server that is late, not necessarily dropped.
"subscribers joined" is how many of the requested subscribers completed their
handshake and join in time (the rest count as errors); lost, deliveries and CPU
per delivery are over the joined ones. The last column is the share of the
machine's CPU time the hypervisor took during the window (`steal` in
`/proc/stat`): time nobody on this virtual machine could use, which shows up
as latency.

{chat_table(chat)}

## Acknowledged messages: the message log (`bench publish`)

`switchboard bench publish`: {publish_setup(publish)}, speaking the JSON protocol (line clients after `/json`; `WebSocket`
rows over `/ws`), each `say` carrying a `ref`. The hub acknowledges a message
only once its log committed it, so this is what the log costs as clients see
it: `serve --memory` against SQLite (`serve --data DIR`, a fresh directory
each run), both with `--rate 0` (no per-connection limit), interleaved per
round. "full speed" is the closed loop (one request in flight per publisher,
the next sent on its ack): the most the hub acknowledges per second. The open
loop sends a set rate in all, spread evenly in time, and measures latency
from each message's scheduled send time to its ack. Publishers are members of
their rooms, so every message also comes back to every publisher in its room:
the server's CPU per message includes those deliveries. Errors are error
replies (e.g. `unavailable` when the log could not commit) and failed
connections.

{publish_table(publish)}

Long run: {publish_long(publish)}

## A cluster: nodes on one Redis (`bench chat` against several nodes)

One room, its members spread round-robin over the nodes (publishers too, so
publishers are on every node), everything over WebSockets: switchboard's
JSON protocol at `/ws`, and Socket.IO (Engine.IO v4 over WebSocket) against
`bench/servers/socketio_chat.mjs`, Socket.IO 4 with `@socket.io/redis-adapter`
and the `redis` client, two Node processes on the same Redis. "one node" is
`serve` alone (history in SQLite, as by default); the two-node setups share a
fresh `redis-server` (no persistence: `--save '' --appendonly no`). The nodes
and Redis all run on CPU 0 and the load client on CPU 1, so every setup has
the same one core for all its server-side work: on one machine two nodes
cannot scale out, and what this shows is what the Redis hop costs.
A cross-node delivery is one whose publisher is on another node than its
subscriber; with two nodes a run is judged by the cross-node p99, with one
node by the p99. Each setup steps up the rate, each round, until it is
plainly overloaded (that p99 over 100 ms, or deliveries lost); the rates
above are then not run for it that round. "server CPU/delivery" is the nodes' CPU time added up, per
delivery; "Redis CPU/msg" is Redis's CPU time per message published.

Most deliveries/s offered with the judged p99 under 25 ms and nothing lost
(median run of each rate; "≥" where the highest rate tried still held):

{cluster_ceilings(cluster) if cluster else "Not run."}

{cluster_table(cluster) if cluster else ""}

## TLS: the same hub over TLS and plaintext (`bench/tls.sh`)

One `serve --memory --tls-self-signed` (plain and TLS clients on the same
port), driven by `bench chat` with 1,000 members in one room, publishers
spread in time: WebSocket members over `ws://` and `wss://`, line members
over `HOST:PORT` and `tls://HOST:PORT` (TLS 1.3, AES-GCM); cases interleaved,
a fresh server per run. Then `bench idle` holds WebSockets over each. The
last column is the load client's own CPU: near 100 % the client, which
decrypts every delivery on its one core, is what the latency measures.

{tls_report.tables(tls) if tls else "Not run."}

## Idle connections

{idle_table(idle)}

The servers: `switchboard` is `switchboard echo --raw`; `tokio-echo` is
`bench/servers/tokio_echo.rs` (the tokio README's echo: a task and a 4 KiB
buffer per connection); `node-raw` and `node-tutorial` are
`bench/servers/node_echo.mjs` (`socket.pipe(socket)`, and the tutorial's
`Echo: ` handler without its per-message log); `c-epoll` is
`bench/servers/epoll_echo.c` (single-threaded edge-triggered epoll, the
machine's practical ceiling); `node-chat` is `bench/servers/node_chat.mjs`
(`net` and the `ws` package, the same protocols as `switchboard serve`);
`c-epoll-chat` is `bench/servers/epoll_chat.c` (single-threaded edge-triggered
epoll speaking just the line protocol's join and say, one `write` per member
per message straight from the read loop: no queues, ids, history or limits).
""")


if __name__ == "__main__":
    main()
