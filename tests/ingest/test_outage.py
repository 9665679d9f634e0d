"""SQS outage: an ingest process of its own whose SQS traffic goes through a proxy the test stops and starts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.ingest import domain
from services.kit import aws, embedded
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from tests.ingest.agents import IngestTenant, TestAgent, enroll, heartbeat

pytestmark = pytest.mark.slow
SERVICE = "lifecyclezero.v1.IngestService"


class Proxy:
    """A loopback TCP forwarder that can be cut (listener and live connections) and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = embedded.free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self._server.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=1).status)
        except grpc.RpcError:
            return -1


def _until(check: Any, wait: float = 20.0) -> None:
    deadline = time.monotonic() + wait
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture
def proxied_ingest(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Proxy, Any, str]]:
    """An ingest process on the stack's table and assets whose SQS calls go through a Proxy, on a queue of its own."""
    assert stack.resources is not None
    sqs = aws.client(AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url),
                     "sqs")
    queue = sqs.create_queue(QueueName=f"outage-{os.getpid()}-{time.monotonic_ns()}")["QueueUrl"]
    proxy = Proxy(int(stack.resources.endpoint_url.rsplit(":", 1)[1]))
    proxy.start()
    port = embedded.free_port()
    env = {**os.environ, **stack.env, "LZ_PORT": str(port), "LZ_QUEUE_URL": queue,
           "LZ_SQS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
    log = open(tmp_path / "ingest.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        _until(lambda: _health(address) == health_pb2.HealthCheckResponse.SERVING)
        yield address, proxy, sqs, queue
    finally:
        proc.terminate()
        proc.wait(15)
        with contextlib.suppress(Exception):
            proxy.stop()


def _queued_seqs(sqs: Any, queue: str) -> list[int]:
    seqs: list[int] = []
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            seqs.extend(env.heartbeat.seq for env in domain.decode_message(message["Body"]).envelopes)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if not got.get("Messages"):
            break
    return sorted(seqs)


async def test_no_acks_while_sqs_is_down_and_catch_up_after(stack: Stack, ingest_tenant: IngestTenant,
                                                            proxied_ingest: tuple[str, Proxy, Any, str]) -> None:
    """With SQS cut off nothing is acked and health is NOT_SERVING; after it returns the agent replays and
    every heartbeat is in the queue exactly as acked."""
    address, proxy, sqs, queue = proxied_ingest
    reply = enroll(stack.addresses["ingest"], ingest_tenant)
    agent = TestAgent(address, ingest_tenant.tenant, reply.asset_id, reply.agent_credential)
    try:
        await agent.connect()
        await agent.send(heartbeat(1))
        assert await agent.ack_for(1) == 1

        proxy.stop()
        for seq in (2, 3):
            await agent.send(heartbeat(seq))
        assert await agent.no_ack(within=4)
        _until(lambda: _health(address) == health_pb2.HealthCheckResponse.NOT_SERVING)

        proxy.start()
        _until(lambda: _health(address) == health_pb2.HealthCheckResponse.SERVING)
        await agent.send(heartbeat(4))
        assert await agent.status() == grpc.StatusCode.UNAVAILABLE
        assert agent.error_info().reason == "QUEUE_RECOVERED"
    finally:
        await agent.close()

    again = TestAgent(address, ingest_tenant.tenant, reply.asset_id, reply.agent_credential)
    try:
        welcome = await again.connect(last_acked_seq=1)
        assert welcome.acked_seq == 1
        for seq in (2, 3, 4):  # the agent replays what was never acked
            await again.send(heartbeat(seq))
        assert await again.ack_for(4) == 4
    finally:
        await again.close()
    assert _queued_seqs(sqs, queue) == [1, 2, 3, 4]
