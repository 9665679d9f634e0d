"""The risk worker serves the kit's health on its health port: ready while its queue answers, alive always."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from services.kit import embedded
from tests.deploy.pods import grpc_health
from tests.faults.helpers import until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningWorker:
    health: str
    endpoint: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    log: Path

    def status(self, service: str) -> int:
        return grpc_health(self.health, service, 2)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[RunningWorker]:
    """A risk worker with a health port, on an embedded endpoint of its own."""
    endpoint, url = embedded.start_endpoint(log_file=tmp_path / "embedded-aws.log")
    health = f"127.0.0.1:{embedded.free_port()}"
    env = {**os.environ, **embedded.resources_env(embedded.provision(url)), "LZ_LISTEN_HOST": "127.0.0.1",
           "LZ_HEALTH_PORT": health.rsplit(":", 1)[1], "LZ_ASSETS_ADDRESS": "127.0.0.1:9",
           "LZ_WORKER_WAIT_SECONDS": "1"}
    log = tmp_path / "risk-worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.ingest.worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield RunningWorker(health, endpoint, proc, log)
    finally:
        for child in (proc, endpoint):
            child.terminate()
            child.wait(30)


def test_worker_is_ready_and_alive_while_its_queue_answers(worker: RunningWorker) -> None:
    """With the queue answering, readiness ("") and liveness both report SERVING."""
    until(lambda: worker.status("") == SERVING, 30, "the worker ready")
    assert worker.status("liveness") == SERVING


def test_worker_is_unready_but_alive_when_its_queue_stops_answering(worker: RunningWorker) -> None:
    """With the AWS endpoint gone, readiness turns NOT_SERVING while liveness stays SERVING."""
    until(lambda: worker.status("") == SERVING, 30, "the worker ready")
    worker.endpoint.terminate()
    worker.endpoint.wait(30)
    until(lambda: worker.status("") == NOT_SERVING, 60, "the worker unready")
    assert worker.status("liveness") == SERVING
    assert worker.worker.poll() is None, worker.log.read_text()[-3000:]
