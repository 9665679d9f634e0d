"""`make demo`: the whole system on one machine, every claim checked, in about a minute.

`python -m lz.demo` starts the embedded AWS endpoint and every service (`services.kit.devstack.Stack`)
in a temporary directory on free ports, so it never collides with `make up`; creates a tenant; lets
`lz-agent simulate` enroll a fleet of simulated hosts; watches alerts arrive; runs one real `lz-agent` over a
home whose Cursor config gives a file-system MCP server the whole home and a GitHub token, and shows the
alerts (the token itself in no output); lets a policy isolate one
host and an operator another; waits until both agents confirm containment (dry-run executor); seals;
exports a proof and a bundle and verifies both offline with `lz-verify`; then rewrites a stored ledger
item behind the services' back and shows verification catching it. Operator actions go through the
`lz` CLI (`--json`) as subprocesses, so the demo exercises the CLI too.

Each step checks its own outcome; a failed step prints what it expected and what it saw, the rest are
skipped, and the exit code is 1. Everything the demo started is stopped in any case (also on Ctrl-C
and SIGTERM). Exit codes: 0 every step passed, 1 a step failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import boto3
from rich.console import Console
from rich.markup import escape

from agent.enroll import SECRET_ENV
from agent.simulate import SimHost, SimulateOptions, make_host
from lz.demo_agent import FILESYSTEM_PACKAGE, TOKEN_VARIABLE, DemoWorkstation
from services.kit import embedded
from services.kit.addresses import is_loopback
from services.kit.devstack import Stack
from services.ledger import keys as ledger_keys
from services.tlog.events import event_hash
from services.tlog.jcs import canonicalize, parse_json

TENANT = "demo"
FLEET_SIZE = 50
HEARTBEAT_SECONDS = 5.0
EXPOSED_FRACTION = 0.12
SENSITIVE_FRACTION = 0.04
ISOLATING_RULE = "sensitive-files-open"
EXPOSED_RULE = "exposed-listener"
TAMPERED_JUSTIFICATION = "routine maintenance, nothing to see here"
CLI_TIMEOUT = 60.0
WAIT_TIMEOUT = 60.0
POLL_SECONDS = 0.5
SIMULATOR_CAP_SECONDS = 900  # the simulator ends by itself even if the demo is killed without cleanup

# The steps, in order; the report names each with ✓ or ✗.
STEPS: tuple[str, ...] = (
    "Start the stack",
    "Create a tenant",
    "Enroll a simulated fleet",
    "Alerts arrive",
    "A real agent reports an MCP server with a token",
    "A policy isolates a host",
    "An operator isolates a host",
    "Both hosts confirm containment",
    "Seal the ledger",
    "Verify a proof offline",
    "Verify an export bundle offline",
    "Tamper with a stored ledger item",
    "Verification catches the tampering",
    "Stop everything",
)

_STATUS_ISOLATED = "ASSET_STATUS_ISOLATED"
_STATUS_PENDING = "ASSET_STATUS_ISOLATION_PENDING"


class StepFailed(Exception):
    """A step did not do what it claims: what it expected and what it saw instead."""

    def __init__(self, expected: str, seen: str) -> None:
        super().__init__(f"expected {expected}; saw {seen}")
        self.expected = expected
        self.seen = seen


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop what was started, then exit 130."""


@dataclass
class StepResult:
    number: int
    title: str
    ok: bool
    seconds: float
    evidence: list[str] = field(default_factory=list)
    expected: str = ""
    seen: str = ""


@dataclass(frozen=True)
class FleetPlan:
    """The simulated fleet, predicted from the simulator's own host generator and a chosen seed."""

    seed: int
    hosts: tuple[SimHost, ...]
    exposed: tuple[str, ...]  # hostnames whose engine listens beyond loopback
    sensitive: str  # the one hostname whose engine holds credentials open (and is exposed too)


def _exposed(host: SimHost) -> bool:
    return any(ep.exposed or not is_loopback(ep.address) for e in host.inventories[0].engines for ep in e.listen)


def _sensitive(host: SimHost) -> bool:
    return any(e.open_sensitive_files for e in host.inventories[0].engines)


