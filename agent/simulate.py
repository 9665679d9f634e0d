"""``lz-agent simulate``: a fleet of simulated hosts in one process, each a real enrolled agent stream.

Every simulated host enrolls with the tenant's secret and then runs the same
:class:`~agent.stream.AgentStream` as a real agent, with an in-memory spool and
a dry-run command executor. Inventories are varied and plausible (engines of
several kinds, some listening on every interface, some holding secrets open,
some models the tenant would not approve) and are built and serialized once
per host, so per-heartbeat work is a few bytes of framing. A handful of
channels (separate HTTP/2 connections) carry all the streams.

For load tests, ``identities`` names a JSON-lines file of identities: present, they are used instead
of enrolling (so a fleet enrolls once and streams many times); absent, the hosts enroll and the file
is written. ``warm`` starts every host as if the control plane already held its inventory (the steady
state of a fleet: digest-only heartbeats, no first burst of full inventories). ``report_file`` gets
one JSON line per report, at wall-clock multiples of ``report_every`` so that several simulator
processes report the same windows, with the ack latencies of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import grpc
from lifecyclezero.v1 import ingest_pb2

from agent.backoff import Backoff, BackoffPolicy
from agent.commands import CommandBook, DryRunExecutor
from agent.endpoints import EndpointPicker, parse_endpoints
from agent.enroll import Identity, enroll_async, enroll_request
from agent.inventory import CONFIRMED, Connection, Endpoint, Engine, Inventory, Model
from agent.spool import MemorySpool
from agent.stream import (
    KEEPALIVE_OPTIONS,
    AgentStream,
    Snapshot,
    StreamSettings,
    StreamState,
    StreamStats,
    hex_digest,
)
from agent.wire import inventory_proto

log = logging.getLogger("lz.agent.simulate")

GiB = 1024**3


@dataclass(frozen=True)
class SimulateOptions:
    """What ``lz-agent simulate`` was asked to do."""

    count: int
    # One ingest endpoint, or several (a tuple, or comma-separated): each session of each host picks one.
    control_plane: str | tuple[str, ...]
    tenant: str
    secret: str
    interval: float = 5.0
    duration: float | None = None
    exposed_fraction: float = 0.1
    sensitive_fraction: float = 0.1
    unapproved_fraction: float = 0.05
    change_probability: float = 0.002
    seed: int | None = None
    channels: int | None = None
    enroll_concurrency: int = 64
    first_reconnect_jitter: float = 5.0
    report_every: float = 10.0
    identities: Path | None = None
    warm: bool = False
    report_file: Path | None = None
    # Hosts that vanish (drop their stream without a goodbye and stay away) after this many seconds, or
    # at SIGUSR1 if that comes first: the first `vanish_count` of them (None: all).
    vanish_after: float | None = None
    vanish_count: int | None = None


# (kind, executable, default port, versions)
_ENGINES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("ollama", "/usr/local/bin/ollama", 11434, ("0.3.14", "0.4.7", "0.5.4", "0.5.7")),
    ("llama.cpp", "/opt/llama.cpp/build/bin/llama-server", 8080, ("b3912", "b4273", "b4458")),
    ("lmstudio", "~/.lmstudio/bin/lms", 1234, ("0.3.5", "0.3.6")),
    ("vllm", "~/.venvs/vllm/bin/python3", 8000, ("0.6.3", "0.6.6")),
    ("localai", "/usr/bin/local-ai", 8080, ("2.22.1", "2.24.2")),
    ("gpt4all", "/opt/gpt4all/bin/chat", 4891, ("3.4.2", "3.5.3")),
    ("jan", "/opt/Jan/jan", 1337, ("0.5.7", "0.5.11")),
    ("koboldcpp", "~/koboldcpp/koboldcpp-linux-x64", 5001, ("1.76", "1.79.1")),
    ("text-generation-webui", "~/text-generation-webui/installer_files/env/bin/python", 7860, ("1.16",)),
)
_ENGINE_WEIGHTS = (40, 12, 12, 5, 4, 8, 6, 5, 8)

# (name, architecture, quantization, parameters, context, size, source)
_APPROVED: tuple[tuple[str, str, str, int, int, int, str], ...] = (
    ("llama3.1:8b", "llama", "Q4_K_M", 8_030_000_000, 131072, 4_920_000_000, "ollama"),
    ("llama3.2:3b", "llama", "Q4_K_M", 3_210_000_000, 131072, 2_020_000_000, "ollama"),
    ("qwen2.5-coder:7b", "qwen2", "Q4_K_M", 7_620_000_000, 32768, 4_680_000_000, "ollama"),
    ("mistral:7b-instruct-v0.3-q4_0", "llama", "Q4_0", 7_250_000_000, 32768, 4_110_000_000, "ollama"),
    ("phi3:mini", "phi3", "Q4_0", 3_820_000_000, 4096, 2_180_000_000, "ollama"),
    ("gemma2:9b", "gemma2", "Q4_0", 9_240_000_000, 8192, 5_440_000_000, "ollama"),
    ("deepseek-r1:14b", "qwen2", "Q4_K_M", 14_800_000_000, 131072, 8_990_000_000, "ollama"),
    ("nomic-embed-text:latest", "nomic-bert", "F16", 137_000_000, 8192, 274_000_000, "ollama"),
    ("Meta-Llama-3-8B-Instruct.Q5_K_M.gguf", "llama", "Q5_K_M", 8_030_000_000, 8192, 5_730_000_000, "filesystem"),
    ("mistral-7b-instruct-v0.2.Q4_K_M.gguf", "llama", "Q4_K_M", 7_240_000_000, 32768, 4_370_000_000, "filesystem"),
    ("Phi-3-mini-4k-instruct-q4.gguf", "phi3", "Q4_K_M", 3_820_000_000, 4096, 2_390_000_000, "lmstudio"),
    ("Qwen2.5-7B-Instruct-Q6_K.gguf", "qwen2", "Q6_K", 7_620_000_000, 32768, 6_250_000_000, "lmstudio"),
)
_UNAPPROVED: tuple[tuple[str, str, str, int, int, int, str], ...] = (
    ("dolphin-mixtral:8x7b", "llama", "Q4_0", 46_700_000_000, 32768, 26_440_000_000, "ollama"),
    ("llama2-uncensored:7b", "llama", "Q4_0", 6_740_000_000, 2048, 3_830_000_000, "ollama"),
    ("wizard-vicuna-uncensored:13b", "llama", "Q4_0", 13_000_000_000, 2048, 7_370_000_000, "ollama"),
    ("WizardLM-30B-Uncensored.Q4_K_M.gguf", "llama", "Q4_K_M", 32_500_000_000, 2048, 19_620_000_000, "filesystem"),
)
_SECRETS = ("~/.ssh/id_rsa", "~/.ssh/id_ed25519", "~/src/app/.env", "~/.aws/credentials", "~/.kube/config")
_OSES = (("linux 6.8.0-49-generic", 50), ("darwin 23.6.0", 35), ("windows 10.0.22631", 15))
_DEPTS = ("eng", "data", "fin", "ops", "sales", "hr", "legal", "mkt")


@dataclass(frozen=True)
class SimHost:
    """One simulated workstation: facts for enrollment and its two inventories (usual and changed)."""

    hostname: str
    os: str
    employee_id: str
    user: str
    inventories: tuple[Inventory, Inventory]


def _model(spec: tuple[str, str, str, int, int, int, str], home: str) -> Model:
    name, arch, quant, params, ctx, size, source = spec
    digest = "sha256:" + hashlib.sha256(f"{name}/{quant}".encode()).hexdigest()
    if source == "ollama":
        path = f"{home}/.ollama/models/blobs/sha256-{digest[7:]}"
    elif source == "lmstudio":
        path = f"{home}/.lmstudio/models/{name}"
    else:
        path = f"{home}/models/{name}"
    return Model(name, "gguf", path, digest, size, arch, quant, params, ctx, source)


def make_host(index: int, rng: random.Random, options: SimulateOptions) -> SimHost:
    """A plausible workstation; fractions decide exposure, open secrets and unapproved models."""
    dept = rng.choice(_DEPTS)
    user = f"{dept}{index:05d}"
    home = f"/home/{user}"
    os_name = rng.choices([o for o, _ in _OSES], [w for _, w in _OSES])[0]
    hostname = f"{rng.choice(('wks', 'lt', 'dev'))}-{dept}-{index:05d}"
    exposed = rng.random() < options.exposed_fraction
    sensitive = rng.random() < options.sensitive_fraction
    unapproved = rng.random() < options.unapproved_fraction
    models = [_model(spec, home) for spec in rng.sample(_APPROVED, rng.randint(1, 4))]
    if unapproved:
        models.append(_model(rng.choice(_UNAPPROVED), home))
    engines: list[Engine] = []
    for number, (kind, exe, port, versions) in enumerate(
        rng.choices(_ENGINES, _ENGINE_WEIGHTS, k=rng.choice((1, 1, 1, 2)))
    ):
        address = "0.0.0.0" if exposed and number == 0 else "127.0.0.1"
        loaded = [m.name for m in models[: rng.randint(0, 2)]]
        engines.append(
            Engine(
                kind=kind,
                pid=rng.randint(800, 400_000),
                exe=exe.replace("~", home),
                user=user,
                version=rng.choice(versions),
                listen=(Endpoint(address, port + number, address != "127.0.0.1"),),
                confirmed=True,
                confidence=CONFIRMED,
                models_loaded=tuple(loaded),
                open_sensitive_files=(
                    tuple(s.replace("~", home) for s in rng.sample(_SECRETS, 2)) if sensitive and number == 0 else ()
                ),
                outbound=(
                    (Connection("10.0.0.5", 51000 + number, "104.18.32.47", 443),) if rng.random() < 0.05 else ()
                ),
            )
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    usual = Inventory(tuple(engines), tuple(models), hostname, os_name, now)
    pulled = _model(rng.choice(_APPROVED), home)
    changed = Inventory(tuple(engines), (*models, pulled) if pulled not in models else tuple(models[1:]), hostname,
                        os_name, now)
    return SimHost(hostname, os_name, f"emp-{index:05d}", user, (usual, changed))


class SimSource:
    """A host's pre-built snapshots; now and then the inventory changes (a model pulled or removed)."""

    def __init__(self, snapshots: tuple[Snapshot, Snapshot], change_probability: float, rng: random.Random) -> None:
        self.snapshots = snapshots
        self.change_probability = change_probability
        self.rng = rng
        self.current = 0

    async def snapshot(self) -> Snapshot:
        if self.change_probability and self.rng.random() < self.change_probability:
            self.current ^= 1
        return self.snapshots[self.current]


