"""Assets, alerts, containment (isolate, release) and an asset's custody log."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import assets_pb2, common_pb2
from rich.markup import escape

from lz.commands import Context, Subparsers, containment, positive_int, request_id
from lz.connection import paged
from lz.errors import EXIT_OK, UsageError
from lz.output import enum_choices, enum_short, enum_value, styled_severity, styled_status, to_dict, when

_DURATION = re.compile(r"(\d+)([smhdw])")
_DURATIONS = re.compile(r"(?:\d+[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`1h`, `2d12h`, `90s` (that long ago) or an ISO 8601 time (UTC when it names no zone)."""
    now = now or dt.datetime.now(dt.UTC)
    compact = text.strip().lower()
    if _DURATIONS.fullmatch(compact):
        seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
        return now - dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration like 1h, 30m, 2d nor an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _timestamp(moment: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(dt.UTC))
    return ts


def _status(text: str) -> int:
    try:
        return enum_value(common_pb2.AssetStatus, text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r} (choose from {', '.join(enum_choices(common_pb2.AssetStatus))})") from None


def _connection_state(text: str) -> int:
    try:
        return enum_value(common_pb2.ConnectionState, text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r} (choose from {', '.join(enum_choices(common_pb2.ConnectionState))})") from None


def _severity(text: str) -> int:
    try:
        value = enum_value(common_pb2.Severity, text)
    except ValueError:
        value = 0
    if value not in (common_pb2.SEVERITY_WARNING, common_pb2.SEVERITY_CRITICAL):
        raise argparse.ArgumentTypeError(f"severity must be warning or critical, not {text!r}")
    return value


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    assets = sub.add_parser("assets", help="workstations running the agent", parents=parents)
    assets_sub = assets.add_subparsers(dest="action", required=True, metavar="ACTION")
    alist = assets_sub.add_parser("list", parents=parents, help="list assets (one filter at most)")
    only = alist.add_mutually_exclusive_group()
    only.add_argument("--employee", default="", metavar="EMPLOYEE_ID")
    only.add_argument("--status", type=_status, default=0,
                      help=f"one of {', '.join(enum_choices(common_pb2.AssetStatus))}")
    only.add_argument("--action-required", action="store_true", help="only assets that need an operator")
    only.add_argument("--state", type=_connection_state, default=0, metavar="online|offline|missing",
                      help="only assets whose agent is in this connection state")
    alist.add_argument("--outdated", action="store_true",
                       help="only assets whose agent is older than the tenant's minimum version")
    _paging(alist)
    alist.set_defaults(func=assets_list)
    summary = assets_sub.add_parser("summary", parents=parents,
                                    help="the fleet: agents by connection state and by version")
    summary.set_defaults(func=fleet_summary)
    create = assets_sub.add_parser("create", parents=parents,
                                   help="register a host by hand (agents register themselves on enrollment)")
    create.add_argument("asset_id", metavar="ASSET")
    create.add_argument("--hostname", required=True)
    create.add_argument("--employee", default="", metavar="EMPLOYEE_ID")
    create.add_argument("--os", default="")
    create.set_defaults(func=assets_create)
    show = assets_sub.add_parser("show", parents=parents, help="one asset in detail")
    show.add_argument("asset_id", metavar="ASSET")
    show.set_defaults(func=assets_show)
    reenroll = assets_sub.add_parser(
        "re-enroll", parents=parents,
        help="approve that an enrolled or revoked host enrolls again (custody event; prints a one-time code)")
    reenroll.add_argument("asset_id", metavar="ASSET")
    reenroll.add_argument("--reason", required=True, metavar="TEXT", help="why; recorded in the custody ledger")
    reenroll.set_defaults(func=assets_reenroll)

    alerts = sub.add_parser("alerts", help="WARNING and CRITICAL findings", parents=parents)
    alerts_sub = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    llist = alerts_sub.add_parser("list", parents=parents, help="list alerts, newest first")
    llist.add_argument("--severity", type=_severity, default=0, metavar="warning|critical",
                       help="warning lists warning and critical; critical only critical")
    llist.add_argument("--asset", default="", metavar="ASSET")
    llist.add_argument("--since", type=parse_moment, metavar="1h|ISO", help="a duration ago or a time")
    llist.add_argument("--until", type=parse_moment, metavar="1h|ISO", help="a duration ago or a time")
    _paging(llist)
    llist.set_defaults(func=alerts_list)

    for name, verb in (("isolate", "cut hosts off the network (except the control plane)"),
                       ("release", "lift the isolation of hosts")):
        cmd = sub.add_parser(name, parents=parents, help=verb)
        containment.add_arguments(cmd, name)
        cmd.set_defaults(func=containment.isolate if name == "isolate" else containment.release)

    custody = sub.add_parser("custody", parents=parents, help="an asset's custody events, in order")
    custody.add_argument("asset_id", metavar="ASSET")
    custody.set_defaults(func=custody_log)


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", dest="all_pages", help="follow every page")
    parser.add_argument("--page-size", type=positive_int, default=100)
    parser.add_argument("--page-token", default="")


