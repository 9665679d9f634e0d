"""``lz-agent run``: reconcile containment, then stream to the control plane until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from lifecyclezero.v1 import ingest_pb2

from agent import statefile
from agent.backoff import Backoff, BackoffPolicy
from agent.commands import CommandBook, ContainmentExecutor
from agent.config import Config
from agent.containment import Containment
from agent.discovery.agents import ConfigScan, scan_configs
from agent.endpoints import SHUFFLED_PICK_FIRST, EndpointPicker
from agent.enroll import Identity, NotEnrolledError, identity_path, load_identity
from agent.events import EventOutbox
from agent.inventory import Inventory, Model
from agent.snapshot import agent_settings, collect
from agent.spool import FileSpool
from agent.stream import KEEPALIVE_OPTIONS, AgentStream, CollectSource, StreamSettings, StreamState
from agent.threads import in_daemon_thread

log = logging.getLogger("lz.agent.run")

STREAM_STATE = "stream.json"
SPOOL_DIR = "spool"
COMMAND_RESULTS = "command-results.json"


def channel_factory(picker: EndpointPicker,
                    credentials: grpc.ChannelCredentials | None) -> Callable[[], grpc.aio.Channel]:
    """A fresh channel per session to the endpoint `picker` chooses, so the agent's own backoff is the only
    reconnect schedule and a reconnect may land on another replica."""
    options = [*KEEPALIVE_OPTIONS, SHUFFLED_PICK_FIRST]

    def make() -> grpc.aio.Channel:
        target = picker.endpoints[picker.pick()]
        if credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, credentials, options=options)

    return make


def stream_endpoints(config: Config, identity: Identity, given: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Where the stream goes: `--control-plane` when given, else `[stream] address`, else the enrollment's."""
    return given or (config.stream_address or identity.control_plane,)


def build_stream(config: Config, identity: Identity, containment: Containment,
                 credentials: grpc.ChannelCredentials | None = None, endpoints: tuple[str, ...] = ()) -> AgentStream:
    """The agent's stream with its spool, state and command book in ``config.state_dir``."""
    state_path = config.state_dir / STREAM_STATE
    stored = statefile.read_json(state_path)
    spool_dir = config.state_dir / SPOOL_DIR
    if isinstance(stored, dict) and stored.get("asset_id") != identity.asset_id:
        log.warning("the asset id changed (re-enrolled); the old spool is discarded")
        shutil.rmtree(spool_dir, ignore_errors=True)
    targets = stream_endpoints(config, identity, endpoints)
    picker = EndpointPicker(targets)
    source = CollectSource(
        ModelCachingCollector(config, model_every=config.model_rescan_interval), deadline=config.scan_deadline
    )
    executor = ContainmentExecutor(
        containment,
        control_plane=[*targets, *config.control_plane],
        resolvers=config.resolvers,
        allowlist=config.allowlist,
        engine_pids=source.engine_pids,
    )
    return AgentStream(
        identity,
        channel=channel_factory(picker, credentials),
        source=source,
        spool=FileSpool(spool_dir, max_bytes=config.spool_max_bytes),
        state=StreamState(state_path, identity.asset_id),
        commands=CommandBook(config.state_dir / COMMAND_RESULTS),
        executor=executor,
        backoff=Backoff(BackoffPolicy(first_jitter=config.first_reconnect_jitter)),
        settings=StreamSettings(interval=config.heartbeat_interval or None),
        events=EventOutbox(config.state_dir),
        on_connect_failed=picker.failed,
    )


