"""The benchmark report: every figure with its target, median, spread and the machine it ran on.

Figures are read from each benchmark's raw JSON by dotted path (`fleet.sizes.1000.ingest.p99_ms`);
a figure whose path is missing is reported as not measured, with the benchmark's error if it had one,
so the report never shows a number that was not produced by this run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    target: str
    unit: str
    median: str
    spread: str = ""
    meets: Callable[[float], bool] | None = None


def get(data: Any, path: str) -> Any:
    """The value at a dotted path ('a.b.0.c'), or None."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


FIGURES: list[Figure] = [
    Figure("Transparency log", "inclusion-proof verification", "< 50 µs", "µs",
           "tlog.inclusion.verify_median_us", "tlog.inclusion.verify_runs_us", meets=lambda v: v < 50),
    Figure("Transparency log", "tree head build, leaves/s", "", "leaves/s", "tlog.build.leaves_per_second",
           "tlog.build.leaves_per_second_runs"),
    Figure("Transparency log", "tree head build vs raw hashlib (same bytes, same run)", "≥ 0.5", "×",
           "tlog.build.fraction_of_raw_hashlib", "tlog.build.fraction_of_raw_hashlib_runs", meets=lambda v: v >= 0.5),
    Figure("Audit (10^5 events quick, 10^6 full)", "events walked", "", "events", "tlog.audit.walk.events"),
    Figure("Audit (10^5 events quick, 10^6 full)", "in-memory walk (chain, canonical form, tree), CPU time", "≥ 250,000",
           "events/s", "tlog.audit.walk.walk_events_per_second", "tlog.audit.walk.walk_events_per_second_runs",
           meets=lambda v: v >= 250_000),
    Figure("Audit (10^5 events quick, 10^6 full)", "in-memory walk vs raw hashlib (same bytes, same run)", "≥ 0.25",
           "×", "tlog.audit.walk.fraction_of_raw_hashlib", "tlog.audit.walk.fraction_of_raw_hashlib_runs",
           meets=lambda v: v >= 0.25),
    Figure("Audit (10^5 events quick, 10^6 full)", "lz-verify bundle", "", "events/s",
           "tlog.audit.bundle.events_per_second"),
    Figure("Audit (10^5 events quick, 10^6 full)", "lz-verify bundle, whole process", "≤ 10 s at 10^6", "s",
           "tlog.audit.bundle.process_seconds"),
    Figure("Audit (10^5 events quick, 10^6 full)", "lz-verify bundle, whole process, CPU time", "≤ 10 s at 10^6", "s",
           "tlog.audit.bundle.process_cpu_seconds"),
    Figure("Audit (10^5 events quick, 10^6 full)", "lz-verify bundle peak resident memory", "< 200", "MiB",
           "tlog.audit.bundle.peak_rss_mib", meets=lambda v: v < 200),
    Figure("Capacity model", "DynamoDB write units per unchanged heartbeat", "≤ 0.2", "WCU",
           "capacity.fleet.wcu_per_heartbeat.median", "capacity.fleet.wcu_per_heartbeat", meets=lambda v: v <= 0.2),
    Figure("Capacity model", "busiest partition key at 10,000 agents", "< 1,000", "WCU/s",
           "capacity.fleet.busiest_key_wcu_per_s_at_10k.median", "capacity.fleet.busiest_key_wcu_per_s_at_10k",
           meets=lambda v: v < 1000),
    Figure("Capacity model", "which key is busiest", "", "", "capacity.fleet.busiest_key"),
    Figure("Capacity model", "write units per ledger event (transactional, incl. GSI1)", "", "WCU",
           "capacity.ledger.wcu_per_event"),
    Figure("Capacity model", "ledger event item size", "", "bytes", "capacity.ledger.event_item_bytes_median"),
    Figure("Capacity model", "read units per heartbeat (model, one tenant, 10,000 agents, no pending command)", "",
           "RCU", "capacity.reads.rcu_per_heartbeat_steady_at_10k_one_tenant.idle"),
    Figure("Capacity model", "read units per heartbeat (model, one tenant, 10,000 agents, commands pending)", "",
           "RCU", "capacity.reads.rcu_per_heartbeat_steady_at_10k_one_tenant.with_pending_commands"),
    Figure("Isolation latency (IsolateAsset → agent confirmed)", "agents connected", "1,000", "", "isolation.connected"),
    Figure("Isolation latency (IsolateAsset → agent confirmed)", "isolations confirmed", "", "",
           "isolation.confirmed"),
    Figure("Isolation latency (IsolateAsset → agent confirmed)", "p50", "", "ms", "isolation.latency_ms.p50"),
    Figure("Isolation latency (IsolateAsset → agent confirmed)", "p99", "< 1,000 ms", "ms", "isolation.latency_ms.p99",
           meets=lambda v: v < 1000),
    Figure("Isolation latency, three ingest replicas", "agents connected", "1,000", "", "isolation-replicas.connected"),
    Figure("Isolation latency, three ingest replicas", "p50", "", "ms", "isolation-replicas.latency_ms.p50"),
    Figure("Isolation latency, three ingest replicas", "p99", "< 1,000 ms", "ms",
           "isolation-replicas.latency_ms.p99", meets=lambda v: v < 1000),
    Figure("Isolation latency, three ingest replicas", "orders forwarded to the holding replica", "", "",
           "isolation-replicas.delivery_paths.DELIVERY_PATH_FORWARDED"),
    Figure("Isolation latency, three ingest replicas", "orders that found no stream (left to the poll)", "0", "",
           "isolation-replicas.delivery_paths.DELIVERY_PATH_NOT_HELD", meets=lambda v: v == 0),
    Figure("Isolation bursts (one tenant, agents confirming)", "sequential: IsolateAsset RPC p99", "", "ms",
           "isolation.isolate_call_ms.p99"),
    Figure("Isolation bursts (one tenant, agents confirming)", "50 at once: failures", "0", "",
           "isolation.bursts.50.failures", meets=lambda v: v == 0),
    Figure("Isolation bursts (one tenant, agents confirming)",
           "50 at once: IsolateAsset RPC p99 (median of the bursts)", "< 250 ms", "ms",
           "isolation.bursts.50.rpc_ms.p99", "isolation.bursts.50.rpc_ms.p99_runs", meets=lambda v: v < 250),
    Figure("Isolation bursts (one tenant, agents confirming)",
           "50 at once: order → ISOLATED p99 (median of the bursts)", "< 1,000 ms", "ms",
           "isolation.bursts.50.isolated_ms.p99", "isolation.bursts.50.isolated_ms.p99_runs", meets=lambda v: v < 1000),
    Figure("Isolation bursts (one tenant, agents confirming)", "500 at once: failures", "0", "",
           "isolation.bursts.500.failures", meets=lambda v: v == 0),
    Figure("AI agents and MCP servers", "added to a scan (2,000 projects and 100 configs; fewer with --quick)", "< 1 s", "s",
           "agents.scan.added_s", meets=lambda v: v < 1),
    Figure("AI agents and MCP servers", "agent files scan alone", "", "s", "agents.scan.config_files_scan_s"),
    Figure("AI agents and MCP servers", "per heartbeat, files cached", "", "s",
           "agents.scan.per_heartbeat_with_cached_files_s"),
    Figure("AI agents and MCP servers", "idle agent CPU at a 5 s heartbeat", "< 1 %", "% of a core",
           "agents.idle_cpu.percent_of_core_with_agents", meets=lambda v: v < 1),
    Figure("AI agents and MCP servers", "idle agent CPU, agent discovery off (same run)", "", "% of a core",
           "agents.idle_cpu.percent_of_core_without_agents"),
    Figure("Ledger", "group-commit append throughput (one tenant)", "≥ 1,000", "events/s",
           "ledger.append.group_commit.events_per_s", meets=lambda v: v >= 1000),
    Figure("Ledger", "one put per event, same run", "", "events/s", "ledger.append.single_put_per_event.events_per_s"),
    Figure("Ledger", "group commit / one put per event", "≥ 5×", "×", "ledger.append.group_commit_speedup",
           meets=lambda v: v >= 5),
    Figure("Ledger", "append latency p50 (group commit)", "", "ms", "ledger.append.group_commit.p50_ms"),
    Figure("Ledger", "append latency p99 (group commit)", "", "ms", "ledger.append.group_commit.p99_ms"),
    Figure("Ledger", "DynamoDB calls per event (group commit)", "", "calls", "ledger.append.group_commit.dynamodb_calls_per_event"),
    Figure("Ledger", "full verification throughput", "", "events/s", "ledger.full_verify.verify_full_events_per_s"),
    Figure("Ledger", "full verification time (10^5 events; --quick: 10^4)", "≤ 5 s at 10^5", "s",
           "ledger.full_verify.verify_full_s"),
    Figure("Ledger", "full verification CPU of the verifier (botocore and the walk)", "", "s",
           "ledger.full_verify.verify_full_reader_cpu_s"),
    Figure("Ledger", "full verification CPU of the embedded endpoint", "", "s",
           "ledger.full_verify.verify_full_endpoint_cpu_s"),
    Figure("Ledger", "hashing share of the full walk (raw hashlib time / walk time)", "", "×",
           "ledger.full_verify.raw_hashlib_time_fraction_of_walk"),
    Figure("Sealer", "burst size", "50,000", "events", "ledger.sealer_catch_up.burst"),
    Figure("Sealer", "peak pending during the burst", "", "events", "ledger.sealer_catch_up.peak_pending"),
    Figure("Sealer", "catch-up after the burst ends", "", "s", "ledger.sealer_catch_up.catch_up_after_burst_s"),
]

