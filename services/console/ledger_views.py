"""The Ledger page: seal status, the verifier key, "verify now", the export bundle and the auditor's commands."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import IO, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.console.sessions import Session
from services.console.views import Console, checked_form, signed_in
from services.console.walks import Walk
from services.kit.errors import InvalidArgument

# A bundle is spooled in memory up to this size, then on disk, before it is sent.
BUNDLE_SPOOL_BYTES = 16 * 1024 * 1024
BUNDLE_READ_BYTES = 256 * 1024


@signed_in
async def ledger_page(request: Request, console: Console, session: Session) -> Response:
    return await _render(console, request, session, verification=None)


@signed_in
async def verify(request: Request, console: Console, session: Session) -> Response:
    """Run the since-checkpoint check and show its answer, or start the full walk in the background and show
    it as it began (the chain's length; the page then polls its progress)."""
    form = await checked_form(request, session)
    if str(form.get("mode", "")) == "full":
        walk = await console.walks.start(session.tenant, session.token)
        return await _render(console, request, session, verification=None, walk=walk)
    verification = await console.client.verify_since_checkpoint(session.token)
    return await _render(console, request, session, verification=verification)


@signed_in
async def walk_fragment(request: Request, console: Console, session: Session) -> Response:
    """The tenant's full walk alone: what the Ledger page polls while it runs."""
    return console.render(request, "_walk.html", **_walk(console, session))


def _walk(console: Console, session: Session, walk: Walk | None = None) -> dict[str, Any]:
    walk = walk or console.walks.of(session.tenant)
    return {"walk": walk, "walk_seconds": console.walks.seconds(walk) if walk is not None else 0}


async def _render(console: Console, request: Request, session: Session, verification: object,
                  walk: Walk | None = None) -> Response:
    seal = await console.client.seal_status(session.token)
    return console.render(request, "ledger.html", seal=seal, verification=verification,
                          **_walk(console, session, walk))


@signed_in
async def bundle_download(request: Request, console: Console, session: Session) -> Response:
    """The whole ledger's verification bundle as one zip (`lz-verify bundle` checks the unpacked folder)."""
    spool = tempfile.SpooledTemporaryFile(max_size=BUNDLE_SPOOL_BYTES)  # noqa: SIM115 - closed by the stream
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        writer: IO[bytes] | None = None
        async for chunk in console.client.export_bundle(session.token):
            if writer is None:
                writer = archive.open(f"bundle/{_relative(chunk.path)}", "w")
            writer.write(chunk.chunk)
            if chunk.last_chunk:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()
    spool.seek(0)
    return StreamingResponse(_read(spool), media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="{session.tenant}-bundle.zip"', "cache-control": "no-store"})


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(part in ("..", ".") for part in parts):
        raise InvalidArgument.field("path", f"the ledger sent a bundle path outside the bundle: {path!r}")
    return str(PurePosixPath(*parts))


async def _read(spool: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while block := spool.read(BUNDLE_READ_BYTES):
            yield block
    finally:
        spool.close()
