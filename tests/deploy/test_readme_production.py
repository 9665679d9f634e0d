"""README production steps 4 to 6 run as written from a fresh clone after `make install`, and create what they say.

Neither an AWS account nor a cluster exists in CI, so two commands are stand-ins, and only they:
`aws` answers the caller identity and the stack's outputs with the example site's values, and
`kubectl` runs for real in client-side dry run (`--dry-run=client -o yaml`), its objects collected
in one file (`apply -f FILE` collects FILE). Everything else (the virtualenv's Python, key
generation, `services.kit.certs`, hashing, sed) runs as an operator's shell would run it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from services.kit.settings import service_callers
from services.tlog.note import Signer, Verifier, open_note, sign
from tests.deploy.conftest import REPO
from tests.packaging.installed import copy_tree, tracked_files

NAMESPACE = "security-tools"  # not the default, so a hard-coded namespace anywhere shows
AGENTS = "agents.example.com"
USER_SETTINGS = ("Region", "Image", "Origin", "ControlPlaneEndpoints")

_AWS = """#!/bin/sh
# Stand-in for the aws CLI: the caller's account and the stack's outputs (OutputKey<TAB>OutputValue).
case "$1 $2" in
  "sts get-caller-identity") echo 111122223333 ;;
  "cloudformation describe-stacks") cat "$LZ_TEST_OUTPUTS" ;;
  *) echo "aws $*: not available in CI" >&2; exit 1 ;;
esac
"""
_KUBECTL = """#!/bin/sh
# kubectl in client-side dry run: `create` prints the object it would create, `apply -f F` takes F.
out="$LZ_TEST_OBJECTS"
for arg in "$@"; do
  case "$arg" in
    create) echo --- >> "$out"; exec "$LZ_TEST_KUBECTL" "$@" --dry-run=client -o yaml >> "$out" ;;
    apply)
      previous=""
      for a in "$@"; do [ "$previous" = "-f" ] && { echo ---; cat "$a"; } >> "$out"; previous="$a"; done
      exit 0 ;;
  esac
done
echo "kubectl $*: needs a cluster" >&2; exit 1
"""


def production_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### From an empty AWS account"):]
    return section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]


def steps_4_to_6(block: str) -> str:
    """The prologue (variables, the `sha256` helper), the image name of step 3, then steps 4, 5 and 6."""
    prologue = block[:block.index("# 1.")]
    (image,) = re.findall(r"^IMAGE=.*$", block, flags=re.MULTILINE)
    steps = block[block.index("# 4."):block.index("# 7.")]
    return f"{prologue.replace('NS=lifecyclezero', f'NS={NAMESPACE}')}\n{image}\n{steps}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone after `make install`: the tracked files and the virtualenv, steps 4 to 6 run in it."""
    root = tmp_path_factory.mktemp("readme")
    work = root / "clone"
    copy_tree(((path, path) for path in tracked_files()), work)
    (work / ".venv").symlink_to(REPO / ".venv")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", _AWS), ("kubectl", _KUBECTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    outputs = root / "outputs.txt"
    example = (REPO / "deploy" / "site-example" / "stack-outputs.env").read_text().splitlines()
    outputs.write_text("".join(line.replace("=", "\t", 1) + "\n" for line in example
                               if line and not line.startswith("#") and line.split("=")[0] not in USER_SETTINGS))
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required (apt-get install kubectl); see docs/DEPLOY.md"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(root), "KUBECONFIG": str(root / "no-cluster"),
           "LZ_TEST_OUTPUTS": str(outputs), "LZ_TEST_OBJECTS": str(root / "objects.yaml"), "LZ_TEST_KUBECTL": kubectl}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", steps_4_to_6(production_block())], cwd=work,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return work


def _created(clone: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((clone.parent / "objects.yaml").read_text())
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs if doc}


def _data(obj: dict[str, Any], key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()


def test_step_4_writes_a_site_whose_objects_are_all_in_the_namespace(clone: Path) -> None:
    """The site of step 4 renders with every namespaced object, and the Namespace, in `NS` only."""
    rendered = subprocess.run(["kubectl", "kustomize", str(clone / ".lz" / "aws")], check=True, capture_output=True,
                              text=True, timeout=60).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    assert namespaces == {NAMESPACE}
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Namespace"] == [NAMESPACE]
    assert f"LZ_CONTROL_PLANE_ENDPOINTS: {AGENTS}:50051" in rendered


def test_step_4_keeps_the_stack_outputs_out_of_git() -> None:
    """The file step 4 writes the account's outputs to is ignored by git."""
    result = subprocess.run(["git", "check-ignore", "-q", ".lz/aws/stack-outputs.env"], cwd=REPO, timeout=30)
    assert result.returncode == 0


def test_step_5_stores_each_token_with_its_sha256(clone: Path) -> None:
    """The service tokens Secret holds each caller's own token and the callers' SHA-256s; the bootstrap Secret
    only a SHA-256."""
    created = _created(clone)
    service = created[("Secret", "lz-service-tokens")]
    assert service["metadata"]["namespace"] == NAMESPACE
    callers = service_callers(_data(service, "callers"))
    assert [name for name, _ in callers] == ["ingest", "assets", "risk-worker"]
    assert all(digest == hashlib.sha256(_data(service, name).encode()).hexdigest() for name, digest in callers)
    assert set(created[("Secret", "lz-bootstrap-token")]["data"]) == {"sha256"}
    assert re.fullmatch(r"[0-9a-f]{64}", _data(created[("Secret", "lz-bootstrap-token")], "sha256"))


def test_step_5_signing_key_matches_the_published_verifier_key(clone: Path) -> None:
    """A checkpoint signed with the Secret's signing key opens with the ConfigMap's verifier key."""
    created = _created(clone)
    signer = Signer(_data(created[("Secret", "lz-signing-key")], "signing.key").strip())
    verifier = Verifier(created[("ConfigMap", "lz-verifier-keys")]["data"]["verifier.keys"].strip())
    assert open_note(sign("lifecyclezero.example.com/ledger\n1\nAAAA\n", [signer]), [verifier]).text


def test_step_5_leaves_no_private_key_on_disk(clone: Path) -> None:
    """No file of the clone holds the signing key: it went from Python to kubectl through a pipe."""
    private = _data(_created(clone)[("Secret", "lz-signing-key")], "signing.key").strip()
    leaked = [path for path in clone.rglob("*") if path.is_file() and not path.is_symlink()
              and private.encode() in path.read_bytes()]
    assert not leaked


def test_step_6_issues_a_tls_secret_per_process_with_the_agents_name_on_ingest(clone: Path) -> None:
    """Each process gets lz-tls-<service> in `NS`; the ingest certificate also names the agents' DNS name."""
    created = _created(clone)
    secrets = {name: obj for (kind, name), obj in created.items() if kind == "Secret" and name.startswith("lz-tls-")}
    processes = ("ingest", "risk-worker", "assets", "ledger", "sealer", "console")
    assert set(secrets) == {f"lz-tls-{s}" for s in processes}
    assert {obj["metadata"]["namespace"] for obj in secrets.values()} == {NAMESPACE}
    cert = x509.load_pem_x509_certificate(base64.b64decode(secrets["lz-tls-ingest"]["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {AGENTS, f"ingest.{NAMESPACE}.svc"} <= set(names)