def _plot(out: Path, name: str, draw: Callable[[Any], None]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=110)
    draw(axes)
    figure.tight_layout()
    path = out / f"{name}.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def _fleet_chart(results: dict[str, Any], out: Path) -> Path | None:
    sizes = get(results, "fleet.sizes")
    if not isinstance(sizes, dict) or not sizes:
        return None
    points = sorted((int(n), s) for n, s in sizes.items() if isinstance(s, dict))

    def draw(axes: Any) -> None:
        for role, style in (("ingest", "o-"), ("echo", "s--")):
            xs = [n for n, s in points if get(s, f"{role}.ack_p99_ms.median") is not None]
            ys = [get(s, f"{role}.ack_p99_ms.median") for n, s in points if n in xs]
            axes.plot(xs, ys, style, label=f"{role} p99")
        axes.axhline(50, color="grey", linestyle=":", label="target 50 ms")
        axes.set_xlabel("agent streams")
        axes.set_ylabel("ack latency p99 (ms)")
        axes.set_yscale("log")
        axes.legend()

    return _plot(out, "fleet_p99", draw)


def _ledger_chart(results: dict[str, Any], out: Path) -> Path | None:
    proofs = get(results, "ledger.inclusion_proof")
    if not isinstance(proofs, list) or not proofs:
        return None

    def draw(axes: Any) -> None:
        xs = [p["tree_size"] for p in proofs]
        axes.plot(xs, [p["median_ms"] for p in proofs], "o-", label="inclusion proof (ms)")
        axes.plot(xs, [p["max_tile_reads"] for p in proofs], "s--", label="tile reads")
        axes.set_xscale("log")
        axes.set_xlabel("events in the ledger")
        axes.legend()

    return _plot(out, "ledger_inclusion", draw)