def _more(ctx: Context, next_token: str) -> None:
    if next_token and not ctx.out.json_mode:
        ctx.out.note(f"[dim]more results: --all, or --page-token {escape(next_token)}[/]")


def _asset_row(asset: common_pb2.Asset) -> list[str]:
    risk = enum_short(common_pb2.Severity, asset.risk.max_severity) if asset.risk.max_severity else "-"
    return [escape(asset.asset_id), escape(asset.hostname or "-"), escape(asset.employee_id or "-"),
            styled_status(asset.status), styled_severity(asset.risk.max_severity) if asset.risk.max_severity else risk,
            _agent_state(asset), escape(asset.agent_version or "-") + (" (outdated)" if asset.agent_outdated else ""),
            when(asset.last_seen_time)]


def _agent_state(asset: common_pb2.Asset) -> str:
    if not asset.connection_state:
        return "never"
    state = enum_short(common_pb2.ConnectionState, asset.connection_state)
    return f"{state} ({escape(asset.disconnect_reason)})" if asset.disconnect_reason else state


def assets_list(ctx: Context, args: argparse.Namespace) -> int:
    def fetch(page_token: str) -> Any:
        request = assets_pb2.ListAssetsRequest(page_size=args.page_size, page_token=page_token,
                                               employee_id=args.employee, status=args.status,
                                               action_required=args.action_required,
                                               connection_state=args.state, outdated=args.outdated)
        return ctx.client.call("assets", "ListAssets", request)

    assets, next_token = paged(fetch, "assets", all_pages=args.all_pages, page_token=args.page_token)
    if ctx.out.json_mode:
        ctx.out.emit_json({"assets": [to_dict(a) for a in assets], "next_page_token": next_token})
        return EXIT_OK
    ctx.out.table(["ASSET", "HOSTNAME", "EMPLOYEE", "STATUS", "RISK", "AGENT", "VERSION", "LAST SEEN"],
                  [_asset_row(a) for a in assets], empty="no assets", no_wrap=["ASSET", "STATUS"])
    _more(ctx, next_token)
    return EXIT_OK


def fleet_summary(ctx: Context, args: argparse.Namespace) -> int:
    response: assets_pb2.GetFleetSummaryResponse = ctx.client.call(
        "assets", "GetFleetSummary", assets_pb2.GetFleetSummaryRequest())
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    ctx.out.fields([("online", str(response.online)), ("offline", str(response.offline)),
                    ("missing", str(response.missing)), ("never connected", str(response.never_connected)),
                    ("outdated", str(response.outdated))])
    ctx.out.line()
    ctx.out.table(["VERSION", "AGENTS", "OUTDATED"],
                  [[escape(v.agent_version or "-"), str(v.count), "yes" if v.outdated else "-"]
                   for v in response.versions], empty="no agents", title="versions")
    return EXIT_OK


