"""A real ``lz-agent run`` process enrolled on the test stack, with its own state directory and home."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
from lifecyclezero.v1 import assets_pb2, assets_pb2_grpc, common_pb2

from agent import statefile
from agent.enroll import enroll
from services.kit.devstack import Stack
from tests.faults.helpers import Store
from tests.ingest.agents import create_tenant

REPO = Path(__file__).resolve().parents[2]


class AgentHost:
    """One enrolled host: ``home`` is the only user home it scans, ``models`` its extra model root."""

    def __init__(self, stack: Stack, root: Path) -> None:
        self.stack = stack
        self.state = root / "state"
        self.home = root / "home"
        self.models = self.home / "models"
        self.models.mkdir(parents=True)
        self.log = root / "agent.log"
        tenant = create_tenant(stack)
        self.tenant = tenant.tenant
        self.admin = tenant.admin()
        self.asset_id = enroll(self.state, tenant.tenant, tenant.enrollment_secret, stack.addresses["ingest"]).asset_id
        self.store = Store(stack)

    def env(self, **settings: str) -> dict[str, str]:
        """The agent's environment: this host's paths, a 1 s heartbeat and model rescan, no nft on the host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LZ_AGENT_")}
        env.update(
            LZ_AGENT_STATE_DIR=str(self.state),
            LZ_AGENT_MODELS_HOMES=str(self.home),
            LZ_AGENT_MODELS_ROOTS=str(self.models),
            LZ_AGENT_MODELS_RESCAN_INTERVAL="1",
            LZ_AGENT_STREAM_HEARTBEAT_INTERVAL="1",
            LZ_AGENT_STREAM_FIRST_RECONNECT_JITTER="0",
            LZ_AGENT_CONTAINMENT_NFT=str(self.state / "no-nft-here"),
            LZ_AGENT_CONFIG=str(self._config()),
        )
        env.update({f"LZ_AGENT_{k.upper()}": v for k, v in settings.items()})
        return env

    def start(self, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        """``lz-agent run`` with ``args``; its log goes to ``self.log``."""
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", *args], cwd=REPO, env=self.env(**settings),
                stdout=log, stderr=log,
            )

    @contextlib.contextmanager
    def running(self, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
        process = self.start("--duration", "300", **settings)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def acked_seq(self) -> int:
        data = statefile.read_json(self.state / "stream.json")
        return int(data.get("acked_seq", 0)) if isinstance(data, dict) else 0

    def inventory(self) -> common_pb2.Inventory | None:
        """The newest inventory the control plane stored for this asset."""
        return self.store.latest_inventory(self.tenant, self.asset_id)

    def model_on_control_plane(self, name_part: str) -> common_pb2.Model | None:
        inventory = self.inventory()
        found = [m for m in inventory.models if name_part in m.path] if inventory else []
        return found[0] if found else None

    def custody_actions(self) -> list[str]:
        """The actions of the asset's custody log, oldest first, as operators read it."""
        with grpc.insecure_channel(self.stack.addresses["assets"]) as channel:
            log = assets_pb2_grpc.AssetServiceStub(channel).GetCustodyLog(
                assets_pb2.GetCustodyLogRequest(asset_id=self.asset_id, page_size=100), metadata=self.admin, timeout=10
            )
        return [event.action for event in log.events]

    def _config(self) -> Path:
        path = self.state / "empty.toml"
        path.write_text("")
        return path


def line_ready(stream: IO[str]) -> str:
    """The next line of ``stream`` if one can be read now, else "" (for polling a child's stdout)."""
    readable, _, _ = select.select([stream], [], [], 0)
    return stream.readline().strip() if readable else ""