CHARTS: list[Callable[[dict[str, Any], Path], Path | None]] = [_fleet_chart, _ledger_chart]


def fleet_figures(results: dict[str, Any]) -> list[Figure]:
    """The fleet figures of every fleet size the run measured (1,000 / 5,000 / 10,000, or the quick size)."""
    sizes = get(results, "fleet.sizes")
    figures: list[Figure] = []
    for n in sorted(int(k) for k in sizes) if isinstance(sizes, dict) else []:
        section = f"Fleet ({n:,} streams, 5 s heartbeat, one ingest process)"
        base = f"fleet.sizes.{n}"
        figures += [
            Figure(section, "streams connected", f"{n:,}", "", f"{base}.ingest.connected",
                   meets=lambda v, n=n: v >= n),
            Figure(section, "connect attempts that failed meanwhile (reasons in the raw JSON)", "", "",
                   f"{base}.ingest.failed_connects"),
            Figure(section, "heartbeats/s", f"{n // 5:,}", "hb/s", f"{base}.ingest.heartbeats_per_second.median",
                   f"{base}.ingest.heartbeats_per_second"),
            Figure(section, "ack latency p50", "", "ms", f"{base}.ingest.ack_p50_ms.median",
                   f"{base}.ingest.ack_p50_ms"),
            Figure(section, "ack latency p99", "≤ 50 ms", "ms", f"{base}.ingest.ack_p99_ms.median",
                   f"{base}.ingest.ack_p99_ms", meets=lambda v: v <= 50),
            Figure(section, "bare grpc.aio echo ack latency p99 (same run, same simulators)", "",
                   "ms", f"{base}.echo.ack_p99_ms.median", f"{base}.echo.ack_p99_ms"),
            Figure(section, "ingest CPU per heartbeat", "", "ms", f"{base}.ingest.cpu_ms_per_heartbeat.median",
                   f"{base}.ingest.cpu_ms_per_heartbeat"),
            Figure(section, "bare grpc.aio echo CPU per heartbeat (same run)", "", "ms",
                   f"{base}.echo.cpu_ms_per_heartbeat.median", f"{base}.echo.cpu_ms_per_heartbeat"),
            Figure(section, "CPU per heartbeat, ingest / echo", "≤ 2×", "×", f"{base}.ratio_cpu_per_heartbeat",
                   meets=lambda v: v <= 2),
            Figure(section, "memory per stream (ingest)", "", "KiB", f"{base}.ingest.memory_kib_per_stream"),
        ]
    return figures


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        if low is not None and high is not None:
            return f"{_fmt(low)} – {_fmt(high)}"
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return f"{_fmt(min(value))} – {_fmt(max(value))}"
    return str(value)


