"""The custody ledger: verification, proof files, export bundles and the verifier keys."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path, PurePosixPath
from typing import IO

from lifecyclezero.v1 import ledger_pb2, sealer_pb2
from rich.markup import escape

from lz.commands import Context, Subparsers, positive_int
from lz.connection import LONG_TIMEOUT
from lz.errors import EXIT_NEGATIVE, EXIT_OK, CliError, UsageError
from lz.output import to_dict

MAX_PINNED_BYTES = 1 << 20


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    ledger = sub.add_parser("ledger", help="the tenant's custody ledger", parents=parents)
    ledger_sub = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = ledger_sub.add_parser(
        "verify", parents=parents, help="verify the ledger (exit 1 when it does not verify)",
        description="By default checks the newest checkpoint's signature and consistency with the one "
        "before, then the events after it; --full walks every event, the whole tree and every checkpoint.",
    )
    verify.add_argument("--full", action="store_true", help="verify from genesis")
    verify.add_argument(
        "--checkpoint", action="append", default=[], metavar="FILE",
        help="a checkpoint you verified before (pinned); repeat. The ledger must still agree with it",
    )
    verify.set_defaults(func=ledger_verify)

    proof = ledger_sub.add_parser(
        "proof", parents=parents, help="export a c2sp.org/tlog-proof@v1 file for one event",
        description="Writes the proof to FILE and the event's canonical bytes to FILE.entry; "
        "`lz-verify` checks them offline.",
    )
    proof.add_argument("seq", type=positive_int, metavar="SEQ")
    proof.add_argument("-o", "--output", required=True, metavar="FILE")
    proof.set_defaults(func=ledger_proof)

    export = ledger_sub.add_parser("export", parents=parents,
                                   help="write a verification bundle into an empty directory")
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--from", dest="start_seq", type=positive_int, default=1, metavar="SEQ")
    export.add_argument("--to", dest="end_seq", type=positive_int, default=0, metavar="SEQ",
                        help="last event (default: the newest)")
    export.set_defaults(func=ledger_export)

    key = ledger_sub.add_parser("key", parents=parents,
                                help="the verifier key(s) that sign the tenant's checkpoints, newest first")
    key.set_defaults(func=ledger_key)


def _pinned(paths: list[str]) -> list[bytes]:
    notes: list[bytes] = []
    for path in paths:
        try:
            with Path(path).open("rb") as fh:
                note = fh.read(MAX_PINNED_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
        if len(note) > MAX_PINNED_BYTES:
            raise UsageError(f"{path} is larger than {MAX_PINNED_BYTES} bytes; it is not a checkpoint")
        notes.append(note)
    return notes


def _scope(response: ledger_pb2.VerifyLedgerResponse) -> str:
    """What the verification covered, in words (the since-checkpoint mode does not re-walk history)."""
    if response.mode == ledger_pb2.VERIFY_MODE_FULL:
        return "full: every event from genesis, every checkpoint"
    if not response.newest_checkpoint:
        return "no checkpoint yet: every event walked from genesis"
    return (f"newest checkpoint {response.newest_checkpoint} verified against the data after it; sealed history "
            "not re-walked — run `--full` for the audit")


def _full_walk(ctx: Context, pinned: list[bytes]) -> ledger_pb2.VerifyLedgerResponse:
    """VerifyLedger FULL's answer through WatchFullVerification, whose progress the spinner shows."""
    request = ledger_pb2.WatchFullVerificationRequest(pinned_checkpoints=pinned)
    with ctx.out.spinner("verifying the ledger from genesis") as status:
        for update in ctx.client.stream("ledger", "WatchFullVerification", request, timeout=LONG_TIMEOUT):
            if update.HasField("result"):
                result: ledger_pb2.VerifyLedgerResponse = update.result
                return result
            if status is not None:
                status.update(f"verifying the ledger from genesis: {update.progress.events_checked} of "
                              f"{update.progress.chain_length} events checked")
    raise CliError("the ledger service ended the full walk without an answer")


