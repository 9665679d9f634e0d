"""``lz-verify``: offline verification of checkpoints, proofs and export bundles.

Exit status: 0 verified, 1 verification failed, 2 unreadable or malformed
input (or bad usage).  Exactly one line is printed either way (or one JSON
object with ``--json``), so the tool is safe to script and never shows a
traceback, whatever bytes it is fed. ``bundle`` reads events.jsonl one line at
a time (memory does not grow with the bundle), reports its speed and peak
memory (``seconds``, ``events_per_second``, ``peak_rss_mib`` with ``--json``),
and on a terminal shows its progress on stderr, erased when it ends.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from services.tlog._text import b64encode
from services.tlog.bundle import verify_bundle
from services.tlog.checkpoint import Checkpoint
from services.tlog.errors import MalformedError, NoteError, PayloadError, VerificationError
from services.tlog.events import parse_event
from services.tlog.note import MAX_NOTE_SIZE, Verifier
from services.tlog.proof import parse_consistency_proof
from services.tlog.verify import verify_checkpoint, verify_checkpoint_consistency, verify_entry_proof

__all__ = ["main"]

_PROG = "lz-verify"
_MAX_KEY_FILE = 64 * 1024
_MAX_PROOF_FILE = 2 * MAX_NOTE_SIZE
_MAX_ENTRY_FILE = 16 << 20
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class _UsageError(Exception):
    """Bad command line; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _read(path: str, limit: int, what: str) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise MalformedError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise MalformedError(f"{what} {path!r} is larger than {limit} bytes")
    return data


def _load_keys(specs: Sequence[str]) -> list[Verifier]:
    """Each ``--key`` is a verifier key string or a file holding one key per line."""
    keys: list[Verifier] = []
    for spec in specs:
        try:
            keys.append(Verifier(spec))
            continue
        except NoteError:
            if not Path(spec).exists():
                raise NoteError(f"--key {spec[:60]!r} is not a verifier key or a key file") from None
        raw = _read(spec, _MAX_KEY_FILE, "key file")
        try:
            lines = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise NoteError(f"key file {spec!r} is not UTF-8") from exc
        if not lines:
            raise NoteError(f"key file {spec!r} is empty")
        for line in lines:
            keys.append(Verifier(line))
    return keys


def _cmd_checkpoint(args: argparse.Namespace, keys: list[Verifier]) -> dict[str, Any]:
    cp = verify_checkpoint(_read(args.file, MAX_NOTE_SIZE, "checkpoint"), keys)
    return {
        "message": f"checkpoint origin={cp.origin} size={cp.size} root={b64encode(cp.root_hash)}",
        "origin": cp.origin,
        "size": cp.size,
        "root": b64encode(cp.root_hash),
    }


def _pins(args: argparse.Namespace, keys: list[Verifier]) -> list[bytes]:
    """The checkpoints the auditor saw before (``--checkpoint``), each verified with the trusted keys."""
    notes = [_read(path, MAX_NOTE_SIZE, "pinned checkpoint") for path in args.checkpoint or []]
    for path, note in zip(args.checkpoint or [], notes, strict=True):
        try:
            verify_checkpoint(note, keys)
        except VerificationError as exc:
            raise VerificationError(f"pinned checkpoint {path}: {exc}") from exc
    return notes