def write(summary: dict[str, Any], out: Path) -> Path:
    results = summary["results"]
    machine = summary["machine"]
    lines = [
        "# LifecycleZero benchmark report",
        "",
        f"Measured {machine['date']} on {machine['cores']} cores, {machine['memory_gib']} GiB "
        f"({machine['cpu']}, Linux {machine['kernel']}), Python {machine['python']}, commit {machine['commit']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        "Every figure is the median over at least three runs or measurement windows of the same run;",
        "the spread is the lowest to highest of those. Ratios compare against a baseline measured in",
        "the same run on the same machine. The embedded AWS endpoint (moto) runs on the same cores, so",
        "absolute figures are far below what real DynamoDB, S3 and SQS allow; ratios travel better.",
        "" if not summary.get("quick") else "\n**Quick run (`make bench-quick`): reduced sizes.**",
        "",
    ]
    section = None
    for figure in [*FIGURES, *fleet_figures(results)]:
        if figure.section != section:
            section = figure.section
            lines += ["", f"## {section}", "", "| figure | target | median | spread | unit | meets target |",
                      "|---|---|---|---|---|---|"]
        value = get(results, figure.median)
        spread = get(results, figure.spread) if figure.spread else None
        verdict = ""
        if isinstance(value, int | float) and figure.meets is not None:
            verdict = "yes" if figure.meets(float(value)) else "**no**"
        lines.append(f"| {figure.name} | {figure.target or '—'} | {_fmt(value)} | "
                     f"{_fmt(spread) if figure.spread else '—'} | {figure.unit} | {verdict} |")
    errors = {name: r["error"] for name, r in results.items() if isinstance(r, dict) and "error" in r}
    if errors:
        lines += ["", "## Benchmarks that did not finish", ""]
        lines += [f"- **{name}**: {error} (log in `raw/{name}.log`)" for name, error in errors.items()]
    charts = [chart(results, out) for chart in CHARTS]
    pictures = [c for c in charts if c is not None]
    if pictures:
        lines += ["", "## Charts", ""] + [f"![{p.stem}]({p.name})" for p in pictures]
    lines += ["", f"Total benchmark time: {summary['total_seconds']:.0f} s. Raw results: `results.json`, `raw/`.", ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
