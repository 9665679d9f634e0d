"""Every Deployment of the local overlay passes its probes when started as its manifest says.

The render of `deploy/k8s/overlays/local` runs here as processes (tests/deploy/pods.py): the embedded
AWS endpoint, its provisioning Job, then the five control-plane Deployments, with the TLS Secrets of
`python -m services.kit.certs` and the token and key Secrets the README creates.
"""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from lifecyclezero.v1 import ingest_pb2, ingest_pb2_grpc

from services.kit import auth, certs
from services.kit.auth import sha256_hex
from services.tlog.note import generate_key
from tests.deploy.pods import Cluster, container, container_ports, objects, probes, tls_secrets
from tests.faults.helpers import until

CONTROL_PLANE = ("ledger", "sealer", "assets", "ingest", "risk-worker")
WORKLOADS = ("embedded-aws", *CONTROL_PLANE)
PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")


def _common(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    data: dict[str, str] = objects(docs, "ConfigMap")[name]["data"]
    return data


def _secrets(docs: list[dict[str, Any]], pki: Any) -> dict[str, dict[str, str]]:
    """The Secrets and ConfigMaps the README's production steps 5 and 6 create, for the local overlay."""
    (namespace,) = objects(docs, "Namespace")
    made = tls_secrets(certs.generate(pki, namespace=namespace).read_text())
    tokens = {name: random_secrets.token_urlsafe(32) for name in ("ingest", "assets", "risk-worker")}
    bootstrap_token = random_secrets.token_urlsafe(32)
    (common,) = (name for name in objects(docs, "ConfigMap") if name.startswith("lz-common"))
    signer, verifier = generate_key(_common(docs, common)["LZ_ORIGIN"])
    made["lz-service-tokens"] = {**tokens, "callers": ",".join(f"{name}={sha256_hex(token)}"
                                                                 for name, token in tokens.items())}
    made["lz-bootstrap-token"] = {"sha256": sha256_hex(bootstrap_token)}
    made["lz-signing-key"] = {"signing.key": signer + "\n"}
    made["lz-verifier-keys"] = {"verifier.keys": verifier + "\n"}
    return made


@pytest.fixture(scope="module")
def cluster(rendered: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The local overlay running: the endpoint ready, the provisioning Job done, every Deployment started.

    A free port is free only until someone binds it: when a process lost its port to another program on
    this shared machine, the whole overlay starts again on new ports (they know each other's addresses).
    """
    root = tmp_path_factory.mktemp("pods")
    docs = rendered["local"]
    made = _secrets(docs, root / "pki")
    for attempt in range(1, 4):
        local = Cluster(docs, made, root / f"attempt-{attempt}")
        try:
            _start(local)
        except BaseException:
            local.stop()
            raise
        if attempt == 3 or not local.lost_a_port():
            break
        local.stop()
    try:
        yield local
    finally:
        local.stop()


def _start(local: Cluster) -> None:
    """Start the overlay and wait until every process is past its startup probe or has exited."""
    endpoint = local.start("Deployment", "embedded-aws")
    until(lambda: endpoint.passes(probes(endpoint.workload)["readinessProbe"]) or local.lost_a_port(), 60,
          "the embedded endpoint ready")
    if local.lost_a_port():
        return
    job = local.start("Job", "embedded-aws-provision")
    assert job.proc.wait(120) == 0, job.log.read_text()
    pods = [local.start("Deployment", name) for name in CONTROL_PLANE]
    until(lambda: all(pod.proc.poll() is not None or pod.passes(probes(pod.workload)["startupProbe"])
                      for pod in pods), 120, "every process started or exited")


def test_every_grpc_probe_targets_the_health_port_the_process_is_given(rendered: dict[str, Any]) -> None:
    """Each gRPC probe's port is the container's `health` port and the LZ_HEALTH_PORT its ConfigMaps set."""
    docs = rendered["local"]
    for name in CONTROL_PLANE:
        workload = objects(docs, "Deployment")[name]
        env: dict[str, str] = {}
        for source in container(workload)["envFrom"]:
            env.update(_common(docs, source["configMapRef"]["name"]))
        for kind, probe in probes(workload).items():
            assert probe["grpc"]["port"] == container_ports(workload)["health"] == int(env["LZ_HEALTH_PORT"]), (
                name, kind)


@pytest.mark.parametrize("name", WORKLOADS)
def test_deployment_declares_every_probe(rendered: dict[str, Any], name: str) -> None:
    """The Deployment has a startup, a readiness and a liveness probe."""
    assert set(probes(objects(rendered["local"], "Deployment")[name])) == set(PROBE_KINDS)


@pytest.mark.slow
@pytest.mark.parametrize("kind", PROBE_KINDS)
@pytest.mark.parametrize("name", WORKLOADS)
def test_deployment_passes_its_probe(cluster: Cluster, name: str, kind: str) -> None:
    """The process started as the Deployment says passes the probe as the manifest defines it."""
    pod = cluster.pods[name]
    probe = probes(pod.workload)[kind]
    startup = probes(pod.workload)["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    until(lambda: pod.passes(probe) or pod.proc.poll() is not None, budget, f"{name}'s {kind}")
    assert pod.proc.poll() is None, pod.log.read_text()[-3000:]


def _deliver_command(cluster: Cluster, address: str, client_cert_of: str = "assets",
                     token_of: str = "assets") -> grpc.StatusCode:
    """The status of DeliverCommand (an empty command) to ingest at `address` with the service token of
    `token_of`, presenting the TLS certificate of `client_cert_of` (none if empty)."""
    ca = cluster.secrets["lz-tls-ingest"]["ca.crt"].encode()
    token = cluster.secrets["lz-service-tokens"][token_of]
    client = cluster.secrets.get(f"lz-tls-{client_cert_of}", {})
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=client.get("tls.key", "").encode() or None,
                                         certificate_chain=client.get("tls.crt", "").encode() or None)
    with grpc.secure_channel(address, creds) as channel:
        try:
            ingest_pb2_grpc.IngestServiceStub(channel).DeliverCommand(
                ingest_pb2.DeliverCommandRequest(), timeout=10,
                metadata=[("authorization", f"Bearer {token}"), (auth.TENANT_METADATA_KEY, "acme")])
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.slow
@pytest.mark.parametrize(("address", "certificate", "token", "expected"), [
    ("ingest:50051", "assets", "assets", grpc.StatusCode.PERMISSION_DENIED),  # the agents' port
    ("ingest-internal:50052", "", "assets", grpc.StatusCode.UNAVAILABLE),  # the token without a certificate
    ("ingest-internal:50052", "ledger", "assets", grpc.StatusCode.PERMISSION_DENIED),  # a service not allowed to
    ("ingest-internal:50052", "assets", "risk-worker", grpc.StatusCode.PERMISSION_DENIED),  # another's token
    ("ingest-internal:50052", "assets", "assets", grpc.StatusCode.INVALID_ARGUMENT),  # reaches the servicer
    ("ingest-internal:50052", "ingest", "ingest", grpc.StatusCode.INVALID_ARGUMENT),  # a replica forwarding
])
def test_deliver_command_reaches_ingest_only_internally_from_assets(cluster: Cluster, address: str,
                                                                     certificate: str, token: str,
                                                                     expected: grpc.StatusCode) -> None:
    """DeliverCommand reaches ingest's servicer (which rejects the empty command) only through ingest-internal
    with the assets service's (or a peer ingest replica's) certificate and its own service token."""
    ingest = cluster.pods["ingest"]
    until(lambda: ingest.passes(probes(ingest.workload)["readinessProbe"]), 120, "ingest ready")
    assert _deliver_command(cluster, cluster.addresses[address], client_cert_of=certificate,
                            token_of=token) == expected