def _check_pins(
    cp: Checkpoint, args: argparse.Namespace, keys: list[Verifier], extra: Sequence[Checkpoint] = ()
) -> None:
    """Every pinned checkpoint must be ``cp`` or provably on the same log as it.

    Same size: the same root. Another size: one of ``--consistency-proof`` (or the command's own
    proof, given as ``extra`` checkpoints it already links to ``cp``) must prove the smaller one is a
    prefix of the larger one. Otherwise the artefact may come from a rolled-back or forked log.
    """
    proofs = [parse_consistency_proof(_read(p, _MAX_PROOF_FILE, "consistency proof"))
              for p in args.consistency_proof or []]
    for note in _pins(args, keys):
        pin = verify_checkpoint(note, keys)
        if pin.origin != cp.origin:
            raise VerificationError(f"pinned checkpoint {pin.size} is for log {pin.origin!r}, not {cp.origin!r}")
        if any(pin.size == other.size and pin.root_hash == other.root_hash for other in (cp, *extra)):
            continue
        if pin.size == cp.size:
            raise VerificationError(f"pinned checkpoint {pin.size} has another root than the checkpoint given (a fork)")
        small, large = (pin, cp) if pin.size < cp.size else (cp, pin)
        if not any(_consistent(small, large, proof) for proof in proofs):
            raise VerificationError(
                f"pinned checkpoint {pin.size}: no consistency proof links it to the checkpoint of size {cp.size} "
                "(pass --consistency-proof FILE; without one this may be a rolled-back or forked log)"
            )


def _consistent(small: Checkpoint, large: Checkpoint, proof: Sequence[bytes]) -> bool:
    try:
        verify_checkpoint_consistency(small, large, proof)
    except VerificationError:
        return False
    return True


def _cmd_proof(args: argparse.Namespace, keys: list[Verifier]) -> dict[str, Any]:
    entry = _read(args.entry, _MAX_ENTRY_FILE, "entry")
    proof = _read(args.proof_file, _MAX_PROOF_FILE, "proof")
    cp, index = verify_entry_proof(entry, proof, keys)
    _check_pins(cp, args, keys)
    try:
        seq: int | None = parse_event(entry).seq
    except PayloadError:
        seq = None  # not a custody event: plain leaf data, nothing more to cross-check
    if seq is not None and seq - 1 != index:
        raise VerificationError(f"entry is event seq {seq} but the proof is for leaf index {index}")
    where = f" (seq {seq})" if seq is not None else ""
    return {
        "message": f"entry at index {index}{where} is in {cp.origin} at size {cp.size}",
        "origin": cp.origin,
        "index": index,
        "size": cp.size,
        "root": b64encode(cp.root_hash),
    }


def _cmd_consistency(args: argparse.Namespace, keys: list[Verifier]) -> dict[str, Any]:
    old = verify_checkpoint(_read(args.old, MAX_NOTE_SIZE, "old checkpoint"), keys)
    new = verify_checkpoint(_read(args.new, MAX_NOTE_SIZE, "new checkpoint"), keys)
    proof = parse_consistency_proof(_read(args.proof_file, _MAX_PROOF_FILE, "consistency proof"))
    verify_checkpoint_consistency(old, new, proof)
    _check_pins(new, args, keys, extra=[old])
    return {
        "message": f"{new.origin} size {new.size} is consistent with size {old.size}",
        "origin": new.origin,
        "old_size": old.size,
        "new_size": new.size,
    }


class _TerminalProgress:
    """How far a bundle walk has come, on a terminal: one line on stderr, rewritten, erased at the end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {(total - done) / rate:.0f} s" if rate and total >= done else ""
        self._stream.write(f"\r{_PROG}: {done:,} of {total:,} events, {rate:,.0f} events/s{eta}\x1b[K")
        self._stream.flush()
        self._shown = True

    def erase(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _peak_rss_mib() -> float | None:
    """This program's peak resident memory, where the platform reports it.

    Linux's VmHWM first: it starts again at exec, whereas ru_maxrss keeps the high-water mark of the
    process that forked us (a parent holding a gigabyte would be reported as our peak).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # Unix only; the verifier also runs where it is missing
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def _cmd_bundle(args: argparse.Namespace, keys: list[Verifier]) -> dict[str, Any]:
    pins = _pins(args, keys)
    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    started = time.perf_counter()
    try:
        report = verify_bundle(args.dir, keys, pins, progress=progress)
    finally:
        if progress is not None:
            progress.erase()
    seconds = time.perf_counter() - started
    rate = round(report.events / seconds) if seconds > 0 else 0
    result: dict[str, Any] = {
        "events": report.events,
        "checkpoints_verified": report.checkpoints_verified,
        "unsealed_tail": report.unsealed_tail,
        "first_bad_seq": report.first_bad_seq,
        "bad_checkpoint": report.bad_checkpoint,
        "seconds": round(seconds, 3),
        "events_per_second": rate,
        "peak_rss_mib": _peak_rss_mib(),
    }
    if not report.ok:
        where = f"seq {report.first_bad_seq}: " if report.first_bad_seq is not None else ""
        raise _BundleFailedError(f"bundle {args.dir}: {where}{report.reason}", result)
    tail = f", {report.unsealed_tail} unsealed after the last checkpoint" if report.unsealed_tail else ""
    result["message"] = (f"bundle {args.dir}: {report.events} events, {report.checkpoints_verified} checkpoints{tail}"
                         f" in {seconds:.1f} s ({rate:,} events/s)")
    return result


