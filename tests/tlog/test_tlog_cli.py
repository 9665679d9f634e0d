"""lz-verify: exit codes 0/1/2, one line of output, never a traceback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tlog_helpers import ORIGIN, TENANT, Log, make_log, memory_reader

from services.tlog.bundle import write_bundle
from services.tlog.cli import main
from services.tlog.merkle import inclusion_proof
from services.tlog.proof import TlogProof, format_consistency_proof

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(11)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, log: Log) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out = {
        "key": d / "log.vkey",
        "old": d / "6.checkpoint",
        "new": d / "11.checkpoint",
        "cons": d / "6-11.proof",
        "entry": d / "entry.json",
        "proof": d / "entry.tlog-proof",
    }
    out["key"].write_text(log.verifier_key + "\n")
    out["old"].write_bytes(log.checkpoint(6))
    out["new"].write_bytes(log.checkpoint(11))
    out["cons"].write_bytes(format_consistency_proof(log.consistency(6, 11)))
    out["entry"].write_bytes(log.events[4].canonical_bytes)
    hashes = inclusion_proof(4, 11, memory_reader(log.leaf_hashes))
    out["proof"].write_bytes(TlogProof(4, tuple(hashes), log.checkpoint(11)).to_bytes())
    bundle = d / "bundle"
    write_bundle(
        bundle,
        tenant=TENANT,
        origin=ORIGIN,
        events=[e.canonical_bytes for e in log.events],
        checkpoints=[log.checkpoint(6), log.checkpoint(11)],
        consistency_proofs={(6, 11): log.consistency(6, 11)},
        verifier_keys=[log.verifier_key],
    )
    out["bundle"] = bundle
    return out


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "services.tlog.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def _argv(kind: str, f: dict[str, Path], target: Path | None = None) -> list[str | Path]:
    key = ["--key", f["key"]]
    if kind == "checkpoint":
        return ["checkpoint", *key, target or f["new"]]
    if kind == "proof":
        return ["proof", *key, "--entry", f["entry"], target or f["proof"]]
    if kind == "consistency":
        return ["consistency", *key, f["old"], f["new"], target or f["cons"]]
    return ["bundle", *key, target or f["bundle"]]


@pytest.mark.parametrize("kind", ["checkpoint", "proof", "consistency", "bundle"])
def test_valid_input_exits_zero(kind: str, files: dict[str, Path]) -> None:
    """Each subcommand exits 0 with one 'verified:' line on valid input."""
    result = _run(*_argv(kind, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("verified: ") and result.stdout.count("\n") == 1
    assert result.stderr == ""


def test_checkpoint_prints_origin_size_root(files: dict[str, Path]) -> None:
    """The checkpoint subcommand prints origin, size and root."""
    out = _run(*_argv("checkpoint", files)).stdout
    assert f"origin={ORIGIN}" in out and "size=11" in out and "root=" in out


def test_key_accepted_inline_and_repeated(files: dict[str, Path], log: Log) -> None:
    """--key takes a key string, may repeat for rotation, and unknown extra keys do no harm."""
    other = make_log(1)
    assert main(["checkpoint", "--key", other.verifier_key, "--key", log.verifier_key, str(files["new"])]) == 0


def test_json_output(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints a single JSON object with the status and details."""
    assert main(["checkpoint", "--json", "--key", str(files["key"]), str(files["new"])]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["status"], doc["size"], doc["origin"]) == ("verified", 11, ORIGIN)


def test_wrong_key_exits_one(files: dict[str, Path]) -> None:
    """A checkpoint not signed by the given key exits 1 with one failure line."""
    other = make_log(1)
    result = _run("checkpoint", "--key", other.verifier_key, files["new"])
    assert result.returncode == 1
    assert result.stdout.startswith("lz-verify: verification failed:") and result.stdout.count("\n") == 1


def test_origin_must_match_key_name(tmp_path: Path, files: dict[str, Path]) -> None:
    """A checkpoint whose origin differs from the signing key's name fails."""
    from services.tlog.checkpoint import Checkpoint
    from services.tlog.note import Signer, generate_key

    sk, vk = generate_key("someone.else")
    cp = tmp_path / "cp"
    cp.write_bytes(Checkpoint(ORIGIN, 1, bytes(32)).sign([Signer(sk)]))
    assert main(["checkpoint", "--key", vk, str(cp)]) == 1


