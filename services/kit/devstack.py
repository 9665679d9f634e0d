"""The local stack: embedded AWS plus every service as its own process on loopback.

`make up` runs `python -m services.kit.devstack up`; the integration tests use `Stack` directly.
The stack writes `.lz/stack.json` (endpoints, the local bootstrap and service tokens, resources) so
`lz` and the tests can find it; the file is created 0600 because it holds local secrets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import embedded
from services.kit.auth import sha256_hex

# (process name, python module, gRPC service it serves or "" for workers without a port)
PROCESSES: tuple[tuple[str, str, str], ...] = (
    ("ledger", "services.ledger", "lifecyclezero.v1.LedgerService"),
    ("sealer", "services.sealer", "lifecyclezero.v1.SealerService"),
    ("assets", "services.assets", "lifecyclezero.v1.AssetService"),
    ("ingest", "services.ingest", "lifecyclezero.v1.IngestService"),
)
WORKERS: tuple[tuple[str, str], ...] = (("risk-worker", "services.ingest.worker"),)
SERVICES_BY_PROCESS = {name: service for name, _, service in PROCESSES}
# The operator console serves HTTP; its endpoint is the URL an operator opens (endpoints.console).
CONSOLE = ("console", "services.console")
CONSOLE_PORT = 8787
# The processes that call other services, each with its own service token (LZ_SERVICE_CALLERS).
CALLERS = ("ingest", "assets", "risk-worker")
DEFAULT_STATE_DIR = Path(".lz")
# Unauthenticated calls the endpoint allows before enforcing IAM: provisioning plus the IAM users.
LEAST_PRIVILEGE_FREE_CALLS = 200
ORIGIN = "lifecyclezero.local/ledger"
MAX_INGEST_REPLICAS = 10


@dataclass
class Stack:
    """A running local stack; `stop()` ends every process it started."""

    state_dir: Path
    iam_after_calls: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    fixed_ports: bool = False
    aws_proc: subprocess.Popen[bytes] | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    resources: embedded.Resources | None = None
    service_tokens: dict[str, str] = field(default_factory=dict)
    bootstrap_token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # Per-process environment (e.g. each service's own AWS keys under IAM enforcement), made once the
    # resources exist.
    after_provision: Callable[[embedded.Resources], dict[str, dict[str, str]]] | None = None
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Each service runs with its own IAM user bound to its least-privilege policy, and the endpoint
    # enforces IAM on every call after provisioning.
    least_privilege: bool = False
    # Ingest processes: the first is `ingest`, the others `ingest-2`, `ingest-3`, ... on their own ports.
    ingest_replicas: int = 1
    # The last this many ingest replicas get their addresses but start only at `start_ingest_replica` (a scale-out).
    ingest_deferred: int = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the endpoint and every process; on failure nothing started is left running."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        aws_port = _pick(4566, self.fixed_ports)
        free_calls = LEAST_PRIVILEGE_FREE_CALLS if self.least_privilege else self.iam_after_calls
        self.aws_proc, url = embedded.start_endpoint(
            aws_port, iam_after_calls=free_calls, log_file=logs / "embedded-aws.log"
        )
        self.resources = embedded.provision(url)
        if self.after_provision is not None:
            self.process_env = self.after_provision(self.resources)
        if self.least_privilege:
            self.process_env = embedded.least_privilege_credentials(self.resources)
            embedded.start_enforcing(self.resources, LEAST_PRIVILEGE_FREE_CALLS)
        self.service_tokens = {name: secrets.token_urlsafe(32) for name in CALLERS}
        self.bootstrap_token = secrets.token_urlsafe(32)
        # A free port is only free until someone binds it: a service that lost it to another process
        # exits at once, and every service starts again on new ports (they know each other's addresses).
        for attempt in range(1, 4):
            self._start_processes()
            try:
                self.wait_serving(timeout)
                break
            except RuntimeError:
                if self.fixed_ports or attempt == 3 or not self._lost_a_port():
                    raise
                self._stop_processes(grace=10.0)
        self.write_state()

    def _lost_a_port(self) -> bool:
        return any(proc.poll() is not None and "address already in use" in self.log_path(name).read_text().lower()
                   for name, proc in self.procs.items())

    def _start_processes(self) -> None:
        assert self.resources is not None
        for offset, (name, _, _) in enumerate(PROCESSES):
            self.addresses[name] = f"127.0.0.1:{_pick(50051 + offset, self.fixed_ports)}"
        # Ingest serves DeliverCommand(s) and RevokeAgent on an internal port, as in production.
        self.addresses["ingest-internal"] = f"127.0.0.1:{_pick(50051 + len(PROCESSES), self.fixed_ports)}"
        for index, name in enumerate(self.ingest_names[1:]):
            port = 50051 + len(PROCESSES) + 1 + 2 * index
            self.addresses[name] = f"127.0.0.1:{_pick(port, self.fixed_ports)}"
            self.addresses[f"{name}-internal"] = f"127.0.0.1:{_pick(port + 1, self.fixed_ports)}"
        self.env = {
            **embedded.resources_env(self.resources),
            "LZ_SERVICE_CALLERS": ",".join(f"{name}={sha256_hex(token)}"
                                           for name, token in self.service_tokens.items()),
            "LZ_BOOTSTRAP_TOKEN_SHA256": sha256_hex(self.bootstrap_token),
            "LZ_LEDGER_ADDRESS": self.addresses["ledger"],
            "LZ_SEALER_ADDRESS": self.addresses["sealer"],
            "LZ_ASSETS_ADDRESS": self.addresses["assets"],
            "LZ_INGEST_ADDRESSES": self.addresses["ingest-internal"],
            "LZ_ORIGIN": ORIGIN,
            "LZ_SIGNING_KEY_FILE": str(self._signing_key()),
            "LZ_CONTROL_PLANE_ENDPOINTS": self.addresses["ingest"],
            # The risk worker: per-tenant policy overrides (<tenant>.yaml) and a short long-poll, so it stops fast.
            "LZ_POLICY_DIR": str(self.state_dir / "policies"),
            "LZ_WORKER_WAIT_SECONDS": "2",
            # Simulated fleets and benchmarks enroll thousands of hosts at once on the local stack.
            "LZ_ENROLL_RATE_PER_SECOND": "10000",
            "LZ_ENROLL_BURST": "100000",
            # grpcurl and buf curl against the local stack; production leaves reflection off.
            "LZ_REFLECTION": "1",
            **self.extra_env,
        }
        for name, module, _ in PROCESSES:
            self.start_process(name, module, port=int(self.addresses[name].rsplit(":", 1)[1]))
        for name in self.ingest_names[1:len(self.ingest_names) - self.ingest_deferred]:
            self.start_ingest_replica(name, wait=False)
        for name, module in WORKERS:
            self.start_process(name, module)
        self._start_console()

    def _start_console(self) -> None:
        """The console gets the peers' addresses and nothing else of the stack: no AWS access, no
        service token; it calls the peers with each signed-in operator's own token."""
        port = _pick(CONSOLE_PORT, self.fixed_ports)
        self.addresses["console"] = f"http://127.0.0.1:{port}"
        peers = {key: self.env[key] for key in ("LZ_ASSETS_ADDRESS", "LZ_LEDGER_ADDRESS", "LZ_SEALER_ADDRESS")}
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LZ_", "AWS_"))}
        env.update(peers, LZ_PORT=str(port), **self.process_env.get("console", {}))
        log = open(self.log_path("console"), "ab")  # noqa: SIM115 - handed to the child
        self.procs["console"] = subprocess.Popen([sys.executable, "-m", CONSOLE[1]], env=env, stdout=log,
                                                 stderr=subprocess.STDOUT)

    def start_ingest_replica(self, name: str, wait: bool = True, timeout: float = 60.0) -> None:
        """Start the ingest replica `name` (one of `ingest_names`) on its address; with `wait`, until SERVING."""
        self.start_process(name, "services.ingest", port=int(self.addresses[name].rsplit(":", 1)[1]))
        if wait:
            self.wait_serving(timeout, [name])

    @property
    def ingest_names(self) -> list[str]:
        """The ingest processes' names: `ingest`, then `ingest-2` ... `ingest-N`."""
        return ["ingest", *(f"ingest-{k}" for k in range(2, self.ingest_replicas + 1))]

    def _served(self) -> list[tuple[str, str]]:
        """(process name, gRPC service) of every process with a port, ingest replicas included."""
        ingest = SERVICES_BY_PROCESS["ingest"]
        return [*((name, service) for name, _, service in PROCESSES),
                *((name, ingest) for name in self.ingest_names[1:])]

    def start_process(self, name: str, module: str, port: int | None = None) -> subprocess.Popen[bytes]:
        role = "ingest" if name in self.ingest_names else name
        env = {**os.environ, **self.env, **self.process_env.get(role, {})}
        env["LZ_SERVICE_TOKEN"] = self.service_tokens.get(role, "")
        if port is not None:
            env["LZ_PORT"] = str(port)
        if role == "ingest":
            internal = self.addresses[f"{name}-internal"]
            env["LZ_INTERNAL_PORT"] = internal.rsplit(":", 1)[1]
            # Where the other replicas forward the nudges of the streams this one holds.
            env["LZ_ADVERTISE_ADDRESS"] = internal
        log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def wait_serving(self, timeout: float, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for name, service in self._served():
            if (names is not None and name not in names) or name not in self.procs:
                continue
            while not _serving(self.addresses[name], service):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.log_path(name)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not report SERVING within {timeout:.0f}s; see {self.log_path(name)}"
                    )
                time.sleep(0.1)
        if names is None or "console" in names:
            self._wait_console(deadline)

    def _wait_console(self, deadline: float) -> None:
        while not _http_ok(self.addresses["console"] + "/healthz"):
            proc = self.procs["console"]
            if proc.poll() is not None:
                raise RuntimeError(f"console exited with code {proc.returncode}; see {self.log_path('console')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"console did not answer /healthz in time; see {self.log_path('console')}")
            time.sleep(0.1)

    @property
    def service_token(self) -> str:
        """Ingest's own service token: what tests present to call assets as ingest does."""
        return self.service_tokens["ingest"]

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _signing_key(self) -> Path:
        from services.tlog.note import generate_key

        path = self.state_dir / "signing.key"
        if not path.exists():
            signer, verifier = generate_key(ORIGIN)
            _write_private(path, signer + "\n")
            (self.state_dir / "verifier.key").write_text(verifier + "\n")
        return path

    def state(self) -> dict[str, Any]:
        assert self.resources is not None
        return {
            # Every ingest replica's public address, comma-separated (`lz-agent --control-plane` takes the list).
            "endpoints": {**self.addresses,
                          "ingest_replicas": ",".join(self.addresses[name] for name in self.ingest_names)},
            "aws": embedded.as_dict(self.resources),
            "bootstrap_token": self.bootstrap_token,
            "service_tokens": dict(self.service_tokens),
            "origin": ORIGIN,
            "pids": {name: proc.pid for name, proc in self.procs.items()},
        }

    def write_state(self) -> Path:
        path = self.state_dir / "stack.json"
        _write_private(path, json.dumps(self.state(), indent=2) + "\n")
        return path

    def stop(self, grace: float = 10.0) -> None:
        self._stop_processes(grace)
        if self.aws_proc is not None and self.aws_proc.poll() is None:
            self.aws_proc.terminate()
            try:
                self.aws_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.aws_proc.kill()
                self.aws_proc.wait()
        # A start that failed on its state directory (missing, not a directory) left no state file.
        with contextlib.suppress(OSError):
            (self.state_dir / "stack.json").unlink()

    def _stop_processes(self, grace: float) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _pick(preferred: int, fixed: bool) -> int:
    if not fixed:
        return embedded.free_port()
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            raise SystemExit(f"lz up: port {preferred} is already in use (is another stack running?)") from None
    return preferred


def _replica_count(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_INGEST_REPLICAS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_INGEST_REPLICAS}")
    return int(raw)


def _serving(address: str, service: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our own loopback URL
            return bool(reply.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lz-stack", description="Run the local LifecycleZero stack.")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--any-ports", action="store_true", help="free ports instead of 4566 and 50051-50055")
    parser.add_argument("--least-privilege", action="store_true",
                        help="run each service with its own IAM policy, enforced by the embedded endpoint")
    parser.add_argument("--ingest-replicas", type=_replica_count, default=1, metavar="N",
                        help="ingest processes to run (1-10); stack.json lists them under endpoints.ingest_replicas")
    args = parser.parse_args(argv)
    stack = Stack(state_dir=args.state_dir, fixed_ports=not args.any_ports, least_privilege=args.least_privilege,
                  ingest_replicas=args.ingest_replicas)
    started = time.monotonic()
    try:
        stack.start()
    except (RuntimeError, OSError) as exc:
        stack.stop()
        print(f"lz up: {exc}", file=sys.stderr)
        return 2
    assert stack.resources is not None
    print(f"embedded AWS   {stack.resources.endpoint_url}")
    for name, address in stack.addresses.items():
        print(f"{name:<14} {address}")
    print(f"state file     {args.state_dir / 'stack.json'}")
    print(f"LifecycleZero is up ({time.monotonic() - started:.1f}s): {len(stack.procs)} processes. Ctrl-C stops.",
          flush=True)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    print(f"lz up: {name} exited with code {proc.returncode}; see {stack.log_path(name)}",
                          file=sys.stderr)
                    stop = True
            time.sleep(0.5)
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