def plan_fleet(count: int = FLEET_SIZE, first_seed: int = 1, tries: int = 5000) -> FleetPlan:
    """The first seed whose fleet has exactly one host holding credentials open, that host also exposed,
    and at least two more exposed hosts (one for the operator to isolate)."""
    for seed in range(first_seed, first_seed + tries):
        # Only the host generator runs here: no control plane, no enrollment secret.
        options = SimulateOptions(count=count, control_plane="", tenant=TENANT, secret="", seed=seed,
                                  exposed_fraction=EXPOSED_FRACTION, sensitive_fraction=SENSITIVE_FRACTION)
        rng = random.Random(seed)  # noqa: S311 - the simulator's own (non-cryptographic) generator
        hosts = tuple(make_host(i, rng, options) for i in range(count))
        exposed = tuple(sorted(h.hostname for h in hosts if _exposed(h)))
        sensitive = [h.hostname for h in hosts if _sensitive(h)]
        if len(sensitive) == 1 and sensitive[0] in exposed and len(exposed) >= 3:
            return FleetPlan(seed, hosts, exposed, sensitive[0])
    raise StepFailed(f"a seed in {first_seed}..{first_seed + tries - 1} giving one credential-reading host",
                     "none found (has agent.simulate.make_host changed?)")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _short(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _by_hostname(assets: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(a.get("hostname", "")): a for a in assets}


class Demo:
    """The demo's state: the stack, the simulator, the tenant and what each step found."""

    def __init__(self, workdir: Path, fleet_size: int) -> None:
        self.workdir = workdir
        self.fleet_size = fleet_size
        self.stack: Stack | None = None
        self.sim: subprocess.Popen[bytes] | None = None
        self.sim_out: Path = workdir / "simulate.json"
        self.sim_log: Path = workdir / "simulate.log"
        self.env: dict[str, str] = {}
        self.secret = ""
        self.plan: FleetPlan | None = None
        self.assets: dict[str, dict[str, Any]] = {}  # hostname -> asset
        self.policy_host = ""
        self.operator_host = ""
        self.reason = ""
        self.operator_seq = 0
        self.key_file = workdir / "verifier.vkey"
        self.workstation = DemoWorkstation(workdir)

    # --- running things -------------------------------------------------------------------------

    def _run_json(self, argv: list[str], shown: str, expect: int, env: dict[str, str]) -> Any:
        try:
            proc = subprocess.run(argv, env=env, cwd=self.workdir, capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"`{shown}` to finish within {CLI_TIMEOUT:.0f}s", "it did not") from None
        if proc.returncode != expect:
            raise StepFailed(f"`{shown}` to exit {expect}",
                             f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}")
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise StepFailed(f"`{shown}` to print JSON", _last_line(proc.stdout)) from None

    def lz(self, *args: str, expect: int = 0) -> Any:
        """`lz ARGS --json` as a subprocess; its JSON answer."""
        argv = [sys.executable, "-m", "lz", *args, "--json"]
        return self._run_json(argv, "lz " + " ".join(args), expect, self.env)

    def lz_verify(self, *args: str, expect: int = 0) -> Any:
        """`lz-verify ARGS --json` as a subprocess, offline: no endpoints and no credentials in its environment."""
        offline = {k: v for k, v in self.env.items() if not k.startswith(("LZ_", "AWS_"))}
        argv = [sys.executable, "-m", "services.tlog.cli", *args, "--json"]
        return self._run_json(argv, "lz-verify " + " ".join(args), expect, offline)

    def check_alive(self) -> None:
        """Fail the step at once when a process the demo depends on has died."""
        if self.stack is not None:
            for name, proc in self.stack.procs.items():
                if proc.poll() is not None:
                    raise StepFailed(f"{name} to keep running",
                                     f"it exited with code {proc.returncode}; see {self.stack.log_path(name)}")
        if self.sim is not None and self.sim.poll() is not None:
            raise StepFailed("lz-agent simulate to keep running",
                             f"it exited with code {self.sim.returncode}; see {self.sim_log}")
        if self.workstation.process is not None and not self.workstation.running():
            raise StepFailed("lz-agent run to keep running", f"it exited; see {self.workstation.log}")

    def wait(self, expected: str, check: Callable[[], tuple[bool, str]], timeout: float = WAIT_TIMEOUT) -> str:
        """Poll `check` (done, what it saw) until done; StepFailed with the last sighting on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            done, seen = check()
            if done:
                return seen
            if time.monotonic() > deadline:
                raise StepFailed(f"{expected} within {timeout:.0f}s", seen)
            self.check_alive()
            time.sleep(POLL_SECONDS)

    def list_assets(self) -> list[dict[str, Any]]:
        return list(self.lz("assets", "list", "--all")["assets"])

    def asset_id(self, hostname: str) -> str:
        return str(self.assets[hostname]["asset_id"])

    def custody(self, hostname: str) -> list[dict[str, Any]]:
        return list(self.lz("custody", self.asset_id(hostname))["events"])

    # --- the steps ------------------------------------------------------------------------------

    def start_stack(self) -> list[str]:
        self.stack = Stack(state_dir=self.workdir / "stack", fixed_ports=False)
        self.stack.start()
        state_file = self.stack.write_state()
        self.check_alive()
        assert self.stack.resources is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith("LZ_")}
        self.env = {
            **base,
            # lz finds the stack through these (they outrank any config file), never a `make up` stack.
            "LZ_ENDPOINT_FILE": str(state_file),
            "LZ_ASSETS_ADDRESS": self.stack.addresses["assets"],
            "LZ_LEDGER_ADDRESS": self.stack.addresses["ledger"],
            "LZ_SEALER_ADDRESS": self.stack.addresses["sealer"],
            "LZ_BOOTSTRAP_TOKEN": self.stack.bootstrap_token,
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "COLUMNS": "160",
        }
        services = ", ".join(f"{name} {addr}" for name, addr in self.stack.addresses.items())
        return [f"embedded AWS {self.stack.resources.endpoint_url}; {services}; risk worker "
                f"(free ports, state in {self.stack.state_dir})"]

    def create_tenant(self) -> list[str]:
        assert self.stack is not None
        created = self.lz("tenant", "create", TENANT, "--name", "LifecycleZero demo")
        admin = str(created.get("admin_token", ""))
        self.secret = str(created.get("enrollment_secret", ""))
        if not admin or not self.secret:
            raise StepFailed("an admin token and an enrollment secret", json.dumps(created)[:300])
        self.env["LZ_TOKEN"] = admin
        operator = self.lz("token", "create", "--role", "operator", "--description", "demo operator")
        token = str(operator.get("token", ""))
        if not token:
            raise StepFailed("an operator token", json.dumps(operator)[:300])
        self.env["LZ_TOKEN"] = token
        # The demo tenant's policy override (LZ_POLICY_DIR/<tenant>.yaml, merged over the default
        # policy by the risk worker): the default policy isolates nothing automatically.
        policy_dir = Path(self.stack.env["LZ_POLICY_DIR"])
        policy_dir.mkdir(parents=True, exist_ok=True)
        override = policy_dir / f"{TENANT}.yaml"
        override.write_text(
            "# The demo tenant's override of services/ingest/policy/default.yaml: an AI engine holding\n"
            "# credentials open gets its host isolated automatically.\n"
            f"rules:\n  {ISOLATING_RULE}:\n    severity: CRITICAL\n    isolate: true\n"
        )
        token_id = str(operator.get("token_info", {}).get("token_id", ""))
        return [f"tenant {TENANT}: admin token and enrollment secret issued, operator token {token_id}",
                f"policy override {override.name}: rule {ISOLATING_RULE} (CRITICAL) isolates automatically"]

    def enroll_fleet(self) -> list[str]:
        assert self.stack is not None
        self.plan = plan_fleet(self.fleet_size)
        argv = [
            sys.executable, "-m", "agent.cli", "simulate",
            "--count", str(self.fleet_size), "--control-plane", self.stack.addresses["ingest"],
            "--tenant", TENANT, "--seed", str(self.plan.seed),
            "--interval", str(HEARTBEAT_SECONDS), "--exposed-fraction", str(EXPOSED_FRACTION),
            "--sensitive-fraction", str(SENSITIVE_FRACTION), "--change-probability", "0",
            "--first-reconnect-jitter", "0.5", "--report-every", "5", "--duration", str(SIMULATOR_CAP_SECONDS),
        ]
        started = time.monotonic()
        with self.sim_out.open("wb") as out, self.sim_log.open("wb") as log:
            # Its own session: Ctrl-C reaches the demo, which then stops the simulator cleanly (SIGINT).
            self.sim = subprocess.Popen(argv, env={**self.env, SECRET_ENV: self.secret}, cwd=self.workdir,
                                        stdout=out, stderr=log, start_new_session=True)

        def enrolled() -> tuple[bool, str]:
            assets = self.list_assets()
            self.assets = _by_hostname(assets)
            return len(assets) >= self.fleet_size, f"{len(assets)}/{self.fleet_size} assets registered"

        self.wait(f"{self.fleet_size} enrolled assets", enrolled)
        expected = {h.hostname for h in self.plan.hosts}
        if set(self.assets) != expected:
            missing = sorted(expected - set(self.assets))[:3]
            raise StepFailed("every simulated hostname registered", f"missing {missing}")
        return [f"lz-agent simulate --count {self.fleet_size} --seed {self.plan.seed}: "
                f"{len(self.assets)}/{self.fleet_size} hosts enrolled in {time.monotonic() - started:.1f}s, "
                f"heartbeats every {HEARTBEAT_SECONDS:g}s",
                f"planted: {len(self.plan.exposed)} engines listening beyond loopback, "
                f"1 engine holding credentials open ({self.plan.sensitive}, also exposed)"]

    def alerts_arrive(self) -> list[str]:
        assert self.plan is not None
        wanted = {(self.asset_id(h), EXPOSED_RULE) for h in self.plan.exposed}
        wanted.add((self.asset_id(self.plan.sensitive), ISOLATING_RULE))
        started = time.monotonic()
        found: list[dict[str, Any]] = []

        def arrived() -> tuple[bool, str]:
            nonlocal found
            found = list(self.lz("alerts", "list", "--all")["alerts"])
            have = {(str(a["asset_id"]), str(a["rule_id"])) for a in found}
            missing = wanted - have
            return not missing, f"{len(wanted) - len(missing)}/{len(wanted)} expected critical alerts"

        self.wait(f"{len(wanted)} critical alerts ({EXPOSED_RULE} on every exposed host, {ISOLATING_RULE})",
                  arrived)
        host_of = {str(a["asset_id"]): h for h, a in self.assets.items()}
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for alert in found:
            unique.setdefault((str(alert["asset_id"]), str(alert["rule_id"])), alert)
        critical = [a for a in unique.values() if a.get("severity") == "SEVERITY_CRITICAL"]
        warning = len(unique) - len(critical)
        lines = [f"lz alerts list: {len(critical)} critical and {warning} warning findings on "
                 f"{len({a for a, _ in unique})} hosts within {time.monotonic() - started:.1f}s"]
        for alert in sorted(critical, key=lambda a: (str(a["rule_id"]), host_of.get(str(a["asset_id"]), ""))):
            lines.append(f"  {host_of.get(str(alert['asset_id']), alert['asset_id'])}: {alert['rule_id']}: "
                         f"{alert.get('summary', '')}")
        return lines

    def mcp_alert(self) -> list[str]:
        """A real lz-agent over a home whose Cursor config hands the whole home and a token to an MCP server."""
        assert self.stack is not None
        station = self.workstation
        cursor = station.plant()
        try:
            asset = station.enroll(TENANT, self.secret, self.stack.addresses["ingest"])
        except RuntimeError as error:
            raise StepFailed("lz-agent enroll to succeed", str(error)) from None
        station.start()
        wanted = {"mcp-secret-in-config", "mcp-broad-filesystem"}
        found: dict[str, dict[str, Any]] = {}

        def alerted() -> tuple[bool, str]:
            alerts = self.lz("alerts", "list", "--asset", asset, "--all")["alerts"]
            found.update({str(a["rule_id"]): a for a in alerts if a.get("rule_id") in wanted})
            return set(found) == wanted, f"alerts on {asset}: {sorted(found) or 'none yet'}"

        self.wait(f"{sorted(wanted)} alerts on the workstation", alerted)
        shown = self.lz("assets", "show", asset)
        servers = shown.get("agent_inventory", {}).get("mcp_servers", [])
        server = next((s for s in servers if s.get("agent") == "cursor"), None)
        if server is None or str(station.home) not in server.get("roots", []):
            raise StepFailed(f"lz assets show: Cursor's MCP server rooted at {station.home}", json.dumps(servers)[:300])
        secret = (server.get("secrets") or [{}])[0]
        leaks = station.leaked_into({"lz alerts list": json.dumps(found), "lz assets show": json.dumps(shown),
                                     "service logs": self._stack_logs()})
        if leaks:
            raise StepFailed("the planted token in no output", f"found in {leaks}")
        lines = [f"workstation {asset}: real lz-agent over {station.home}; ~/.cursor/{cursor.name} runs "
                 f"{FILESYSTEM_PACKAGE} over the home with {TOKEN_VARIABLE} in its env"]
        for rule in sorted(wanted):
            alert = found[rule]
            lines.append(f"  {str(alert.get('severity', '')).removeprefix('SEVERITY_')} {rule}: {alert.get('summary')}")
        lines.append(f"  lz assets show: MCP server {server.get('name')} ({server.get('agent')}), "
                     f"{', '.join(server.get('capabilities', []))}, running {server.get('running')}, "
                     f"secret {secret.get('variable')} ({secret.get('detector')}) {secret.get('fingerprint')}")
        lines.append("  the token itself: in no alert, asset, service log or agent log")
        return lines

    def _stack_logs(self) -> str:
        assert self.stack is not None
        return "".join(p.read_text(errors="replace") for p in (self.stack.state_dir / "logs").glob("*.log"))

    def policy_isolates(self) -> list[str]:
        assert self.plan is not None
        self.policy_host = self.plan.sensitive
        actor = f"policy:{ISOLATING_RULE}"
        requested: dict[str, Any] = {}

        def asked() -> tuple[bool, str]:
            nonlocal requested
            events = self.custody(self.policy_host)
            hits = [e for e in events if e.get("action") == "asset.isolate.requested" and e.get("actor") == actor]
            if hits:
                requested = hits[0]
            return bool(hits), f"custody of {self.policy_host}: {[e.get('action') for e in events] or 'empty'}"

        self.wait(f"an asset.isolate.requested event by {actor} for {self.policy_host}", asked)
        contained = {
            str(a["hostname"]) for a in self.list_assets() if a.get("status") in (_STATUS_PENDING, _STATUS_ISOLATED)
        }
        if contained != {self.policy_host}:
            raise StepFailed(f"only {self.policy_host} isolated or being isolated", f"{sorted(contained)}")
        reason = str(requested.get("payload", {}).get("justification", ""))
        return [f"{self.policy_host} ({self.asset_id(self.policy_host)}): custody #{requested.get('seq')} "
                f"asset.isolate.requested by {actor}; the other {self.fleet_size - 1} hosts untouched",
                f"  justification: {reason}"]

    def operator_isolates(self) -> list[str]:
        assert self.plan is not None
        candidates = [h for h in self.plan.exposed if h != self.plan.sensitive]
        self.operator_host = candidates[0]
        asset = self.asset_id(self.operator_host)
        alerts = self.lz("alerts", "list", "--asset", asset, "--severity", "critical")["alerts"]
        finding = str(alerts[0]["summary"]) if alerts else "AI engine exposed beyond loopback"
        self.reason = f"{finding}; isolating until the owner closes it (ticket SEC-4711)"
        answer = self.lz("isolate", asset, "--reason", self.reason)
        status = answer.get("asset", {}).get("status")
        command = str(answer.get("command", {}).get("command_id", ""))
        if status not in (_STATUS_PENDING, _STATUS_ISOLATED) or not command:
            raise StepFailed("status ISOLATION_PENDING and a command id", f"status {status}, command {command or '-'}")

        def chained() -> tuple[bool, str]:
            # The custody event is chained by the custody sequencer moments after the order's answer.
            found = [e for e in self.custody(self.operator_host)
                     if e.get("action") == "asset.isolate.requested"
                     and e.get("payload", {}).get("command_id") == command]
            self.operator_seq = int(found[0].get("seq", 0)) if found else 0
            return bool(found), f"custody #{self.operator_seq}" if found else "no requested event yet"

        self.wait("the isolation's custody event in the ledger", chained)
        return [f"lz isolate {asset} ({self.operator_host}) --reason \"{self.reason}\"",
                f"  → {status.removeprefix('ASSET_STATUS_')}, custody #{self.operator_seq}, "
                f"command {_short(command)} sent down the agent's stream"]

    def both_contained(self) -> list[str]:
        hosts = (self.policy_host, self.operator_host)

        def isolated() -> tuple[bool, str]:
            statuses = {h: str(self.lz("assets", "show", self.asset_id(h)).get("status", "")) for h in hosts}
            seen = ", ".join(f"{h} {s.removeprefix('ASSET_STATUS_')}" for h, s in statuses.items())
            return all(s == _STATUS_ISOLATED for s in statuses.values()), seen

        self.wait("both hosts ISOLATED", isolated)

        def enforcement_chained() -> tuple[bool, str]:
            # The custody sequencer chains the agents' results moments after they are recorded.
            missing = [h for h in hosts
                       if not any(e.get("action") == "asset.isolate.enforced" for e in self.custody(h))]
            return not missing, f"no asset.isolate.enforced event yet for {', '.join(missing)}"

        self.wait("both enforcement events in the custody ledger", enforcement_chained)
        lines = []
        for host in hosts:
            events = self.custody(host)
            requested = [e for e in events if e.get("action") == "asset.isolate.requested"]
            enforced = [e for e in events if e.get("action") == "asset.isolate.enforced"]
            if not requested or not enforced:
                raise StepFailed(f"custody of {host}: requested, then enforced",
                                 f"{[e.get('action') for e in events]}")
            req, enf = requested[-1], enforced[-1]
            payload = enf.get("payload", {})
            same = payload.get("command_id") == req.get("payload", {}).get("command_id")
            if int(enf["seq"]) <= int(req["seq"]) or not same or payload.get("outcome") != "APPLIED" \
                    or payload.get("self_test_passed") is not True:
                raise StepFailed(f"{host}: the requested command enforced (APPLIED, self-test passed)",
                                 json.dumps(payload)[:300])
            lines.append(
                f"{host} ISOLATED: #{req['seq']} requested by {req['actor']} → #{enf['seq']} enforced by "
                f"{enf['actor']} ({int(payload.get('rule_count', 0))} rules, "
                f"self-test: {payload.get('self_test_detail', '')})"
            )
        return lines

    def seal(self) -> list[str]:
        sealed = self.lz("seal", "now")["checkpoint"]
        status = self.lz("seal", "status")
        size = int(sealed.get("tree_size", 0))
        if size < self.operator_seq + 1 or int(status.get("pending", -1)) != 0:
            raise StepFailed(f"a checkpoint covering #{self.operator_seq + 1} and 0 pending",
                             f"tree size {size}, {status.get('pending')} pending")
        return [f"lz seal now: checkpoint of size {size} signed by {sealed.get('key_name')}, stored write-once "
                f"as {sealed.get('object_key')} (version {_short(str(sealed.get('object_version_id')), 8)}); "
                f"lz seal status: sealed through #{status.get('sealed_through')}, 0 pending"]

    def verify_proof(self) -> list[str]:
        keys = self.lz("ledger", "key")
        verifier_keys = [str(k) for k in keys.get("verifier_keys", [])]
        if not verifier_keys:
            raise StepFailed("a verifier key from lz ledger key", json.dumps(keys)[:300])
        self.key_file.write_text("\n".join(verifier_keys) + "\n")
        proof = self.workdir / f"isolation-{self.operator_seq}.proof"
        exported = self.lz("ledger", "proof", str(self.operator_seq), "-o", str(proof))
        entry = Path(str(exported.get("entry_file", f"{proof}.entry")))
        if not entry.is_absolute():
            entry = self.workdir / entry
        event = parse_json(entry.read_bytes())
        justification = event.get("payload", {}).get("justification") if isinstance(event, dict) else None
        if justification != self.reason:
            raise StepFailed(f"the entry to hold the operator's justification {self.reason!r}", repr(justification))
        checked = self.lz_verify("proof", "--key", str(self.key_file), "--entry", str(entry), str(proof))
        if checked.get("status") != "verified":
            raise StepFailed("lz-verify proof: verified", str(checked.get("message")))
        return [f"lz ledger key → {verifier_keys[0]}",
                f"lz ledger proof {self.operator_seq} -o {proof.name}; lz-verify proof: {checked.get('message')}"]

    def verify_bundle(self) -> list[str]:
        directory = self.workdir / "bundle"
        exported = self.lz("ledger", "export", str(directory))
        checked = self.lz_verify("bundle", "--key", str(self.key_file), str(directory))
        if checked.get("status") != "verified" or int(checked.get("checkpoints_verified", 0)) < 1:
            raise StepFailed("lz-verify bundle: verified, at least one checkpoint", str(checked.get("message")))
        return [f"lz ledger export {directory.name}: {len(exported.get('files', []))} files, "
                f"{exported.get('bytes')} bytes; lz-verify bundle: {checked.get('message')} verified"]

    def tamper(self) -> list[str]:
        assert self.stack is not None and self.stack.resources is not None
        resources = self.stack.resources
        ddb = boto3.client(
            "dynamodb", endpoint_url=resources.endpoint_url, region_name=resources.region,
            aws_access_key_id=embedded.EMBEDDED_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=embedded.EMBEDDED_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        key: dict[str, Any] = {"PK": {"S": ledger_keys.ledger_pk(TENANT)},
                               "SK": {"S": ledger_keys.event_sk(self.operator_seq)}}
        item = ddb.get_item(TableName=resources.table_name, Key=key, ConsistentRead=True).get("Item")
        if item is None or "B" not in item.get("canonical", {}):
            raise StepFailed(f"ledger item #{self.operator_seq} with canonical bytes", "no such item")
        event = parse_json(bytes(item["canonical"]["B"]))
        before = event["payload"]["justification"]
        event["payload"]["justification"] = TAMPERED_JUSTIFICATION
        forged = canonicalize(event)
        # A careful forger also rewrites the stored hash, so the item agrees with itself.
        ddb.update_item(
            TableName=resources.table_name, Key=key,
            UpdateExpression="SET canonical = :c, #h = :h",
            ExpressionAttributeNames={"#h": "hash"},
            ExpressionAttributeValues={":c": {"B": forged}, ":h": {"S": event_hash(forged).hex()}},
        )
        stored = ddb.get_item(TableName=resources.table_name, Key=key, ConsistentRead=True)["Item"]
        if bytes(stored["canonical"]["B"]) != forged:
            raise StepFailed("the forged bytes stored", "the item unchanged")
        return [f"UpdateItem {key['SK']['S']} in {resources.table_name} (embedded DynamoDB, no service involved): "
                f"justification \"{_short(str(before), 40)}\" → \"{TAMPERED_JUSTIFICATION}\", hash recomputed"]

    def detect(self) -> list[str]:
        verdict = self.lz("ledger", "verify", "--full", expect=1)
        bad = int(verdict.get("first_bad_seq", 0))
        if verdict.get("ok") is not False or bad != self.operator_seq:
            raise StepFailed(f"ok false, first_bad_seq {self.operator_seq}",
                             f"ok {verdict.get('ok')}, first_bad_seq {bad}: {verdict.get('reason')}")
        directory = self.workdir / "bundle-after-tampering"
        self.lz("ledger", "export", str(directory))
        checked = self.lz_verify("bundle", "--key", str(self.key_file), str(directory), expect=1)
        bundle_bad = checked.get("first_bad_seq")
        if checked.get("status") != "failed" or bundle_bad not in (self.operator_seq, self.operator_seq + 1):
            raise StepFailed(f"lz-verify bundle failed at #{self.operator_seq} or #{self.operator_seq + 1}",
                             f"{checked.get('status')} at {bundle_bad}: {checked.get('message')}")
        return [f"lz ledger verify --full: exit 1, ok false, first_bad_seq {bad} ({verdict.get('reason')})",
                f"lz-verify bundle on a fresh export: exit 1, {checked.get('message')}"]

    def stop(self) -> list[str]:
        """Stop the simulator (SIGINT: it prints its summary) and the stack; check nothing is left running."""
        lines: list[str] = []
        problems: list[str] = []
        if self.sim is not None:
            if self.sim.poll() is None:
                self.sim.send_signal(signal.SIGINT)
                try:
                    self.sim.wait(20)
                except subprocess.TimeoutExpired:
                    self.sim.kill()
                    self.sim.wait()
                    problems.append("the simulator ignored SIGINT and was killed")
            summary: dict[str, Any] = {}
            with contextlib.suppress(OSError, json.JSONDecodeError):
                summary = json.loads(self.sim_out.read_text() or "{}")
            if summary:
                lines.append(f"lz-agent simulate: {summary.get('enrolled')} hosts, {summary.get('sessions')} "
                             f"streams, {summary.get('heartbeats_acked')} heartbeats acked, "
                             f"{summary.get('commands_applied')} commands applied (dry run)")
        if not self.workstation.stop():
            problems.append("lz-agent run ignored SIGTERM and was killed")
        elif self.workstation.process is not None:
            lines.append("lz-agent run (the real workstation agent) stopped")
        if self.stack is not None:
            started = [*self.stack.procs.values(), *([self.stack.aws_proc] if self.stack.aws_proc else [])]
            self.stack.stop()
            running = [p.pid for p in started if p.poll() is None]
            if running:
                problems.append(f"processes still running: {running}")
            lines.append(f"stack: {len(started)} processes stopped (services, risk worker, embedded AWS)")
        if problems:
            raise StepFailed("everything the demo started to stop", "; ".join(problems))
        return lines or ["nothing was running"]


# --- the report -----------------------------------------------------------------------------------


class Report:
    """Prints each step as it finishes (✓/✗, timing, evidence) and keeps the results."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.results: list[StepResult] = []

    def run(self, number: int, title: str, body: Callable[[], list[str]]) -> StepResult:
        started = time.monotonic()
        with self.console.status(f"{number}. {title}…"):
            try:
                result = StepResult(number, title, True, 0.0, body())
            except StepFailed as failure:
                result = StepResult(number, title, False, 0.0, [], failure.expected, failure.seen)
            except Exception as exc:
                result = StepResult(number, title, False, 0.0, [], "no error", f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        self.results.append(result)
        self.show(result)
        return result

    def show(self, result: StepResult) -> None:
        mark = "[bold green]✓[/]" if result.ok else "[bold red]✗[/]"
        self.console.print(f"{mark} [bold]{result.number:>2}. {escape(result.title)}[/] "
                           f"[dim]({result.seconds:.1f}s)[/]", soft_wrap=True)
        for line in result.evidence:
            self.console.print(f"      {escape(line)}", soft_wrap=True, highlight=False)
        if not result.ok:
            self.console.print(f"      [red]expected:[/] {escape(result.expected)}", soft_wrap=True)
            self.console.print(f"      [red]seen:[/]     {escape(result.seen)}", soft_wrap=True)

    def as_dict(self, total: float, ok: bool) -> dict[str, Any]:
        return {
            "ok": ok,
            "total_seconds": round(total, 1),
            "steps": [
                {"number": r.number, "title": r.title, "ok": r.ok, "seconds": round(r.seconds, 2),
                 "evidence": r.evidence, "expected": r.expected, "seen": r.seen}
                for r in self.results
            ],
        }


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise `Interrupted` so that cleanup runs; restored afterwards."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """No interruption while stopping what was started (it takes seconds, and is bounded)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(console: Console, workdir: Path, fleet_size: int = FLEET_SIZE,
             json_report: Path | None = None) -> int:
    """Every step in order, stopping at the first failure; the stop step always runs. The exit code."""
    demo = Demo(workdir, fleet_size)
    report = Report(console)
    bodies: list[Callable[[], list[str]]] = [
        demo.start_stack, demo.create_tenant, demo.enroll_fleet, demo.alerts_arrive, demo.mcp_alert,
        demo.policy_isolates,
        demo.operator_isolates, demo.both_contained, demo.seal, demo.verify_proof, demo.verify_bundle,
        demo.tamper, demo.detect,
    ]
    started = time.monotonic()
    interrupted = False
    try:
        with _signals():
            for number, (title, body) in enumerate(zip(STEPS[:-1], bodies, strict=True), start=1):
                if not report.run(number, title, body).ok:
                    break
    except Interrupted as signal_name:
        interrupted = True
        console.print(f"[yellow]interrupted ({signal_name}); stopping what was started[/]")
    finally:
        with _shielded():
            for number in range(len(report.results) + 1, len(STEPS)):
                console.print(f"[dim]- {number:>2}. {escape(STEPS[number - 1])} (skipped)[/]", soft_wrap=True)
            report.run(len(STEPS), STEPS[-1], demo.stop)
    total = time.monotonic() - started
    ok = not interrupted and len(report.results) == len(STEPS) and all(r.ok for r in report.results)
    passed = sum(r.ok for r in report.results)
    console.print()
    if ok:
        console.print(f"[bold green]demo passed:[/] {passed}/{len(STEPS)} steps in {total:.1f}s", soft_wrap=True)
    elif interrupted:
        console.print(f"[bold yellow]demo interrupted[/] after {total:.1f}s; logs kept in {workdir}", soft_wrap=True)
    else:
        console.print(f"[bold red]demo FAILED:[/] {passed}/{len(STEPS)} steps passed in {total:.1f}s; "
                      f"logs kept in {workdir}", soft_wrap=True)
    if json_report is not None:
        json_report.write_text(json.dumps(report.as_dict(total, ok), indent=2, ensure_ascii=False) + "\n")
    if interrupted:
        return 130
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lz.demo", description=__doc__.split("\n\n")[0] if __doc__ else "",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=FLEET_SIZE, help=f"simulated hosts (default {FLEET_SIZE})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, proofs, bundles)")
    parser.add_argument("--json-report", type=Path, metavar="FILE", help="also write the step results as JSON")
    args = parser.parse_args(argv)
    if args.hosts < 10:
        print(f"{parser.prog}: --hosts must be at least 10", file=sys.stderr)
        return 2
    # The demo's stack and CLI calls get their settings from the demo alone: a leftover LZ_POLICY_FILE,
    # LZ_TOKEN or LZ_ASSETS_ADDRESS of the caller's shell must not leak into them.
    for name in [n for n in os.environ if n.startswith("LZ_") and n != "LZ_DEBUG"]:
        del os.environ[name]
    console = Console(file=out, highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="lz-demo-"))
    console.print(f"[bold]LifecycleZero demo[/]: {args.hosts} simulated hosts, everything in {workdir}",
                  soft_wrap=True)
    console.print()
    code = run_demo(console, workdir, args.hosts, args.json_report)
    if code == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif code == 0:
        console.print(f"kept {workdir}", soft_wrap=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