class _BundleFailedError(VerificationError):
    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def _parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="VKEY",
        help="trusted verifier key string or a file containing keys; repeat for rotated keys",
    )
    common.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    parser = _Parser(prog=_PROG, description="Verify LifecycleZero transparency-log artefacts offline.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("checkpoint", parents=[common], help="verify a signed checkpoint")
    p.add_argument("file")
    p.set_defaults(run=_cmd_checkpoint)
    pinning = _Parser(add_help=False)
    pinning.add_argument(
        "--checkpoint", action="append", metavar="FILE",
        help="a checkpoint you verified before (pinned); repeat. The artefact must agree with it, or fail",
    )
    linking = _Parser(add_help=False)
    linking.add_argument(
        "--consistency-proof", action="append", metavar="FILE",
        help="a consistency proof linking a pinned checkpoint of another size to the one given; repeat",
    )
    p = sub.add_parser("proof", parents=[common, pinning, linking], help="verify a c2sp.org/tlog-proof for one entry")
    p.add_argument("--entry", required=True, help="file with the exact leaf data (canonical event bytes)")
    p.add_argument("proof_file")
    p.set_defaults(run=_cmd_proof)
    p = sub.add_parser("consistency", parents=[common, pinning, linking], help="verify that NEW extends OLD")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("proof_file")
    p.set_defaults(run=_cmd_consistency)
    p = sub.add_parser("bundle", parents=[common, pinning], help="verify an export bundle directory")
    p.add_argument("dir")
    p.set_defaults(run=_cmd_bundle)
    return parser


def _emit(as_json: bool, status: str, message: str, details: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"status": status, "message": message, **details}, sort_keys=True))
    elif status == "verified":
        print(f"verified: {message}")
    elif status == "failed":
        print(f"{_PROG}: verification failed: {message}")
    else:
        print(f"{_PROG}: error: {message}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lz-verify``; returns the exit status (0 verified, 1 failed, 2 error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    try:
        args = _parser().parse_args(args_list)
        keys = _load_keys(args.key)
        details = args.run(args, keys)
    except _UsageError as exc:
        _emit(as_json, "error", _one_line(str(exc)), {})
        return EXIT_ERROR
    except _BundleFailedError as exc:
        _emit(as_json, "failed", _one_line(str(exc)), exc.details)
        return EXIT_FAILED
    except VerificationError as exc:
        _emit(as_json, "failed", _one_line(str(exc)), {})
        return EXIT_FAILED
    except MalformedError as exc:
        _emit(as_json, "error", _one_line(str(exc)), {})
        return EXIT_ERROR
    except KeyboardInterrupt:
        _emit(as_json, "error", "interrupted", {})
        return EXIT_ERROR
    except Exception as exc:  # last line of defence: one line, never a traceback
        _emit(as_json, "error", f"internal error ({type(exc).__name__}): {_one_line(str(exc))}", {})
        return EXIT_ERROR
    message = details.pop("message")
    _emit(as_json, "verified", message, details)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
