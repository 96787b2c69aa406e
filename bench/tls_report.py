"""Tables and targets for `bench/tls.sh` results (one JSON row per run), used
by tls.sh itself and by report.py for BENCHMARKS.md."""

import json
import statistics
import sys

median = statistics.median_high

# Each TLS client kind and the plaintext kind it is compared with.
PAIRS = (("wss", "ws"), ("tls", "line"))


def load(path):
    with open(path) as rows:
        return [json.loads(line) for line in rows]


def builds(rows):
    return sorted({r["build"] for r in rows}, key=lambda build: build != "before")


def label(kind, build, several):
    scheme = kind + ("://" if kind in ("ws", "wss", "tls") else "")
    return scheme + (f" ({build})" if several else "")


def chat_runs(rows, rate, kind, build="now"):
    return [r["result"] for r in rows
            if r["case"] == "chat" and r["rate"] == rate and r["kind"] == kind
            and r["build"] == build]


def idle_runs(rows, kind, build="now"):
    return [r["result"] for r in rows
            if r["case"] == "idle" and r["kind"] == kind and r["build"] == build]


def cpu(runs):
    return median([r["server"]["cpu_us_per_message"] for r in runs])


def p99_ms(runs):
    return median([r["latency"]["p99_us"] for r in runs]) / 1000


def tables(rows):
    every_build = builds(rows)
    several = len(every_build) > 1
    rates = sorted({r["rate"] for r in rows if r["case"] == "chat"})
    lines = [
        "| members × msg/s | clients | runs | deliveries/s | p50 | p99 | p99 of each run | lost "
        "| server CPU/delivery (kernel) | load client CPU |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for rate in rates:
        for kind in ("ws", "wss", "line", "tls"):
            for build in every_build:
                runs = chat_runs(rows, rate, kind, build)
                if not runs:
                    continue
                p99s = [r["latency"]["p99_us"] for r in runs]
                lines.append(
                    f'| {runs[0]["subscribers"]:,} × {rate} | {label(kind, build, several)} '
                    f'| {len(runs)} | {median([r["deliveries_per_sec"] for r in runs]):,.0f} '
                    f'| {median([r["latency"]["p50_us"] for r in runs]) / 1000:.1f} ms '
                    f'| {p99_ms(runs):.1f} ms | {", ".join(f"{p / 1000:.1f}" for p in p99s)} ms '
                    f'| {sum(r["lost"] for r in runs)} | {cpu(runs):.2f} µs '
                    f'({median([r["server"]["kernel_us_per_message"] for r in runs]):.2f}) '
                    f'| {median([r["client_cpu_percent"] for r in runs]):.0f} % |')
    lines += [
        "",
        "| idle WebSockets | runs | alive after hold | server memory / connection (each run) |",
        "|---|---:|---:|---:|",
    ]
    for kind in ("ws", "wss"):
        for build in every_build:
            runs = idle_runs(rows, kind, build)
            if not runs:
                continue
            each = [r["server_bytes_per_connection"] for r in runs]
            lines.append(
                f'| {label(kind, build, several)} | {len(runs)} '
                f'| {min(r["alive_after_hold"] for r in runs):,} '
                f'| {median(each):,.0f} B ({", ".join(f"{b:,.0f}" for b in each)}) |')
    return "\n".join(lines)


def same_p99_ratio(rows, secure, plain):
    """Deliveries/s of `secure` at plaintext's p99 on its top step: the
    highest step whose p99 is no higher, against plaintext's top step."""
    rates = sorted({r["rate"] for r in rows if r["case"] == "chat"})
    plain_steps = [rate for rate in rates if chat_runs(rows, rate, plain)]
    secure_steps = [rate for rate in rates if chat_runs(rows, rate, secure)]
    if not plain_steps or not secure_steps:
        return None
    top = plain_steps[-1]
    bound = p99_ms(chat_runs(rows, top, plain))
    under = [rate for rate in secure_steps if p99_ms(chat_runs(rows, rate, secure)) <= bound]
    if not under:
        return (0.0, bound, top, None)
    return (under[-1] / top, bound, top, under[-1])


def targets(rows):
    """Target rows for BENCHMARKS.md: (what, measured, met)."""
    found = []
    rates = sorted({r["rate"] for r in rows if r["case"] == "chat"})
    for secure, plain in PAIRS:
        lowest = next((rate for rate in rates
                       if chat_runs(rows, rate, secure) and chat_runs(rows, rate, plain)), None)
        if lowest is None:
            continue
        secure_runs, plain_runs = chat_runs(rows, lowest, secure), chat_runs(rows, lowest, plain)
        members = secure_runs[0]["subscribers"]
        share = cpu(secure_runs) / cpu(plain_runs)
        found.append((
            f"TLS, {members:,} members × {lowest} msg/s: server CPU per delivery over "
            f"{label(secure, 'now', False)} ≤ 1.7x {label(plain, 'now', False)}",
            f"{share:.2f}x ({cpu(secure_runs):.2f} vs {cpu(plain_runs):.2f} µs)",
            share <= 1.7))
        ladder = same_p99_ratio(rows, secure, plain)
        if ladder:
            share, bound, top, step = ladder
            held = f"{step * members:,}" if step else "no step"
            found.append((
                f"TLS: deliveries/s over {label(secure, 'now', False)} at the same p99 ≥ 0.6x "
                f"{label(plain, 'now', False)}",
                f"{share:.2f}x by the ladder's steps ({held} at p99 ≤ {bound:.1f} ms, "
                f"plaintext's at {top * members:,}/s)",
                share >= 0.6))
    secure_idle, plain_idle = idle_runs(rows, "wss"), idle_runs(rows, "ws")
    if secure_idle and plain_idle:
        secure_bytes = median([r["server_bytes_per_connection"] for r in secure_idle])
        plain_bytes = median([r["server_bytes_per_connection"] for r in plain_idle])
        share = secure_bytes / plain_bytes
        found.append((
            "TLS: an idle wss:// WebSocket within 2x of ws://",
            f"{share:.2f}x ({secure_bytes:,.0f} vs {plain_bytes:,.0f} B)",
            share <= 2))
    return found


if __name__ == "__main__":
    print(tables(load(sys.argv[1])))