def run_agent(
    config: Config,
    duration: float | None,
    containment: Containment,
    credentials: grpc.ChannelCredentials | None = None,
    endpoints: tuple[str, ...] = (),
) -> int:
    """Reconcile containment, then stream until SIGINT/SIGTERM (or ``duration``); the exit code."""
    identity = load_identity(config.state_dir)
    if identity is None:
        raise NotEnrolledError(f"not enrolled ({identity_path(config.state_dir)} missing); run `lz-agent enroll`")
    statefile.repair(config.state_dir)
    reconciled = containment.reconcile()
    level = logging.INFO if reconciled.ok else logging.ERROR
    log.log(level, "containment reconcile: %s", reconciled.message)
    stream = build_stream(config, identity, containment, credentials, endpoints)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            stream.goodbye = stop_reason(config.state_dir)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stopping)
        if duration is not None:
            loop.call_later(duration, stopping)
        guard = asyncio.create_task(guard_containment(containment, config.drift_check_interval, stop))
        try:
            await stream.run(stop)
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard

    try:
        asyncio.run(main())
    finally:
        if isinstance(stream.spool, FileSpool):
            stream.spool.close()
    return 0


STOP_REASON_FILE = "stop-reason"
_STOP_REASONS = {
    "service-stop": ingest_pb2.GOODBYE_REASON_SERVICE_STOP,
    "system-shutdown": ingest_pb2.GOODBYE_REASON_SYSTEM_SHUTDOWN,
    "upgrade": ingest_pb2.GOODBYE_REASON_UPGRADE,
    "uninstall": ingest_pb2.GOODBYE_REASON_UNINSTALL,
}


def stop_reason(state_dir: Path) -> ingest_pb2.GoodbyeReason.ValueType:
    """Why the agent is stopping, for its goodbye.

    A package's removal script names an upgrade or an uninstall by writing the word into
    `<state dir>/stop-reason` before it stops the service (the file is consumed); otherwise a
    system that is shutting down is a shutdown, and anything else a service stop.
    """
    path = state_dir / STOP_REASON_FILE
    with contextlib.suppress(OSError):
        word = path.read_text(encoding="utf-8", errors="replace").strip()
        path.unlink()
        if word in _STOP_REASONS:
            return _STOP_REASONS[word]
    if _system_stopping():
        return ingest_pb2.GOODBYE_REASON_SYSTEM_SHUTDOWN
    return ingest_pb2.GOODBYE_REASON_SERVICE_STOP


def _system_stopping() -> bool:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        state = subprocess.run([systemctl, "is-system-running"], capture_output=True, text=True, timeout=1,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return state == "stopping"


async def guard_containment(containment: Containment, every: float, stop: asyncio.Event) -> None:
    """Every ``every`` seconds, put isolation back if its live rules changed (the drift is recorded as an event).

    Runs in a daemon thread because nft is a subprocess that could hang; only one check runs at a time.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            await in_daemon_thread(containment.check_drift)
        except Exception:
            log.exception("containment drift check failed")


class ModelCachingCollector:
    """Engines and agent processes every heartbeat; the model walk (disk, maybe hashing) at most every
    ``model_every`` seconds; agents' known configuration files re-checked every ``agent_files_every``
    seconds (parsed again only when changed) and the homes walked for new projects every ``walk_every``."""

    def __init__(self, config: Config, model_every: float = 300.0, agent_files_every: float = 60.0,
                 walk_every: float = 600.0) -> None:
        self.config = config
        self.model_every = model_every
        self.agent_files_every = agent_files_every
        self.walk_every = walk_every
        self._models: tuple[Model, ...] | None = None
        self._at = 0.0
        self._agent_files: ConfigScan | None = None
        self._agent_files_at = 0.0
        self._walked_at = 0.0

    def __call__(self) -> Inventory:
        now = time.monotonic()
        agent_files = self._agent_configs(now)
        if self._models is None or now - self._at >= self.model_every:
            inventory = collect(self.config, agent_configs=agent_files)
            if not any(e.startswith("model inventory failed") for e in inventory.errors):
                self._models, self._at = inventory.models, now
            return inventory
        return collect(self.config, models=self._models, agent_configs=agent_files)

    def _agent_configs(self, now: float) -> ConfigScan | None:
        if not self.config.agents_enabled:
            return None
        if self._agent_files is None or now - self._agent_files_at >= self.agent_files_every:
            walk = self._agent_files is None or now - self._walked_at >= self.walk_every
            self._agent_files = scan_configs(agent_settings(self.config), self._agent_files, walk=walk)
            self._agent_files_at = now
            if walk:
                self._walked_at = now
        return self._agent_files