def ledger_verify(ctx: Context, args: argparse.Namespace) -> int:
    pinned = _pinned(args.checkpoint)
    if args.full:
        response = _full_walk(ctx, pinned)
    else:
        request = ledger_pb2.VerifyLedgerRequest(mode=ledger_pb2.VERIFY_MODE_SINCE_CHECKPOINT,
                                                 pinned_checkpoints=pinned)
        with ctx.out.spinner("verifying the ledger since the last checkpoint"):
            response = ctx.client.call("ledger", "VerifyLedger", request, timeout=LONG_TIMEOUT)
    if ctx.out.json_mode:
        data = to_dict(response)
        data.update(mode="full" if args.full else "since-checkpoint", scope=_scope(response),
                    checkpoints_checked=response.checkpoints_checked, pinned=len(args.checkpoint))
        ctx.out.emit_json(data)
    elif response.ok:
        ctx.out.line(f"[green]ledger verified[/] ({'full' if args.full else 'since checkpoint'}): "
                     f"{response.events_checked} events, {response.checkpoints_checked} checkpoints, "
                     f"tree size {response.tree_size}")
        ctx.out.line(f"scope: {escape(_scope(response))}")
    else:
        ctx.out.line(f"[bold red]ledger verification FAILED[/] at #{response.first_bad_seq}: "
                     f"{escape(response.reason or 'no reason given')}")
    return EXIT_OK if response.ok else EXIT_NEGATIVE


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def ledger_proof(ctx: Context, args: argparse.Namespace) -> int:
    target = Path(args.output)
    entry_path = Path(f"{args.output}.entry")
    if target.is_dir():
        raise UsageError(f"{target} is a directory; -o names the proof file")
    response: ledger_pb2.ExportProofResponse = ctx.client.call(
        "ledger", "ExportProof", ledger_pb2.ExportProofRequest(seq=args.seq))
    _write(target, response.tlog_proof)
    _write(entry_path, response.entry)
    if ctx.out.json_mode:
        data = to_dict(response)
        data.pop("tlog_proof", None)
        data.pop("entry", None)
        ctx.out.emit_json({"seq": args.seq, "proof_file": str(target), "entry_file": str(entry_path),
                           "tree_size": response.checkpoint.tree_size, **data})
        return EXIT_OK
    ctx.out.line(f"wrote the proof of event #{args.seq} to [bold]{escape(str(target))}[/] and the entry "
                 f"to [bold]{escape(str(entry_path))}[/] (tree size {response.checkpoint.tree_size})")
    ctx.out.note(f"[dim]check offline: lz-verify proof --entry {escape(str(entry_path))} --key KEYFILE "
                 f"{escape(str(target))}  (KEYFILE: lz ledger key > KEYFILE)[/]")
    return EXIT_OK


def _safe_relative(directory: Path, name: str) -> Path:
    """The bundle file's path inside `directory`; a server cannot write outside it."""
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name or "\x00" in name:
        raise CliError(f"the ledger service sent an unsafe bundle path {name!r}; export stopped")
    return directory.joinpath(*rel.parts)


def ledger_export(ctx: Context, args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise UsageError(f"{directory} is not empty; export into a new or empty directory")
    if args.end_seq and args.end_seq < args.start_seq:
        raise UsageError("--to must not be before --from")
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror or exc}") from None
    open_files: dict[str, IO[bytes]] = {}
    files: list[str] = []
    total = 0
    request = ledger_pb2.ExportBundleRequest(start_seq=args.start_seq, end_seq=args.end_seq)
    try:
        with ctx.out.transfer("exporting the ledger") as advance:
            for chunk in ctx.client.stream("ledger", "ExportBundle", request):
                handle = open_files.get(chunk.path)
                if handle is None:
                    if chunk.path in files:
                        raise CliError(f"the ledger service sent {chunk.path!r} twice; export stopped")
                    target = _safe_relative(directory, chunk.path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    handle = target.open("xb")
                    open_files[chunk.path] = handle
                    files.append(chunk.path)
                handle.write(chunk.chunk)
                total += len(chunk.chunk)
                if chunk.last_chunk:
                    handle.close()
                    del open_files[chunk.path]
                advance(len(chunk.chunk), description=f"exporting {chunk.path}")
        if open_files:
            raise CliError(f"the bundle stream ended in the middle of {', '.join(sorted(open_files))}")
    except BaseException as exc:
        for handle in open_files.values():
            handle.close()
        _clear(directory, remove=created)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
        raise
    if ctx.out.json_mode:
        ctx.out.emit_json({"directory": str(directory), "files": files, "bytes": total})
    else:
        ctx.out.line(f"exported {len(files)} files ({total} bytes) into [bold]{escape(str(directory))}[/]")
        ctx.out.note(f"[dim]check offline: lz-verify bundle --key KEYFILE {escape(str(directory))}[/]")
    return EXIT_OK


def _clear(directory: Path, *, remove: bool) -> None:
    """Undo a failed export (the directory was empty or new before), so that it can simply be re-run."""
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def ledger_key(ctx: Context, args: argparse.Namespace) -> int:
    response: sealer_pb2.GetVerifierKeysResponse = ctx.client.call(
        "sealer", "GetVerifierKeys", sealer_pb2.GetVerifierKeysRequest())
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    if not response.verifier_keys:
        raise CliError("the sealer has no verifier key for this tenant yet", EXIT_NEGATIVE)
    for key in response.verifier_keys:
        ctx.out.plain(key)
    if response.origin:
        ctx.out.note(f"[dim]origin {escape(response.origin)}[/]")
    return EXIT_OK

