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
    Figure("Capacity model", "DynamoDB write units per unchanged heartbeat", "≤ 0.2", "WCU",
           "capacity.fleet.wcu_per_heartbeat.median", "capacity.fleet.wcu_per_heartbeat", meets=lambda v: v <= 0.2),
    Figure("Capacity model", "busiest partition key at 10,000 agents", "< 1,000", "WCU/s",
           "capacity.fleet.busiest_key_wcu_per_s_at_10k.median", "capacity.fleet.busiest_key_wcu_per_s_at_10k",
           meets=lambda v: v < 1000),
    Figure("Capacity model", "which key is busiest", "", "", "capacity.fleet.busiest_key"),
    Figure("Capacity model", "write units per ledger event (transactional, incl. GSI1)", "", "WCU",
           "capacity.ledger.wcu_per_event"),
    Figure("Capacity model", "ledger event item size", "", "bytes", "capacity.ledger.event_item_bytes_median"),
    Figure("Capacity model", "read units per heartbeat (model, one tenant, 10,000 agents)", "", "RCU",
           "capacity.reads.rcu_per_heartbeat_steady_at_10k_one_tenant"),
]

CHARTS: list[Callable[[dict[str, Any], Path], Path | None]] = []


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
    for figure in FIGURES:
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
