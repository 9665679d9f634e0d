"""A local CA and one certificate per service, for TLS on every gRPC endpoint of a local deployment.

`python -m services.kit.certs OUTDIR` writes `ca.crt`/`ca.key` (reused when present) and
`<service>.crt`/`<service>.key` for every process, each valid for the Kubernetes Service names
(`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`) and for localhost,
127.0.0.1 and ::1, usable as server and as client (mTLS). `--ingest-san NAME` (repeatable) adds the
names agents dial, such as the ingest load balancer's DNS name, to the ingest certificate. It also
writes `secrets.yaml`: one `kubernetes.io/tls` Secret `lz-tls-<service>` per process (tls.crt,
tls.key, ca.crt), which is the shape deploy/k8s mounts and cert-manager produces. Production uses
cert-manager or your own PKI.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("ingest", "risk-worker", "assets", "ledger", "sealer")
DEFAULT_NAMESPACE = "lifecyclezero"
CA_DAYS = 730
LEAF_DAYS = 365
# RFC 1123 host names, optionally with one leading wildcard label (`*.agents.example.com`).
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path


def secret_name(service: str) -> str:
    return f"lz-tls-{service}"


# Kubernetes Services of a process beside the one named after it (deploy/k8s/base).
EXTRA_SERVICES = {"ingest": ("ingest-internal",)}


def dns_names(service: str, namespace: str) -> list[str]:
    names = [
        f"{name}{suffix}"
        for name in (service, *EXTRA_SERVICES.get(service, ()))
        for suffix in ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")
    ]
    return [*names, "localhost"]


def subject_alt_name(text: str) -> x509.GeneralName:
    """An extra SAN: an IP address or a DNS name; ValueError for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower()
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise ValueError(f"{text!r} is not a DNS name or an IP address")
    return x509.DNSName(name)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def load_or_create_ca(outdir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in `outdir`, created on first use."""
    cert_path, key_path = outdir / "ca.crt", outdir / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LifecycleZero local CA")])
    start = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    outdir.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(outdir: Path, service: str, namespace: str = DEFAULT_NAMESPACE,
          extra_sans: Sequence[x509.GeneralName] = ()) -> Issued:
    """A server-and-client certificate for `service`, signed by the CA in `outdir`."""
    ca_cert, ca_key = load_or_create_ca(outdir)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names(service, namespace)]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    sans += [san for san in extra_sans if san not in sans]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.{namespace}.svc")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = outdir / f"{service}.crt", outdir / f"{service}.key"
    _write_private(key_file, _key_pem(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_file, key_file)


def secrets_manifest(outdir: Path, services: Sequence[str], namespace: str) -> str:
    """`kubernetes.io/tls` Secrets (tls.crt, tls.key, ca.crt) for the certificates in `outdir`."""
    ca = (outdir / "ca.crt").read_bytes()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name(service), "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "lifecyclezero"}},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": b64((outdir / f"{service}.crt").read_bytes()),
                "tls.key": b64((outdir / f"{service}.key").read_bytes()),
                "ca.crt": b64(ca),
            },
        }
        for service in services
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def generate(outdir: Path, services: Sequence[str] = SERVICES, namespace: str = DEFAULT_NAMESPACE,
             ingest_sans: Sequence[x509.GeneralName] = ()) -> Path:
    """Certificates for every service (ingest's also for `ingest_sans`) plus `secrets.yaml`; returns its path."""
    for service in services:
        issue(outdir, service, namespace, ingest_sans if service == "ingest" else ())
    manifest = outdir / "secrets.yaml"
    _write_private(manifest, secrets_manifest(outdir, services, namespace).encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kit.certs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--service", action="append", choices=SERVICES, help="only these (repeatable)")
    parser.add_argument("--ingest-san", action="append", default=[], metavar="NAME",
                        help="another DNS name or IP address for the ingest certificate, such as the name "
                             "agents dial (repeatable)")
    args = parser.parse_args(argv)
    try:
        ingest_sans = [subject_alt_name(text) for text in args.ingest_san]
        manifest = generate(args.outdir, tuple(args.service or SERVICES), args.namespace, ingest_sans)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    print(f"CA and certificates in {args.outdir}; Secrets in {manifest} (kubectl apply -f {manifest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
