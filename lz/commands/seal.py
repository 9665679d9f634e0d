"""Sealing: how far the ledger is sealed into signed checkpoints, and sealing on demand."""

from __future__ import annotations

import argparse

from lifecyclezero.v1 import sealer_pb2
from rich.markup import escape

from lz.commands import Context, Subparsers, request_id
from lz.connection import LONG_TIMEOUT
from lz.errors import EXIT_OK
from lz.output import b64, to_dict, when


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    seal = sub.add_parser("seal", help="signed checkpoints of the ledger", parents=parents)
    seal_sub = seal.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = seal_sub.add_parser("status", parents=parents, help="sealed through #N, M pending")
    status.set_defaults(func=seal_status)
    now = seal_sub.add_parser("now", parents=parents, help="seal the pending events now")
    now.set_defaults(func=seal_now)


def seal_status(ctx: Context, args: argparse.Namespace) -> int:
    response: sealer_pb2.GetSealStatusResponse = ctx.client.call(
        "sealer", "GetSealStatus", sealer_pb2.GetSealStatusRequest())
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    style = "green" if response.pending == 0 else "yellow"
    ctx.out.line(f"sealed through [bold]#{response.sealed_through}[/], "
                 f"[{style}]{response.pending} pending[/] (ledger size {response.ledger_size}, "
                 f"lag {response.lag_seconds:.1f}s)")
    return EXIT_OK


def seal_now(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.out.spinner("sealing"):
        response: sealer_pb2.SealNowResponse = ctx.client.call(
            "sealer", "SealNow", sealer_pb2.SealNowRequest(request_id=request_id()), timeout=LONG_TIMEOUT)
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    cp = response.checkpoint
    ctx.out.line(f"sealed through [bold]#{cp.tree_size}[/]")
    ctx.out.fields([
        ("origin", escape(cp.origin or "-")),
        ("root hash", b64(cp.root_hash)),
        ("key", escape(cp.key_name or "-")),
        ("created", when(cp.create_time)),
        ("object", escape(f"{cp.object_key} (version {cp.object_version_id})" if cp.object_key else "-")),
    ])
    return EXIT_OK