@dataclass
class FleetReport:
    """Where the fleet stands; printed as one line periodically and as JSON at the end."""

    hosts: int
    enrolled: int = 0
    enroll_failed: int = 0
    loaded: int = 0
    enroll_seconds: float = 0.0
    asset_ids: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def summary(self, stats: StreamStats, max_connected: int) -> dict[str, Any]:
        latencies = sorted(stats.ack_latencies)
        return {
            "hosts": self.hosts,
            "enrolled": self.enrolled,
            "enroll_failed": self.enroll_failed,
            "identities_loaded": self.loaded,
            "enroll_seconds": round(self.enroll_seconds, 1),
            "connected": stats.connected,
            "max_connected": max_connected,
            "sessions": stats.sessions,
            "failed_connects": stats.failed_connects,
            "aged_out": stats.aged_out,
            "connect_errors": dict(stats.connect_errors.most_common()),
            "heartbeats_sent": stats.heartbeats_sent,
            "heartbeats_replayed": stats.heartbeats_replayed,
            "heartbeats_acked": stats.heartbeats_acked,
            "full_inventories_sent": stats.full_inventories_sent,
            "ack_latency_ms": {
                "p50": _ms(_percentile(latencies, 0.50)),
                "p99": _ms(_percentile(latencies, 0.99)),
                "max": _ms(latencies[-1] if latencies else None),
            },
            "commands_received": stats.commands_received,
            "commands_applied": stats.commands_applied,
            "commands_failed": stats.commands_failed,
            "results_acked": stats.results_acked,
            "vanished": len(self.vanished),
            "vanished_asset_ids": list(self.vanished),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _line(summary: dict[str, Any], window: list[float]) -> str:
    window = sorted(window)
    p50, p99 = _ms(_percentile(window, 0.5)), _ms(_percentile(window, 0.99))
    return (
        f"simulate t={summary['elapsed_s']:.0f}s connected {summary['connected']}/{summary['hosts']} "
        f"heartbeats sent {summary['heartbeats_sent']} acked {summary['heartbeats_acked']} "
        f"ack p50 {p50 if p50 is not None else '-'}ms p99 {p99 if p99 is not None else '-'}ms "
        f"commands {summary['commands_applied']}/{summary['commands_received']}"
    )


def endpoints_of(options: SimulateOptions) -> tuple[str, ...]:
    given = options.control_plane
    return parse_endpoints([given] if isinstance(given, str) else given)


def channel_count(hosts: int, requested: int | None = None) -> int:
    """A handful of HTTP/2 connections: one per 500 streams, between 1 and 8."""
    return requested if requested else max(1, min(8, math.ceil(hosts / 500)))


def _open_channels(target: str, count: int, credentials: grpc.ChannelCredentials | None) -> list[grpc.aio.Channel]:
    # A local subchannel pool keeps grpc from folding identical channels into one connection.
    options = [*KEEPALIVE_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    if credentials is None:
        return [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]
    return [grpc.aio.secure_channel(target, credentials, options=options) for _ in range(count)]


async def _enroll_all(
    hosts: list[SimHost], options: SimulateOptions, pool: dict[str, list[grpc.aio.Channel]], report: FleetReport
) -> list[Identity | None]:
    channels = [(endpoint, channel) for endpoint, channels in pool.items() for channel in channels]
    gate = asyncio.Semaphore(options.enroll_concurrency)

    async def one(index: int, host: SimHost) -> Identity | None:
        request = enroll_request(
            options.tenant, options.secret, host.hostname, host.os, employee_id=host.employee_id
        )
        delay = 0.5
        async with gate:
            for attempt in range(5):
                try:
                    endpoint, channel = channels[index % len(channels)]
                    identity = await enroll_async(channel, request, endpoint)
                except grpc.aio.AioRpcError as exc:
                    retry = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    if not retry or attempt == 4:
                        log.error("enroll of %s failed: %s: %s", host.hostname, exc.code().name, exc.details())
                        report.enroll_failed += 1
                        return None
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                report.enrolled += 1
                report.asset_ids.append(identity.asset_id)
                return identity
        return None

    return list(await asyncio.gather(*(one(i, h) for i, h in enumerate(hosts))))


def load_identities(path: Path) -> list[Identity]:
    """The identities of a JSON-lines file written by :func:`save_identities` (or by a benchmark)."""
    identities = []
    for line in path.read_text().splitlines():
        if line.strip():
            data = json.loads(line)
            identities.append(Identity(**{k: v for k, v in data.items() if k in Identity.__dataclass_fields__}))
    return identities


def save_identities(path: Path, identities: list[Identity]) -> None:
    """Write identities as JSON lines, readable only by the owner (they hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(i)) + "\n" for i in identities))


async def _identities(
    hosts: list[SimHost], options: SimulateOptions, pool: dict[str, list[grpc.aio.Channel]], report: FleetReport
) -> list[Identity | None]:
    """Identities from ``options.identities`` when it has them; the hosts beyond it enroll (and are saved)."""
    known: list[Identity | None] = []
    if options.identities is not None and options.identities.exists():
        known = list(load_identities(options.identities)[: len(hosts)])
        report.loaded = len(known)
    if len(known) == len(hosts):
        return known
    started = time.monotonic()
    enrolled = await _enroll_all(hosts[len(known):], options, pool, report)
    report.enroll_seconds = time.monotonic() - started
    identities = known + enrolled
    if options.identities is not None:
        save_identities(options.identities, [i for i in identities if i is not None])
    return identities


def _report_json(options: SimulateOptions, summary: dict[str, Any], window: list[float]) -> None:
    if options.report_file is None:
        return
    line = {
        "time": round(time.time(), 3),
        "connected": summary["connected"],
        "hosts": summary["hosts"],
        "heartbeats_sent": summary["heartbeats_sent"],
        "heartbeats_acked": summary["heartbeats_acked"],
        "commands_received": summary["commands_received"],
        "commands_applied": summary["commands_applied"],
        "connect_errors": summary["connect_errors"],
        "latencies_ms": [round(v * 1000, 2) for v in window],
    }
    with options.report_file.open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def _until_next_report(every: float) -> float:
    """Seconds to the next wall-clock multiple of ``every`` (so processes report the same windows)."""
    now = time.time()
    return max(0.001, (math.floor(now / every) + 1) * every - now)


async def simulate(
    options: SimulateOptions,
    stop: asyncio.Event | None = None,
    out: TextIO | None = sys.stderr,
    *,
    executor: DryRunExecutor | None = None,
    on_ready: Callable[[FleetReport], None] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> dict[str, Any]:
    """Enroll and stream ``options.count`` hosts until ``duration`` passes or ``stop`` is set; the summary.

    ``credentials`` make every channel TLS (as ``lz-agent run`` does with the stream's TLS settings).
    """
    stop = stop or asyncio.Event()
    rng = random.Random(options.seed)  # noqa: S311 - simulation, not security
    report = FleetReport(options.count)
    hosts = [make_host(i, rng, options) for i in range(options.count)]
    snapshots = [
        tuple(Snapshot(hex_digest(inv.digest()), inventory_proto(inv).SerializeToString()) for inv in host.inventories)
        for host in hosts
    ]
    endpoints = endpoints_of(options)
    pool = {endpoint: _open_channels(endpoint, channel_count(options.count, options.channels), credentials)
            for endpoint in endpoints}
    channels = [channel for per_endpoint in pool.values() for channel in per_endpoint]
    stats = StreamStats()
    executor = executor or DryRunExecutor()
    streams: list[AgentStream] = []
    tasks: list[asyncio.Task[None]] = []
    max_connected = 0
    try:
        identities = await _identities(hosts, options, pool, report)
        if on_ready is not None:
            on_ready(report)
        policy = BackoffPolicy(first_jitter=options.first_reconnect_jitter)
        for index, identity in enumerate(identities):
            if identity is None:
                continue
            picker = EndpointPicker(endpoints, random.Random(f"{options.seed}-{index}"))  # noqa: S311
            state = StreamState(None, identity.asset_id)
            if options.warm:
                state.acked_digest = snapshots[index][0].digest
            stream = AgentStream(
                identity,
                channel=_picked(pool, picker, index),
                source=SimSource(_pair(snapshots[index]), options.change_probability, random.Random(rng.random())),  # noqa: S311
                spool=MemorySpool(max_records=max(16, int(3600 / options.interval))),
                state=state,
                commands=CommandBook(None),
                executor=executor,
                backoff=Backoff(policy, random.Random(rng.random())),  # noqa: S311
                settings=StreamSettings(interval=options.interval),
                stats=stats,
                owns_channel=False,
                on_connect_failed=picker.failed,
            )
            streams.append(stream)
            tasks.append(asyncio.create_task(_start_later(stream, rng.uniform(0, options.interval), stop)))
        _settle_heap()
        doomed = streams[:options.vanish_count] if options.vanish_count is not None else list(streams)
        if options.vanish_after is not None:
            asyncio.get_running_loop().call_later(options.vanish_after, _vanish, doomed, report)
        if options.vanish_count is not None:
            # A test vanishes them when the rest of the fleet is settled, not after a guessed delay.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _vanish, doomed, report)
        deadline = None if options.duration is None else time.monotonic() + options.duration
        seen = 0
        while not stop.is_set():
            wait = _until_next_report(options.report_every) if options.report_file else options.report_every
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            max_connected = max(max_connected, stats.connected)
            window = stats.ack_latencies[seen:]
            seen = len(stats.ack_latencies)
            summary = report.summary(stats, max_connected)
            _report_json(options, summary, window)
            if out is not None:
                print(_line(summary, window), file=out, flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                break
        max_connected = max(max_connected, stats.connected)
        summary = report.summary(stats, max_connected)
    finally:
        stop.set()
        for stream in streams:
            if not stream.vanished:
                stream.goodbye = ingest_pb2.GOODBYE_REASON_SERVICE_STOP
            stream.stop()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    return summary


def _vanish(streams: list[AgentStream], report: FleetReport) -> None:
    """Hosts that drop off the network or are killed: the stream ends without a goodbye, nothing reconnects."""
    for stream in streams:
        if stream.vanished:
            continue
        stream.vanish()
        report.vanished.append(stream.identity.asset_id)
    log.info("%d hosts vanished", len(streams))


def _settle_heap() -> None:
    """Freeze the fleet just built and space the collector out: the simulator measures ack latency, and
    the collector's full passes over thousands of streams (up to 0.7 s each) would be measured with it.
    The settings are those of `services/kit/heap.py`, written out because the agent imports nothing of
    the control plane's code."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def _picked(pool: dict[str, list[grpc.aio.Channel]], picker: EndpointPicker,
            index: int) -> Callable[[], grpc.aio.Channel]:
    """Host `index`'s channel for each session: one of the shared channels of the endpoint `picker` chooses."""

    def channel() -> grpc.aio.Channel:
        shared = pool[picker.endpoints[picker.pick()]]
        return shared[index % len(shared)]

    return channel


def _pair(snapshots: tuple[Snapshot, ...]) -> tuple[Snapshot, Snapshot]:
    return snapshots[0], snapshots[1]


async def _start_later(stream: AgentStream, delay: float, stop: asyncio.Event) -> None:
    """Start `stream` after `delay` unless the fleet stops first.

    The stream then runs on its own stop event (set by `stream.stop()`): an asyncio.Event keeps its waiters in
    a list that each one leaves by a linear search, so thousands of streams waiting on one shared event make
    every reconnect pay for all of them.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    if not stop.is_set():
        await stream.run()


def run_simulation(options: SimulateOptions, out: TextIO = sys.stderr,
                   credentials: grpc.ChannelCredentials | None = None) -> dict[str, Any]:
    """Run :func:`simulate` on a fresh event loop; SIGINT and SIGTERM end it with a summary."""

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await simulate(options, stop, out, credentials=credentials)

    return asyncio.run(main())
