"""Export bundles: a directory an auditor can verify offline with ``lz-verify bundle``.

Layout (format ``lifecyclezero.tlog-bundle/v1``, described in README.md)::

    manifest.json                      what is in the bundle (not trusted)
    events.jsonl                       canonical event bytes, one per line, seq 1..N
    checkpoints/<size>.checkpoint      signed checkpoint notes
    checkpoints/<size>.<k>.checkpoint  further notes of the same size (e.g. cosigned copies)
    consistency/<a>-<b>.proof          consistency proof between consecutive checkpoint sizes
    keys/<name>-<keyid>.vkey           verifier keys, informational only

Nothing in the bundle is trusted on its own: the verifier supplies the keys,
rebuilds the tree from the events and demands that every signed checkpoint
matches it.  The manifest only says what to expect, so deleting a file is
noticed rather than silently narrowing what gets checked.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.tlog.checkpoint import Checkpoint
from services.tlog.compact import CompactRange
from services.tlog.errors import ChainError, MalformedError, NoteError, TlogError, VerificationError
from services.tlog.events import ChainVerifier, Event, parse_event
from services.tlog.jcs import canonicalize
from services.tlog.merkle import EMPTY_ROOT, leaf_hash, verify_consistency
from services.tlog.note import MAX_NOTE_SIZE, Verifier
from services.tlog.proof import format_consistency_proof, parse_consistency_proof
from services.tlog.verify import verify_checkpoint

__all__ = ["BUNDLE_FORMAT", "BundleError", "BundleReport", "verify_bundle", "write_bundle"]

BUNDLE_FORMAT = "lifecyclezero.tlog-bundle/v1"
_MAX_LINE = 1 << 20
_MAX_MANIFEST = 16 << 20
_CHECKPOINT_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.([1-9][0-9]*))?\.checkpoint")
_PROOF_RE = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)\.proof")
_KEY_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]")


class BundleError(MalformedError):
    """The bundle directory or its manifest cannot be read at all."""


@dataclass(frozen=True)
class BundleReport:
    """Outcome of :func:`verify_bundle`.

    ``first_bad_seq`` names the first event position that fails; when the
    failure is a checkpoint (bad signature, fork, root mismatch),
    ``bad_checkpoint`` names its size instead.  ``unsealed_tail`` counts the
    events after the last checkpoint, which no signature covers yet.
    """

    ok: bool
    first_bad_seq: int | None
    reason: str
    events: int
    checkpoints_verified: int
    unsealed_tail: int
    bad_checkpoint: int | None = None
    tree_size: int = 0
    root: bytes = EMPTY_ROOT


def _checkpoint_size(note: bytes) -> int:
    """Size named by an (unverified) checkpoint note, for naming its file."""
    text = note.decode("utf-8", "strict")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("checkpoint note has no signature block")
    return Checkpoint.parse(text[: split + 1]).size


def _key_filename(key: str) -> str:
    verifier = Verifier(key)
    return f"{_KEY_SAFE_RE.sub('_', verifier.name)}-{verifier.key_id:08x}.vkey"


def write_bundle(
    path: str | Path,
    *,
    tenant: str,
    origin: str,
    events: Iterable[bytes | Event],
    checkpoints: Iterable[bytes | tuple[int, bytes]],
    consistency_proofs: Mapping[tuple[int, int], Sequence[bytes]],
    verifier_keys: Iterable[str],
    findings: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Write a bundle directory (which must not exist yet); returns the manifest.

    ``events`` are streamed to disk one at a time, as given: canonical event
    bytes (or :class:`Event`) in seq order starting at 1.  Nothing is parsed
    or re-encoded on the way, so a damaged ledger (unparsable, non-canonical
    or empty bytes) is exported as the evidence it is; the verifier names the
    seq.  ``findings`` are problems the exporter saw in storage that the
    bundle cannot show by itself (``{"checkpoint": size, "reason": ...}`` or
    ``{"seq": n, "reason": ...}``); they are read after the events, so the
    event iterator may still add to them, and they can only make
    verification fail.
    ``consistency_proofs`` maps ``(size1, size2)`` to proof hashes.
    A checkpoint may come as ``(size, note)``: the size it is stored under, which
    names the file when the note itself is too damaged to name one, so tampered
    storage can still be exported and the verifier says which checkpoint is bad.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=False)
    for sub in ("checkpoints", "consistency", "keys"):
        (root / sub).mkdir()
    count = 0
    last_seq = 0
    with (root / "events.jsonl").open("wb") as out:
        for item in events:
            raw = item.canonical_bytes if isinstance(item, Event) else bytes(item)
            out.write(raw + b"\n")
            count += 1
            last_seq = _seq_of(item, count)
    cp_files: list[str] = []
    seen: dict[int, list[bytes]] = {}
    for given in checkpoints:
        stored_size: int | None = None
        if isinstance(given, tuple):
            stored_size, note = given
        else:
            note = given
        try:
            size = _checkpoint_size(note)
        except (TlogError, UnicodeDecodeError):
            if stored_size is None:
                raise
            size = stored_size
        copies = seen.setdefault(size, [])
        if note in copies:
            continue
        name = f"{size}.checkpoint" if not copies else f"{size}.{len(copies)}.checkpoint"
        copies.append(note)
        (root / "checkpoints" / name).write_bytes(note)
        cp_files.append(name)
    proof_files: list[str] = []
    for (size1, size2), hashes in sorted(consistency_proofs.items()):
        name = f"{size1}-{size2}.proof"
        (root / "consistency" / name).write_bytes(format_consistency_proof(tuple(hashes)))
        proof_files.append(name)
    key_files: list[str] = []
    for key in verifier_keys:
        name = _key_filename(key)
        (root / "keys" / name).write_text(key + "\n", encoding="utf-8")
        key_files.append(name)
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "tenant": tenant,
        "origin": origin,
        "first_seq": 1 if count else 0,
        "last_seq": last_seq,
        "event_count": count,
        "checkpoint_sizes": sorted(seen),
        "checkpoints": sorted(cp_files, key=_checkpoint_sort_key),
        "consistency": proof_files,
        "keys": sorted(key_files),
    }
    if findings:
        manifest["findings"] = [dict(f) for f in findings]
    (root / "manifest.json").write_bytes(canonicalize(manifest) + b"\n")
    return manifest


def _seq_of(item: bytes | Event, position: int) -> int:
    """The seq an exported event states, or its position when its bytes are too damaged to say."""
    if isinstance(item, Event):
        return item.seq
    try:
        return parse_event(item).seq
    except TlogError:
        return position


def _checkpoint_sort_key(name: str) -> tuple[int, int]:
    m = _CHECKPOINT_RE.fullmatch(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (-1, 0)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    try:
        if not root.is_dir():
            raise BundleError(f"{root} is not a directory")
        if path.stat().st_size > _MAX_MANIFEST:
            raise BundleError("manifest.json is too large")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"manifest.json is not a {BUNDLE_FORMAT} manifest")
    ints = ("first_seq", "last_seq", "event_count")
    if not all(isinstance(data.get(k), str) and data[k] for k in ("tenant", "origin")) or not all(
        type(data.get(k)) is int and data[k] >= 0 for k in ints
    ):
        raise BundleError("manifest.json has missing or mistyped tenant/origin/seq fields")
    if not all(_is_str_list(data.get(k)) for k in ("checkpoints", "consistency", "keys")):
        raise BundleError("manifest.json checkpoints/consistency/keys must be lists of file names")
    return data


class _FailureError(Exception):
    """Internal early exit carrying the report fields of a failed verification."""

    def __init__(self, reason: str, *, seq: int | None = None, checkpoint: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq
        self.checkpoint = checkpoint


def _listed_files(root: Path, sub: str, listed: list[str]) -> None:
    directory = root / sub
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing:
        raise _FailureError(f"{sub}/{missing[0]} is listed in the manifest but missing")
    if extra:
        raise _FailureError(f"{sub}/{extra[0]} is not listed in the manifest")


def _read_limited(path: Path, limit: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _FailureError(f"{path.parent.name}/{path.name} is larger than {limit} bytes")
    return data


def _load_checkpoints(
    root: Path, names: list[str], origin: str, verifiers: list[Verifier], known: Iterable[bytes]
) -> tuple[dict[int, Checkpoint], set[int]]:
    """Every checkpoint by size (the bundle's and the pinned ones), and the sizes the caller pinned."""
    by_size: dict[int, Checkpoint] = {}
    pinned: set[int] = set()
    notes: list[tuple[str, int | None, bytes]] = []
    for name in names:
        m = _CHECKPOINT_RE.fullmatch(name)
        if m is None:
            raise _FailureError(f"checkpoints/{name} is not named <size>.checkpoint")
        note = _read_limited(root / "checkpoints" / name, MAX_NOTE_SIZE)
        notes.append((f"checkpoints/{name}", int(m.group(1)), note))
    notes.extend(("pinned checkpoint", None, note) for note in known)
    for label, size, note in notes:
        try:
            cp = verify_checkpoint(note, verifiers)
        except (NoteError, VerificationError) as exc:
            raise _FailureError(f"{label}: {exc}", checkpoint=size) from exc
        if size is not None and cp.size != size:
            raise _FailureError(f"{label}: file name disagrees with size {cp.size}", checkpoint=size)
        if cp.origin != origin:
            raise _FailureError(f"{label}: origin {cp.origin!r} is not {origin!r}", checkpoint=cp.size)
        other = by_size.setdefault(cp.size, cp)
        if other.root_hash != cp.root_hash:
            reason = f"fork: two signed checkpoints of size {cp.size} with different roots"
            if size is None:
                reason = f"pinned checkpoint {cp.size}: the bundle's checkpoint {cp.size} has another root (a fork)"
            raise _FailureError(reason, checkpoint=cp.size)
        if size is None:
            pinned.add(cp.size)
    return by_size, pinned


def _event_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while True:
            line = fh.readline(_MAX_LINE + 1)
            if not line:
                return
            if len(line) > _MAX_LINE or not line.endswith(b"\n"):
                yield line  # handed to the chain check, which reports it as bad
                return
            yield line[:-1]


Progress = Callable[[int, int], None]
"""Called with (events checked so far, events the manifest lists) every PROGRESS_EVERY events."""
PROGRESS_EVERY = 1 << 14


def _walk_events(
    root: Path, tenant: str, by_size: dict[int, Checkpoint], progress: Progress | None = None, total: int = 0
) -> tuple[int, CompactRange]:
    chain = ChainVerifier(tenant)
    tree = CompactRange()
    if 0 in by_size and by_size[0].root_hash != EMPTY_ROOT:
        raise _FailureError("checkpoint at size 0 does not have the empty-tree root", checkpoint=0)
    try:
        # `size` is the tree's size after each append, counted here: this loop runs once per event.
        for size, canonical in enumerate(_event_lines(root / "events.jsonl"), 1):
            chain.check(canonical)
            tree.append(leaf_hash(canonical))
            if progress is not None and not size % PROGRESS_EVERY:
                progress(size, total)
            cp = by_size.get(size)
            if cp is not None and cp.root_hash != tree.root():
                raise _FailureError(
                    f"checkpoint at size {size}: root does not match events 1..{size}", checkpoint=size
                )
    except ChainError as exc:
        raise _FailureError(exc.reason, seq=exc.seq) from exc
    except OSError as exc:
        raise _FailureError(f"cannot read events.jsonl: {exc.strerror or exc}") from exc
    return chain.count, tree


def _bundled_sizes(manifest: Mapping[str, Any]) -> set[int]:
    return {size for size, _ in map(_checkpoint_sort_key, manifest["checkpoints"]) if size >= 0}


def _check_findings(manifest: Mapping[str, Any]) -> None:
    """Problems the exporter saw in storage (a lying index, a damaged attribute) fail the bundle.

    The manifest is not trusted to make a bundle pass, but a finding can only make it fail, so
    honouring it is safe; removing it hides nothing the events and checkpoints show by themselves.
    """
    findings = manifest.get("findings", [])
    if not isinstance(findings, list):
        raise _FailureError("manifest.json findings must be a list")
    for finding in findings:
        if not isinstance(finding, dict):
            raise _FailureError("manifest.json findings must be objects")
        checkpoint, seq = finding.get("checkpoint"), finding.get("seq")
        reason = str(finding.get("reason", "no reason given"))
        raise _FailureError(
            f"the exporter found in storage: {reason}",
            checkpoint=checkpoint if type(checkpoint) is int else None,
            seq=seq if type(seq) is int else None,
        )


def _check_consistency(root: Path, names: list[str], by_size: dict[int, Checkpoint]) -> None:
    proofs: dict[tuple[int, int], str] = {}
    for name in names:
        m = _PROOF_RE.fullmatch(name)
        if m is None:
            raise _FailureError(f"consistency/{name} is not named <size1>-<size2>.proof")
        proofs[(int(m.group(1)), int(m.group(2)))] = name
    sizes = sorted(s for s in by_size if s > 0)
    for pair in itertools.pairwise(sizes):
        if pair not in proofs:
            reason = f"no consistency proof between checkpoints {pair[0]} and {pair[1]}"
            raise _FailureError(reason, checkpoint=pair[1])
    for (size1, size2), name in sorted(proofs.items()):
        old, new = by_size.get(size1), by_size.get(size2)
        if old is None or new is None:
            raise _FailureError(f"consistency/{name} refers to a checkpoint that is not in the bundle")
        try:
            hashes = parse_consistency_proof(_read_limited(root / "consistency" / name, 1 << 16))
            verify_consistency(size1, size2, hashes, old.root_hash, new.root_hash)
        except (NoteError, VerificationError) as exc:
            raise _FailureError(f"consistency/{name}: {exc}", checkpoint=size2) from exc


def verify_bundle(
    path: str | Path,
    verifiers: Iterable[Verifier],
    known_checkpoints: Iterable[bytes] = (),
    progress: Progress | None = None,
) -> BundleReport:
    """Verify a bundle against the caller's trusted ``verifiers`` (never the bundle's keys).

    Checks, in order: every checkpoint's signature and origin, no two
    checkpoints of one size with different roots, the event chain
    while rebuilding the tree so each checkpoint's root is compared at its
    size, that no checkpoint is beyond the last event, and the consistency
    proof between each pair of consecutive checkpoints, and the findings the
    exporter recorded.  ``known_checkpoints`` are checkpoints the caller saw
    before (pinned): each must verify, and the bundle's events must reach its
    size and rebuild its root, so a bundle rolled back behind it, or forked
    from it, fails naming it.  The first failure ends verification; there is
    no fallback to an older checkpoint.

    Events are read one line at a time, so memory does not grow with the
    bundle; ``progress`` (if given) hears how far the walk has come.

    Raises :class:`BundleError` only when the manifest itself is unreadable.
    """
    root = Path(path)
    manifest = _load_manifest(root)
    keys = list(verifiers)
    count = 0
    checkpoints: dict[int, Checkpoint] = {}
    tree = CompactRange()
    try:
        for sub in ("checkpoints", "consistency", "keys"):
            _listed_files(root, sub, manifest[sub])
        if manifest["first_seq"] not in (0, 1):
            raise _FailureError(f"bundle starts at seq {manifest['first_seq']}; v1 bundles start at seq 1")
        checkpoints, pinned = _load_checkpoints(
            root, manifest["checkpoints"], manifest["origin"], keys, known_checkpoints
        )
        if not checkpoints:
            raise _FailureError("bundle has no checkpoint, so nothing is sealed")
        count, tree = _walk_events(root, manifest["tenant"], checkpoints, progress, manifest["event_count"])
        beyond = [size for size in pinned if size > count]
        if beyond:
            raise _FailureError(
                f"pinned checkpoint {max(beyond)} covers more than the {count} events in the bundle "
                "(the ledger was rolled back, or the bundle is cut short)",
                seq=count + 1,
                checkpoint=max(beyond),
            )
        last = max(checkpoints)
        if last > count:
            raise _FailureError(
                f"checkpoint at size {last} covers more than the {count} events present (events missing)",
                seq=count + 1,
                checkpoint=last,
            )
        if count != manifest["event_count"] or (count and manifest["last_seq"] != count):
            raise _FailureError(f"manifest lists {manifest['event_count']} events, events.jsonl has {count}")
        _check_findings(manifest)
        _check_consistency(root, manifest["consistency"], {s: cp for s, cp in checkpoints.items() if s not in pinned
                                                           or s in _bundled_sizes(manifest)})
    except OSError as exc:
        raise BundleError(f"cannot read bundle file: {exc.strerror or exc}") from exc
    except _FailureError as failure:
        return BundleReport(
            ok=False,
            first_bad_seq=failure.seq,
            reason=failure.reason,
            events=count,
            checkpoints_verified=len(checkpoints),
            unsealed_tail=0,
            bad_checkpoint=failure.checkpoint,
            tree_size=tree.size,
            root=tree.root(),
        )
    return BundleReport(
        ok=True,
        first_bad_seq=None,
        reason="ok",
        events=count,
        checkpoints_verified=len(checkpoints),
        unsealed_tail=count - max(checkpoints),
        tree_size=tree.size,
        root=tree.root(),
    )
