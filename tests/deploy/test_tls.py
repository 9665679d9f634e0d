"""TLS on the gRPC endpoints: the local CA's certificates, and a real service process that serves only TLS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import certs, embedded
from tests.deploy.conftest import REPO
from tests.faults.helpers import until

SERVICE = "lifecyclezero.v1.LedgerService"
ORIGIN = "lifecyclezero.test/ledger"


def _san(cert_file: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _check(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
    return int(reply.status)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("certs")
    certs.generate(outdir, namespace="lifecyclezero")
    return outdir


def _serving_over_tls(address: str, ca_file: Path) -> bool:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
    try:
        with grpc.secure_channel(address, creds) as channel:
            return _check(channel) == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@contextmanager
def _ledger(tls_dir: Path, embedded_aws: embedded.Resources, state: Path, cert: str, key: str,
            ca: str) -> Iterator[str]:
    """`python -m services.ledger` with LZ_TLS_* files of `tls_dir`, serving over TLS; yields host:port."""
    from services.tlog.note import generate_key

    port = embedded.free_port()
    _signer, verifier = generate_key(ORIGIN)
    (state / "verifier.keys").write_text(verifier + "\n")
    env = {**os.environ, **embedded.resources_env(embedded_aws), "LZ_PORT": str(port), "LZ_ORIGIN": ORIGIN,
           "LZ_VERIFIER_KEY_FILE": str(state / "verifier.keys"), "LZ_TLS_CERT_FILE": str(tls_dir / cert),
           "LZ_TLS_KEY_FILE": str(tls_dir / key), "LZ_TLS_CA_FILE": str(tls_dir / ca)}
    log = state / "ledger.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.ledger"], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    address = f"localhost:{port}"
    try:
        until(lambda: proc.poll() is not None or _serving_over_tls(address, tls_dir / ca), 30, "ledger over TLS")
        assert proc.poll() is None, log.read_text()[-2000:]
        yield address
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def tls_ledger(ca_dir: Path, embedded_aws: embedded.Resources,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m services.ledger` with LZ_TLS_* set, on the session's embedded AWS; yields host:port."""
    with _ledger(ca_dir, embedded_aws, tmp_path_factory.mktemp("tls"), "ledger.crt", "ledger.key", "ca.crt") as address:
        yield address


def _mount_secret(mount: Path, source: Path, version: str) -> None:
    """Publish `source`'s ledger certificate as the kubelet publishes a Secret volume: files that link into
    `..data`, itself a link to a versioned directory, swapped atomically on every update."""
    versioned = mount / f"..{version}"
    versioned.mkdir()
    for name, file in (("tls.crt", "ledger.crt"), ("tls.key", "ledger.key"), ("ca.crt", "ca.crt")):
        shutil.copy(source / file, versioned / name)
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(f"..data/{name}")
    (mount / "..data_tmp").symlink_to(versioned.name)
    os.replace(mount / "..data_tmp", mount / "..data")


def test_a_renewed_certificate_is_served_without_a_restart(embedded_aws: embedded.Resources, tmp_path: Path) -> None:
    """After the mounted Secret swaps to a certificate from a new CA, new connections get it from the same process."""
    first, second, mount = tmp_path / "first", tmp_path / "second", tmp_path / "mount"
    certs.generate(first, services=("ledger",))
    certs.generate(second, services=("ledger",))
    mount.mkdir()
    _mount_secret(mount, first, "1")
    with _ledger(mount, embedded_aws, tmp_path, "tls.crt", "tls.key", "ca.crt") as address:
        _mount_secret(mount, second, "2")
        until(lambda: _serving_over_tls(address, second / "ca.crt"), 30, "the renewed certificate served")
        assert not _serving_over_tls(address, first / "ca.crt")


