"""AI-agent discovery: what it adds to `lz-agent scan`, and the agent's idle CPU with it on.

    python benchmarks/bench_agents.py --json OUT [--quick] [--projects N] [--configs M] [--idle-seconds S]

A home is planted with N projects (each with a `.vscode/` or `.cursor/` folder, a few source files and
a `node_modules/` the walk must skip) and M agent configurations (every agent's user files from the test
fixtures, the rest project `mcp.json` files). The scan cost is `agent.snapshot.collect` with agent discovery
on minus the same call with it off, in the same process, median of several runs (target < 1 s); the file
half (`scan_configs`) and the per-heartbeat half (processes only, files cached) are reported apart.

Idle CPU: the local stack starts, a real `lz-agent run` enrolls and streams at a 5 s heartbeat over that
home with nothing changing; its CPU time (utime + stime from /proc) over a window after a warm-up, as a
share of one core (target < 1 %). The same run with agent discovery off is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc

from agent.config import Config
from agent.discovery.agents import discover_agents, scan_configs
from agent.platform import current_platform
from agent.snapshot import agent_settings, collect
from services.kit.devstack import Stack
from tests.agent.agent_homes import FIXTURES, Credentials, plant

REPO = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


def plant_home(home: Path, projects: int, configs: int) -> int:
    """Projects and agent configurations under ``home``; the number of configuration files planted."""
    credentials = Credentials.generate()
    for kind in sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()):
        plant(kind, home, credentials)
    planted = sum(1 for p in home.rglob("*") if p.is_file())
    server = json.dumps({"mcpServers": {"fs": {"command": "npx", "args": ["-y",
                         "@modelcontextprotocol/server-filesystem", "."]}}})
    for number in range(projects):
        project = home / "code" / f"group{number % 40}" / f"project{number}"
        folder = project / (".vscode" if number % 2 else ".cursor")
        folder.mkdir(parents=True)
        (project / "src").mkdir()
        for name in ("main.py", "util.py", "README.md"):
            (project / "src" / name).write_text("x = 1\n")
        (project / "node_modules" / "left-pad").mkdir(parents=True)
        if planted < configs:
            (folder / "mcp.json").write_text(server)
            planted += 1
    return planted


def _median_seconds(call: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def scan_cost(home: Path, runs: int) -> dict[str, Any]:
    base = Config(state_dir=home.parent / "state", model_homes=(str(home),), model_roots=(),
                  agent_homes=(str(home),), agent_password_db=False)
    off = replace(base, agents_enabled=False)
    settings = agent_settings(base)
    collect(base)  # warm the page cache and imports alike for both variants
    with_agents = _median_seconds(lambda: collect(base), runs)
    without = _median_seconds(lambda: collect(off), runs)
    files = _median_seconds(lambda: scan_configs(settings), runs)
    cached = scan_configs(settings)
    per_beat = _median_seconds(lambda: discover_agents(current_platform(), settings, (), cached), runs)
    found = collect(base)
    return {
        "runs": runs,
        "collect_with_agents_s": round(with_agents, 4),
        "collect_without_agents_s": round(without, 4),
        "added_s": round(with_agents - without, 4),
        "config_files_scan_s": round(files, 4),
        "per_heartbeat_with_cached_files_s": round(per_beat, 4),
        "mcp_servers_found": len(found.mcp_servers),
        "agents_found": len(found.agents),
        "target_added_s": 1.0,
        "meets_target": with_agents - without < 1.0,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def idle_cpu(stack: Stack, home: Path, workdir: Path, agents_enabled: bool, warmup: float, window: float) -> float:
    """One real agent's CPU share of a core while nothing changes."""
    tenant = f"bench-{secrets.token_hex(3)}"
    with grpc.insecure_channel(stack.addresses["assets"]) as channel:
        reply = assets_pb2_grpc.AssetServiceStub(channel).CreateTenant(
            assets_pb2.CreateTenantRequest(tenant_id=tenant, display_name=tenant),
            metadata=[("authorization", f"Bearer {stack.bootstrap_token}")], timeout=10)
    state = workdir / f"state-{tenant}"
    config = workdir / f"{tenant}.toml"
    config.write_text(f'state_dir = "{state}"\n[models]\nhomes = ["{home}"]\nroots = []\n'
                      f'[agents]\nenabled = {str(agents_enabled).lower()}\nhomes = ["{home}"]\npassword_db = false\n'
                      '[stream]\nheartbeat_interval = 5\nfirst_reconnect_jitter = 0\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agent = [sys.executable, "-m", "agent.cli", "--config", str(config)]
    subprocess.run([*agent, "enroll", "--tenant", tenant, "--control-plane", stack.addresses["ingest"]],
                   env={**env, "LZ_ENROLLMENT_SECRET": reply.enrollment_secret}, check=True, capture_output=True)
    with open(workdir / f"{tenant}.log", "ab") as log:
        process = subprocess.Popen([*agent, "run", "--duration", str(warmup + window + 30)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(warmup)
        cpu0, t0 = _cpu_seconds(process.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = _cpu_seconds(process.pid), time.monotonic()
    finally:
        process.terminate()
        process.wait(30)
    return (cpu1 - cpu0) / (t1 - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="200 projects, 3 runs, a 10 s idle window")
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.projects, args.runs, args.idle_seconds, args.warmup_seconds = 200, 3, 10.0, 8.0
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    home = workdir / "home"
    planted = plant_home(home, args.projects, args.configs)
    result: dict[str, Any] = {
        "method": f"a home with {args.projects} projects and {planted} agent configuration files; scan cost is "
                  f"collect() with agent discovery minus without, median of {args.runs} runs in one process; "
                  f"idle CPU is a real lz-agent run at a 5 s heartbeat, {args.idle_seconds:g} s window after "
                  f"a {args.warmup_seconds:g} s warm-up, with and without agent discovery in the same run",
        "projects": args.projects,
        "config_files": planted,
        "scan": scan_cost(home, args.runs),
    }
    stack = Stack(state_dir=workdir / "stack", extra_env={"LZ_LOG_LEVEL": "WARNING"})
    stack.start()
    try:
        on = idle_cpu(stack, home, workdir, True, args.warmup_seconds, args.idle_seconds)
        off = idle_cpu(stack, home, workdir, False, args.warmup_seconds, args.idle_seconds)
    finally:
        stack.stop()
    result["idle_cpu"] = {"percent_of_core_with_agents": round(on * 100, 3),
                          "percent_of_core_without_agents": round(off * 100, 3),
                          "target_percent": 1.0, "meets_target": on * 100 < 1.0}
    result["elapsed_seconds"] = round(time.monotonic() - began, 1)
    report = json.dumps(result, indent=2)
    print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
