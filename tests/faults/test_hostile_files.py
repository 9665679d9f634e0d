"""Hostile files: lz-verify and the GGUF reader fed random and mutated input never crash.

lz-verify answers 0, 1 or 2 with one line and never a traceback or an "internal error" (its catch-all
for a crash it did not foresee); the GGUF reader raises GGUFError and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.models.gguf import GGUFError, parse_gguf
from services.tlog import cli
from services.tlog.bundle import write_bundle
from tests.agent.gguf_fixtures import gguf_string, header, write_model
from tests.tlog.tlog_helpers import ORIGIN, TENANT, make_log

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A valid bundle of 40 events with checkpoints at 16, 32 and 40, and its verifier key."""
    log = make_log(40)
    root = tmp_path_factory.mktemp("bundle") / "bundle"
    sizes = (16, 32, 40)
    write_bundle(root, tenant=TENANT, origin=ORIGIN, events=log.events,
                 checkpoints=[log.checkpoint(s) for s in sizes],
                 consistency_proofs={(16, 32): log.consistency(16, 32), (32, 40): log.consistency(32, 40)},
                 verifier_keys=[log.verifier_key])
    assert run_cli(["bundle", "--key", log.verifier_key, str(root)])[0] == 0
    return root, log.verifier_key


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue() + err.getvalue()


def assert_clean(code: int, output: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in output and "internal error" not in output, output
    assert len(output.strip().splitlines()) == 1, output


mutations = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "replace", "delete", "duplicate_line", "empty"]),
    st.integers(0, 10**6), st.binary(min_size=1, max_size=64),
)


def mutate(root: Path, pick: int, kind: str, where: int, data: bytes) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = files[pick % len(files)]
    body = target.read_bytes()
    at = where % (len(body) + 1)
    if kind == "flip" and body:
        i = at % len(body)
        body = body[:i] + bytes([body[i] ^ (data[0] or 1)]) + body[i + 1:]
    elif kind == "truncate":
        body = body[:at]
    elif kind == "insert":
        body = body[:at] + data + body[at:]
    elif kind == "replace":
        body = data
    elif kind == "duplicate_line":
        lines = body.splitlines(keepends=True)
        if lines:
            lines.insert(at % len(lines), lines[at % len(lines)])
        body = b"".join(lines)
    elif kind == "empty":
        body = b""
    if kind == "delete":
        target.unlink()
    else:
        target.write_bytes(body)


@FUZZ
@given(pick=st.integers(0, 100), changes=st.lists(mutations, min_size=1, max_size=3))
def test_lz_verify_bundle_survives_mutated_bundles(bundle, pick, changes):
    """lz-verify bundle on a mutated bundle exits 0, 1 or 2 with one line and no traceback."""
    root, key = bundle
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "b"
        shutil.copytree(root, copy)
        for kind, where, data in changes:
            mutate(copy, pick, kind, where, data)
        assert_clean(*run_cli(["bundle", "--key", key, str(copy)]))


@FUZZ
@given(command=st.sampled_from(["checkpoint", "proof", "consistency", "bundle"]),
       blobs=st.lists(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), min_size=3, max_size=3),
       key=st.sampled_from(["good", "garbage", "file"]))
def test_lz_verify_survives_random_files(bundle, command, blobs, key):
    """Every lz-verify command fed random files (and random key files) exits 0, 1 or 2 without a traceback."""
    _, good = bundle
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, blob in enumerate(blobs):
            path = Path(tmp) / f"f{i}"
            path.write_bytes(blob)
            paths.append(str(path))
        keyarg = {"good": good, "garbage": "x+y+z", "file": paths[2]}[key]
        argv = {"checkpoint": ["checkpoint", paths[0]], "proof": ["proof", "--entry", paths[0], paths[1]],
                "consistency": ["consistency", paths[0], paths[1], paths[2]], "bundle": ["bundle", tmp]}[command]
        assert_clean(*run_cli([argv[0], "--key", keyarg, *argv[1:]]))


def test_lz_verify_as_a_process_prints_no_traceback_on_garbage(bundle, tmp_path):
    """The installed entry point on garbage files exits 2 with one line on stderr and no traceback."""
    _, key = bundle
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\xff" * 500)
    for argv in (["checkpoint", str(junk)], ["bundle", str(tmp_path)], ["proof", "--entry", str(junk), str(junk)]):
        done = subprocess.run([sys.executable, "-m", "services.tlog.cli", argv[0], "--key", key, *argv[1:]],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode in (1, 2), done
        assert "Traceback" not in done.stderr + done.stdout


# ---------------------------------------------------------------------------------------- GGUF


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


def only_gguf_error(data: bytes) -> None:
    with contextlib.suppress(GGUFError):
        parse_gguf(io.BytesIO(data))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=9), st.booleans()),
                      min_size=1, max_size=4), cut=st.integers(0, 10**6) | st.none())
def test_gguf_reader_raises_only_gguf_error_on_mutated_models(model_bytes, edits, cut):
    """A valid model with bytes overwritten, inserted or cut off parses or raises GGUFError, nothing else."""
    data = bytearray(model_bytes)
    for where, blob, insert in edits:
        at = where % (len(data) + 1)
        if insert:
            data[at:at] = blob
        else:
            data[at:at + len(blob)] = blob
    if cut is not None:
        del data[cut % (len(data) + 1):]
    only_gguf_error(bytes(data))


_TYPES = st.integers(0, 13) | st.integers(-3, 2**32 - 1)
_COUNTS = st.sampled_from([0, 1, 2, 3, 2**31, 2**32, 2**63 - 1, 2**64 - 1]) | st.integers(0, 2**64 - 1)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(version=st.sampled_from([1, 2, 3, 4, 0, 2**32 - 1]), tensors=_COUNTS, kvs=_COUNTS,
       key=st.text(max_size=20), vtype=_TYPES, length=_COUNTS, tail=st.binary(max_size=200))
def test_gguf_reader_raises_only_gguf_error_on_hostile_headers(version, tensors, kvs, key, vtype, length, tail):
    """Hostile counts, types and lengths in a GGUF header raise GGUFError, never anything else."""
    data = header(tensors, kvs, version) + gguf_string(key) + struct.pack("<I", vtype & 0xFFFFFFFF)
    data += struct.pack("<Q", length) + tail
    only_gguf_error(data)