def assets_create(ctx: Context, args: argparse.Namespace) -> int:
    asset = common_pb2.Asset(asset_id=args.asset_id, hostname=args.hostname, employee_id=args.employee, os=args.os)
    response: assets_pb2.CreateAssetResponse = ctx.client.call(
        "assets", "CreateAsset", assets_pb2.CreateAssetRequest(asset=asset, request_id=request_id()))
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response.asset))
    else:
        ctx.out.line(f"registered asset [bold]{escape(response.asset.asset_id or args.asset_id)}[/]: "
                     f"status {styled_status(response.asset.status)}")
    return EXIT_OK


def assets_show(ctx: Context, args: argparse.Namespace) -> int:
    response: assets_pb2.GetAssetResponse = ctx.client.call(
        "assets", "GetAsset", assets_pb2.GetAssetRequest(asset_id=args.asset_id))
    asset = response.asset
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(asset))
        return EXIT_OK
    ctx.out.fields([
        ("asset", escape(asset.asset_id)),
        ("hostname", escape(asset.hostname or "-")),
        ("employee", escape(asset.employee_id or "-")),
        ("os", escape(asset.os or "-")),
        ("agent", escape(asset.agent_version or "-")),
        ("status", styled_status(asset.status)),
        ("reason", escape(asset.status_reason or "-")),
        ("risk", styled_severity(asset.risk.max_severity) if asset.risk.max_severity else "-"),
        ("agent state", _agent_state(asset)),
        ("platform", escape(asset.agent_platform or "-")),
        ("last seen", when(asset.last_seen_time)),
        ("created", when(asset.create_time)),
        ("updated", when(asset.update_time)),
        ("custody", f"#{asset.last_custody_seq}" if asset.last_custody_seq else "-"),
    ])
    if asset.risk.findings:
        ctx.out.line()
        ctx.out.table(["SEVERITY", "RULE", "SUMMARY"],
                      [[styled_severity(f.severity), escape(f.rule_id), escape(f.summary)]
                       for f in asset.risk.findings], title="findings")
    _show_engines(ctx, asset.engine_inventory)
    _show_agents(ctx, asset.agent_inventory)
    return EXIT_OK


def _show_engines(ctx: Context, inventory: common_pb2.EngineInventory) -> None:
    """The asset's AI engines and model files, with what the agent could not read or left out."""
    if inventory.engines:
        ctx.out.line()
        ctx.out.table(["ENGINE", "VERSION", "USER", "LISTEN", "AUTH", "INSTALLED MODELS", "PROBE ERRORS"], [
            [escape(e.kind), escape(e.version or "-"), escape(e.user or "-"),
             escape(", ".join(f"{x.address}:{x.port}{' (exposed)' if x.exposed else ''}" for x in e.listen)
                    or "-"),
             "required" if e.auth_required else "none",
             escape(", ".join(e.installed_models) or "-"), escape("; ".join(e.probe_errors) or "-")]
            for e in inventory.engines], title="AI engines")
    if inventory.models:
        ctx.out.line()
        ctx.out.table(["MODEL", "FORMAT", "ARCHITECTURE", "QUANTIZATION", "SIZE", "PATH", "ERRORS"], [
            [escape(m.name or "-"), escape(m.format or "-"), escape(m.architecture or "-"),
             escape(m.quantization or "-"), str(m.size_bytes) if m.size_bytes else "-", escape(m.path or "-"),
             escape("; ".join(m.errors) or "-")]
            for m in inventory.models], title="models")
    if inventory.engines_omitted or inventory.models_omitted:
        ctx.out.line(f"left out: {inventory.engines_omitted} engines, {inventory.models_omitted} models "
                     f"({escape(inventory.omitted_reason or 'no reason given')})")
    for error in inventory.errors:
        ctx.out.line(f"discovery error: {escape(error)}")


