"""`lz isolate` and `lz release`: one asset, several, or (isolate) every asset a filter selects.

Several orders run concurrently (the assets service commits each with its custody record and no
order waits for another's ledger append), each with its own request id; progress goes to stderr and a
summary names every failure. A single asset keeps the one-line answer (and its `--json` shape).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from lifecyclezero.v1 import assets_pb2, common_pb2
from rich.markup import escape

from lz.commands import Context, positive_int, request_id
from lz.connection import paged
from lz.errors import EXIT_NEGATIVE, EXIT_OK, CliError, UsageError
from lz.output import styled_status, to_dict

EXPOSED_RULE = "exposed-listener"
# An order is one short transaction; more in flight only queue on the server.
DEFAULT_PARALLEL = 16
# Isolation is allowed from these states; a filter skips assets already contained or being contained.
_ISOLATABLE = frozenset({common_pb2.ASSET_STATUS_ACTIVE, common_pb2.ASSET_STATUS_ISOLATION_FAILED})
_RISK = {"warning": common_pb2.SEVERITY_WARNING, "critical": common_pb2.SEVERITY_CRITICAL}


@dataclass(frozen=True)
class Selector:
    """Which assets a filter picks: risk at least `min_risk`, running engine `engine`, exposed."""

    min_risk: int = 0
    engine: str = ""
    exposed: bool = False

    @property
    def active(self) -> bool:
        return bool(self.min_risk or self.engine or self.exposed)

    def picks(self, asset: common_pb2.Asset) -> bool:
        if asset.status not in _ISOLATABLE or asset.risk.max_severity < self.min_risk:
            return False
        findings = [f for f in asset.risk.findings if not self.exposed or f.rule_id == EXPOSED_RULE]
        if self.exposed and not findings:
            return False
        return not self.engine or any(self.engine in _engine_kinds(f) for f in findings)


def _engine_kinds(finding: common_pb2.Finding) -> set[str]:
    engines = finding.evidence.fields.get("engines")
    if engines is None:
        return set()
    kinds = set()
    for value in engines.list_value.values:
        kind = value.struct_value.fields.get("kind")
        if kind is not None:
            kinds.add(kind.string_value.lower())
    return kinds


@dataclass(frozen=True)
class Outcome:
    asset_id: str
    response: Any = None
    error: str = ""


def add_arguments(cmd: argparse.ArgumentParser, verb: str) -> None:
    cmd.add_argument("asset_ids", nargs="*", metavar="ASSET", help=f"the assets to {verb}")
    cmd.add_argument("--reason", required=True, metavar="TEXT",
                     help="the justification, recorded in the custody ledger for every asset")
    cmd.add_argument("--parallel", type=positive_int, default=DEFAULT_PARALLEL, metavar="N",
                     help=f"orders in flight at once (default {DEFAULT_PARALLEL})")
    if verb == "isolate":
        chosen = cmd.add_argument_group("filter (instead of ASSET ids; only ACTIVE or ISOLATION_FAILED assets)")
        chosen.add_argument("--risk", choices=sorted(_RISK), help="risk at least this severity")
        chosen.add_argument("--engine", default="", metavar="KIND", help="a finding names this engine (e.g. ollama)")
        chosen.add_argument("--exposed", action="store_true", help="an engine listens beyond loopback")


def isolate(ctx: Context, args: argparse.Namespace) -> int:
    selector = Selector(_RISK.get(args.risk or "", 0), args.engine.strip().lower(), bool(args.exposed))
    return _run(ctx, args, "isolate", selector)


def release(ctx: Context, args: argparse.Namespace) -> int:
    return _run(ctx, args, "release", Selector())


def _run(ctx: Context, args: argparse.Namespace, verb: str, selector: Selector) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    if selector.active and args.asset_ids:
        raise UsageError("name assets or give a filter, not both")
    if not selector.active and not args.asset_ids:
        raise UsageError(f"name at least one asset to {verb}, or a filter (--risk, --engine, --exposed)")
    if len(args.asset_ids) == 1:
        return _single(ctx, verb, args.asset_ids[0], args.reason)
    targets = _selected(ctx, selector) if selector.active else list(dict.fromkeys(args.asset_ids))
    if not targets:
        ctx.out.note("[dim]no asset matches the filter[/]")
        if ctx.out.json_mode:
            ctx.out.emit_json({"requested": [], "failed": []})
        return EXIT_OK
    outcomes = _order_all(ctx, verb, targets, args.reason, args.parallel)
    return _summary(ctx, verb, outcomes)


def _order(ctx: Context, verb: str, asset_id: str, reason: str) -> Any:
    if verb == "isolate":
        return ctx.client.call("assets", "IsolateAsset", assets_pb2.IsolateAssetRequest(
            asset_id=asset_id, justification=reason, request_id=request_id()))
    return ctx.client.call("assets", "ReleaseAsset", assets_pb2.ReleaseAssetRequest(
        asset_id=asset_id, justification=reason, request_id=request_id()))


def _single(ctx: Context, verb: str, asset_id: str, reason: str) -> int:
    response = _order(ctx, verb, asset_id, reason)
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    asset = response.asset
    noun = "isolation" if verb == "isolate" else "release"
    ctx.out.line(f"{noun} of [bold]{escape(asset.asset_id or asset_id)}[/] requested: "
                 f"status {styled_status(asset.status)}, custody event recorded (`lz custody` shows its seq)")
    if response.command.command_id:
        ctx.out.note(f"[dim]command {escape(response.command.command_id)} waits for the agent[/]")
    return EXIT_OK


def _selected(ctx: Context, selector: Selector) -> list[str]:
    def fetch(page_token: str) -> Any:
        return ctx.client.call("assets", "ListAssets", assets_pb2.ListAssetsRequest(page_size=500,
                                                                                    page_token=page_token))

    assets, _ = paged(fetch, "assets", all_pages=True)
    return [a.asset_id for a in assets if selector.picks(a)]


def _order_all(ctx: Context, verb: str, targets: Sequence[str], reason: str, parallel: int) -> list[Outcome]:
    ctx.client.channel("assets")  # opened once, before the threads share it

    def one(asset_id: str) -> Outcome:
        try:
            return Outcome(asset_id, response=_order(ctx, verb, asset_id, reason))
        except CliError as error:
            return Outcome(asset_id, error=error.message)

    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(min(parallel, len(targets))) as pool:
        for done in as_completed([pool.submit(one, a) for a in targets]):
            outcomes.append(done.result())
            _progress(ctx, verb, outcomes, len(targets))
    order = {a: i for i, a in enumerate(targets)}
    return sorted(outcomes, key=lambda o: order[o.asset_id])


def _progress(ctx: Context, verb: str, outcomes: Sequence[Outcome], total: int) -> None:
    failed = sum(1 for o in outcomes if o.error)
    ctx.out.note(f"[dim]{verb} {len(outcomes)}/{total}" + (f", {failed} failed" if failed else "") + "[/]")


def _summary(ctx: Context, verb: str, outcomes: Iterable[Outcome]) -> int:
    done = [o for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error]
    if ctx.out.json_mode:
        ctx.out.emit_json({"requested": [to_dict(o.response) for o in done],
                           "failed": [{"asset_id": o.asset_id, "error": o.error} for o in failed]})
    else:
        ctx.out.table(["ASSET", "STATUS", "COMMAND"],
                      [[escape(o.asset_id), styled_status(o.response.asset.status),
                        escape(o.response.command.command_id)] for o in done],
                      empty=f"no {verb} was requested")
        for outcome in failed:
            ctx.out.line(f"[red]failed[/] {escape(outcome.asset_id)}: {escape(outcome.error)}")
        ctx.out.line(f"{verb}: {len(done)} requested, {len(failed)} failed")
    return EXIT_NEGATIVE if failed else EXIT_OK