def test_entry_for_other_seq_fails(tmp_path: Path, files: dict[str, Path], log: Log) -> None:
    """A proof presented with a different event's bytes exits 1."""
    entry = tmp_path / "e"
    entry.write_bytes(log.events[5].canonical_bytes)
    assert main(["proof", "--key", str(files["key"]), "--entry", str(entry), str(files["proof"])]) == 1


@pytest.mark.parametrize("kind", ["checkpoint", "proof", "consistency"])
def test_one_byte_changes_never_verify(kind: str, tmp_path: Path, files: dict[str, Path]) -> None:
    """Changing any single byte of the input file exits 1 or 2 with one line, in process."""
    source = {"checkpoint": files["new"], "proof": files["proof"], "consistency": files["cons"]}[kind]
    data = source.read_bytes()
    target = tmp_path / "mutated"
    rng = random.Random(kind)
    for pos in range(len(data)):
        changed = bytearray(data)
        changed[pos] = (changed[pos] + rng.randrange(1, 256)) % 256
        target.write_bytes(bytes(changed))
        code = main([str(a) for a in _argv(kind, files, target)])
        assert code in (1, 2), (kind, pos)


@pytest.mark.parametrize("kind", ["checkpoint", "proof", "consistency", "bundle"])
def test_one_byte_change_subprocess(kind: str, tmp_path: Path, files: dict[str, Path]) -> None:
    """As a subprocess, a one-byte change exits 1 or 2 with one line and no traceback."""
    if kind == "bundle":
        import shutil

        target = tmp_path / "bundle"
        shutil.copytree(files["bundle"], target)
        events = target / "events.jsonl"
        data = bytearray(events.read_bytes())
        data[len(data) // 3] ^= 0x01
        events.write_bytes(bytes(data))
    else:
        source = {"checkpoint": files["new"], "proof": files["proof"], "consistency": files["cons"]}[kind]
        data = bytearray(source.read_bytes())
        data[len(data) // 2] ^= 0x04
        target = tmp_path / "mutated"
        target.write_bytes(bytes(data))
    result = _run(*_argv(kind, files, target))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr + result.stdout
    assert (result.stdout + result.stderr).count("\n") == 1


@pytest.mark.parametrize("seed", range(4))
def test_garbage_exits_two(seed: int, tmp_path: Path, files: dict[str, Path]) -> None:
    """Random bytes as any input exit 2 with a single 'lz-verify: error:' line and no traceback."""
    rng = random.Random(seed)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000))))
    kind = ["checkpoint", "proof", "consistency", "checkpoint"][seed]
    result = _run(*_argv(kind, files, garbage))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("lz-verify: error:") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_garbage_in_process_never_escapes(tmp_path: Path, files: dict[str, Path]) -> None:
    """Hundreds of random inputs never raise out of main and always exit 1 or 2."""
    rng = random.Random(7)
    garbage = tmp_path / "garbage"
    for i in range(300):
        garbage.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))))
        kind = ["checkpoint", "proof", "consistency"][i % 3]
        assert main([str(a) for a in _argv(kind, files, garbage)]) in (1, 2)


@pytest.mark.parametrize(
    "argv",
    [[], ["checkpoint"], ["nope"], ["checkpoint", "--key", "garbage", "x"], ["bundle", "--key", "k"]],
)
def test_usage_errors_exit_two(argv: list[str]) -> None:
    """Bad usage exits 2 with one 'lz-verify: error:' line."""
    result = _run(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith("lz-verify: error:") and result.stderr.count("\n") == 1


def test_missing_file_exits_two(files: dict[str, Path]) -> None:
    """A file that cannot be read exits 2."""
    assert main(["checkpoint", "--key", str(files["key"]), "/nonexistent/cp"]) == 2


def test_bundle_failure_names_seq(tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A tampered bundle exits 1 and the line names the first bad seq."""
    import shutil

    target = tmp_path / "bundle"
    shutil.copytree(files["bundle"], target)
    lines = (target / "events.jsonl").read_bytes().splitlines(keepends=True)
    del lines[2]
    (target / "events.jsonl").write_bytes(b"".join(lines))
    assert main(["bundle", "--key", str(files["key"]), str(target)]) == 1
    assert "seq 3" in capsys.readouterr().out