def assets_reenroll(ctx: Context, args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    response: assets_pb2.ApproveReEnrollmentResponse = ctx.client.call(
        "assets", "ApproveReEnrollment", assets_pb2.ApproveReEnrollmentRequest(
            asset_id=args.asset_id, reason=args.reason, request_id=request_id()))
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    ctx.out.plain(response.reenroll_code)
    ctx.out.note(f"[dim]one-time re-enrollment code for {escape(args.asset_id)} (shown once; valid until "
                 f"{when(response.expire_time)}; the approval is a custody event). On the host: "
                 "lz-agent enroll --reenroll-code-file PATH (or - for standard input)[/]")
    return EXIT_OK


def _show_agents(ctx: Context, inventory: common_pb2.AgentInventory) -> None:
    """The asset's AI agents and MCP servers; credentials only by variable and detector."""
    if inventory.agents:
        ctx.out.line()
        ctx.out.table(["AGENT", "USER", "RUNNING", "ENDPOINTS"], [
            [escape(a.kind), escape(a.user), "yes" if a.running else "no",
             escape(", ".join(f"{e.host} ({e.location}{', ' + e.engine if e.engine else ''})" for e in a.endpoints)
                    or "-")]
            for a in inventory.agents], title="AI agents")
    if inventory.mcp_servers:
        ctx.out.line()
        ctx.out.table(["AGENT", "SERVER", "TRANSPORT", "CAPABILITIES", "ROOTS", "RUNNING", "SECRETS"], [
            [escape(s.agent), escape(s.name), escape(s.url or s.package or s.command or s.transport),
             escape(", ".join(s.capabilities)), escape(", ".join(s.roots) or "-"), "yes" if s.running else "no",
             escape(", ".join(f"{x.variable} ({x.detector})" for x in s.secrets) or "-")]
            for s in inventory.mcp_servers], title="MCP servers")


def alerts_list(ctx: Context, args: argparse.Namespace) -> int:
    def fetch(page_token: str) -> Any:
        request = assets_pb2.ListAlertsRequest(page_size=args.page_size, page_token=page_token,
                                               min_severity=args.severity, asset_id=args.asset)
        if args.since is not None:
            request.start_time.CopyFrom(_timestamp(args.since))
        if args.until is not None:
            request.end_time.CopyFrom(_timestamp(args.until))
        return ctx.client.call("assets", "ListAlerts", request)

    alerts, next_token = paged(fetch, "alerts", all_pages=args.all_pages, page_token=args.page_token)
    if ctx.out.json_mode:
        ctx.out.emit_json({"alerts": [to_dict(a) for a in alerts], "next_page_token": next_token})
        return EXIT_OK
    ctx.out.table(["TIME", "ASSET", "SEVERITY", "RULE", "SUMMARY", "RESOLVED"],
                  [[when(a.observe_time), escape(a.asset_id), styled_severity(a.severity), escape(a.rule_id),
                    escape(a.summary), when(a.resolve_time)] for a in alerts],
                  empty="no alerts", no_wrap=["TIME", "ASSET"])
    _more(ctx, next_token)
    return EXIT_OK


def _payload(event: common_pb2.LedgerEvent) -> str:
    data = to_dict(event).get("payload", {})
    return json.dumps(data, separators=(",", ":"), sort_keys=True) if data else "-"


def custody_log(ctx: Context, args: argparse.Namespace) -> int:
    def fetch(page_token: str) -> Any:
        return ctx.client.call("assets", "GetCustodyLog", assets_pb2.GetCustodyLogRequest(
            asset_id=args.asset_id, page_size=100, page_token=page_token))

    events, _ = paged(fetch, "events", all_pages=True)
    if ctx.out.json_mode:
        ctx.out.emit_json({"asset_id": args.asset_id, "events": [to_dict(e) for e in events]})
        return EXIT_OK
    ctx.out.table(["SEQ", "TIME", "ACTOR", "ACTION", "PAYLOAD"],
                  [[f"#{e.seq}", when(e.event_time), escape(e.actor), escape(e.action), escape(_payload(e))]
                   for e in events],
                  empty=f"no custody events for {args.asset_id}", no_wrap=["SEQ", "TIME"])
    return EXIT_OK