def test_certificate_names_the_service_and_loopback(ca_dir: Path) -> None:
    """A service certificate is valid for its Kubernetes Service names, localhost, 127.0.0.1 and ::1."""
    san = _san(ca_dir / "ledger.crt")
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "ledger", "ledger.lifecyclezero", "ledger.lifecyclezero.svc", "ledger.lifecyclezero.svc.cluster.local",
        "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_private_keys_are_readable_by_the_owner_only(ca_dir: Path) -> None:
    """The CA key and every service key are written 0600."""
    for key in ca_dir.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_rerunning_keeps_the_ca(ca_dir: Path) -> None:
    """Generating again reuses the existing CA, so certificates already handed out stay valid."""
    before = (ca_dir / "ca.crt").read_bytes()
    certs.issue(ca_dir, "assets")
    assert (ca_dir / "ca.crt").read_bytes() == before


def test_secrets_manifest_is_valid_kubernetes(ca_dir: Path) -> None:
    """secrets.yaml holds one valid kubernetes.io/tls Secret per process, named as the manifests mount them."""
    docs = list(yaml.safe_load_all((ca_dir / "secrets.yaml").read_text()))
    assert {d["metadata"]["name"] for d in docs} == {f"lz-tls-{s}" for s in certs.SERVICES}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert set(doc["data"]) == {"tls.crt", "tls.key", "ca.crt"}


def test_health_check_succeeds_over_tls(tls_ledger: str, ca_dir: Path) -> None:
    """A client trusting the local CA gets SERVING from the ledger's health service over TLS."""
    creds = grpc.ssl_channel_credentials(root_certificates=(ca_dir / "ca.crt").read_bytes())
    with grpc.secure_channel(tls_ledger, creds) as channel:
        assert _check(channel) == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_is_refused(tls_ledger: str) -> None:
    """A plaintext client cannot talk to the TLS-only ledger."""
    with grpc.insecure_channel(tls_ledger) as channel, pytest.raises(grpc.RpcError) as info:
        _check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_trusting_another_ca_is_refused(tls_ledger: str, tmp_path: Path) -> None:
    """A client that does not trust the local CA cannot complete the handshake."""
    other, _ = certs.load_or_create_ca(tmp_path)
    from cryptography.hazmat.primitives import serialization

    creds = grpc.ssl_channel_credentials(root_certificates=other.public_bytes(serialization.Encoding.PEM))
    with grpc.secure_channel(tls_ledger, creds) as channel, pytest.raises(grpc.RpcError) as info:
        _check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_key_that_does_not_match_the_certificate_is_not_loaded(tmp_path: Path) -> None:
    """While the files on disk are a mismatched pair the reloader keeps the current ones, then loads the good set."""
    from services.kit.server import TlsFiles
    from services.kit.settings import ServerSettings

    certs.generate(tmp_path, services=("ledger", "sealer"))
    files = TlsFiles(ServerSettings(tls_cert_file=str(tmp_path / "ledger.crt"),
                                    tls_key_file=str(tmp_path / "ledger.key")))
    shutil.copy(tmp_path / "sealer.crt", tmp_path / "ledger.crt")
    assert files.fetch() is None
    shutil.copy(tmp_path / "sealer.key", tmp_path / "ledger.key")
    assert files.fetch() is not None
    assert files.fetch() is None


def test_ingest_certificate_names_its_internal_service(ca_dir: Path) -> None:
    """The ingest certificate is also valid for ingest-internal, the Service other services call it through."""
    names = set(_san(ca_dir / "ingest.crt").get_values_for_type(x509.DNSName))
    assert {"ingest-internal", "ingest-internal.lifecyclezero.svc"} <= names


def test_make_certs_passes_each_ingest_san() -> None:
    """`make certs INGEST_SAN="a b"` hands every name to `services.kit.certs` as its own --ingest-san."""
    result = subprocess.run(["make", "--no-print-directory", "-n", "certs",
                             "INGEST_SAN=agents.example.com 203.0.113.7"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert "services.kit.certs .lz/certs --ingest-san agents.example.com --ingest-san 203.0.113.7" in result.stdout
