"""``lz-agent``: scan, contain, break-glass, enroll, run and simulate.

Users never see a traceback: configuration and policy mistakes print one line
and exit 2, operational failures (nft refused, self-test failed) exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import grpc

from agent import statefile
from agent.config import Config, ConfigError, load_config
from agent.containment import (
    Containment,
    ContainmentResult,
    FirewallError,
    NftablesFirewall,
    PolicyError,
    build_policy,
)
from agent.containment.policy import host_resolvers
from agent.endpoints import parse_endpoints
from agent.enroll import SECRET_ENV, NotEnrolledError, load_identity, read_secret
from agent.inventory import Inventory
from agent.platform import UnsupportedPlatformError
from agent.snapshot import collect
from services.kit.addresses import plaintext_refusal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_BREAK_GLASS_HELP = """\
Remove host isolation locally, without the control plane. Use only when the
control plane cannot release a host that must work again (e.g. it is down).
The action is logged at CRITICAL level and kept in the state directory, and it
is reported to the control plane as soon as the agent reconnects.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lz-agent`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="lz-agent: %(levelname)s: %(message)s", stream=sys.stderr
    )
    try:
        config = load_config(args.config)
        return int(args.handler(args, config))
    except (ConfigError, PolicyError, UnsupportedPlatformError, NotEnrolledError) as exc:
        print(f"lz-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FirewallError, OSError) as exc:
        print(f"lz-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "error"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"lz-agent: control plane: {code}: {details}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"lz-agent: internal error: {type(exc).__name__}: {exc} (re-run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lz-agent", description="LifecycleZero endpoint agent.")
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config file (default: $LZ_AGENT_CONFIG or /etc/lz-agent/agent.toml if present)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--insecure", action="store_true",
                        help="allow plaintext to a control plane that is not loopback (the enrollment secret and "
                             "the agent credential cross in the clear); config: [stream] insecure = true")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser("scan", help="one discovery snapshot of this host (loopback probes only)")
    scan.add_argument("--json", action="store_true", help="print the inventory as JSON")
    scan.add_argument("--digests", action="store_true", help="compute SHA-256 of model files (cached)")
    scan.set_defaults(handler=_scan)

    contain = commands.add_parser("contain", help="host isolation (needs root or CAP_NET_ADMIN)")
    actions = contain.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="isolate the host, self-test, roll back on failure")
    apply.add_argument("--command-id", help="idempotency key: a repeated id returns the first result")
    apply.add_argument(
        "--control-plane",
        action="append",
        metavar="HOST:PORT",
        help="control-plane endpoint (repeatable; default from config)",
    )
    apply.add_argument(
        "--resolver",
        action="append",
        metavar="IP",
        help="allowed DNS resolver (repeatable; default from config, else the host's resolvers now)",
    )
    apply.add_argument("--allow", action="append", metavar="CIDR", help="allowlisted network (repeatable)")
    apply.add_argument(
        "--stop-engines",
        action="store_true",
        default=None,
        help="SIGTERM discovered engine processes once isolated",
    )
    apply.add_argument("--dry-run", action="store_true", help="print the nftables ruleset and change nothing")
    apply.add_argument("--json", action="store_true", help="print the result as JSON")
    apply.set_defaults(handler=_contain_apply)
    release = actions.add_parser("release", help="remove isolation")
    release.add_argument("--command-id", help="idempotency key")
    release.add_argument("--json", action="store_true")
    release.set_defaults(handler=_contain_release)
    status = actions.add_parser("status", help="persisted versus installed containment")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_contain_status)
    reconcile = actions.add_parser("reconcile", help="re-apply persisted isolation (at start-up)")
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(handler=_contain_reconcile)

    glass = commands.add_parser(
        "break-glass", help="emergency local release of isolation", description=_BREAK_GLASS_HELP
    )
    glass.add_argument("--confirm", action="store_true", help="required: you mean it")
    glass.add_argument("--reason", default="", help="why (recorded and reported)")
    glass.set_defaults(handler=_break_glass)

    enroll = commands.add_parser("enroll", help="enroll this host with the control plane (stores the identity)")
    enroll.add_argument("--tenant", required=True)
    _secret_arguments(enroll)
    enroll.add_argument("--reenroll-code-file", metavar="PATH",
                        help="file holding an operator's one-time re-enrollment code (`lz assets re-enroll`); "
                             "- reads standard input")
    enroll.add_argument("--asset", default="", metavar="ASSET",
                        help="with --reenroll-code-file: the asset the code is for (default: the stored one)")
    enroll.add_argument("--control-plane", required=True, metavar="HOST:PORT", help="the ingest endpoint")
    enroll.add_argument("--employee", default="", help="employee id of the host's user")
    enroll.set_defaults(handler=_enroll)

    run = commands.add_parser("run", help="stream to the control plane (reconciles containment first)")
    run.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")
    run.add_argument("--control-plane", action="append", default=[], metavar="HOST:PORT[,HOST:PORT...]",
                     help="ingest endpoints to stream to, repeatable (each session picks one; default: [stream] "
                          "address, else the enrollment's)")
    run.set_defaults(handler=_run)

    simulate = commands.add_parser("simulate", help="a fleet of simulated hosts streaming to a control plane")
    simulate.add_argument("--count", type=_positive_int, required=True, help="number of simulated hosts")
    simulate.add_argument("--control-plane", required=True, action="append", metavar="HOST:PORT[,HOST:PORT...]",
                          help="ingest endpoints, repeatable; each session of each host picks one")
    simulate.add_argument("--tenant", required=True)
    _secret_arguments(simulate)
    simulate.add_argument("--interval", type=_positive_float, default=5.0, help="heartbeat period (s)")
    simulate.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    simulate.add_argument("--exposed-fraction", type=_fraction, default=0.1)
    simulate.add_argument("--sensitive-fraction", type=_fraction, default=0.1)
    simulate.add_argument("--unapproved-fraction", type=_fraction, default=0.05)
    simulate.add_argument("--change-probability", type=_fraction, default=0.002,
                          help="chance per heartbeat that a host's inventory changes")
    simulate.add_argument("--seed", type=int)
    simulate.add_argument("--channels", type=_positive_int, help="HTTP/2 connections (default: 1 per 500 hosts)")
    simulate.add_argument("--first-reconnect-jitter", type=float, default=5.0, metavar="SECONDS")
    simulate.add_argument("--report-every", type=_positive_float, default=10.0, metavar="SECONDS")
    simulate.add_argument("--identities", type=Path, metavar="FILE",
                          help="JSON lines of identities: used instead of enrolling; written after enrolling")
    simulate.add_argument("--warm", action="store_true",
                          help="start as if the control plane already held each host's inventory (steady state)")
    simulate.add_argument("--report-file", type=Path, metavar="FILE",
                          help="append one JSON line per report (wall-clock aligned) with the window's ack latencies")
    simulate.add_argument("--vanish-after", type=_positive_float, metavar="SECONDS",
                          help="after this long, hosts drop their stream without a goodbye and never come back")
    simulate.add_argument("--vanish-count", type=_positive_int, metavar="N",
                          help="how many hosts vanish (the first N; default: all); SIGUSR1 makes them vanish at once")
    simulate.set_defaults(handler=_simulate)
    return parser


def _secret_arguments(parser: argparse.ArgumentParser) -> None:
    # Never the secret itself as an argument: every local user can read a process's command line.
    parser.add_argument("--secret-file", metavar="PATH",
                        help=f"file holding the tenant's enrollment secret; - reads standard input "
                             f"(default: ${SECRET_ENV})")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _enroll(args: argparse.Namespace, config: Config) -> int:
    from agent.enroll import enroll

    secret = read_secret(args.secret_file, SECRET_ENV, "the enrollment secret")
    if not secret:
        raise ConfigError(f"the enrollment secret is needed: --secret-file PATH (- for standard input) "
                          f"or ${SECRET_ENV}")
    code = read_secret(args.reenroll_code_file, "", "the re-enrollment code") if args.reenroll_code_file else ""
    identity = enroll(
        config.state_dir,
        args.tenant,
        secret,
        args.control_plane,
        employee_id=args.employee,
        credentials=_credentials(config, args.control_plane, args.insecure),
        reenroll_code=code,
        asset_id=args.asset,
    )
    print(f"enrolled: asset {identity.asset_id} in tenant {identity.tenant_id} via {identity.control_plane}")
    return EXIT_OK


def _run(args: argparse.Namespace, config: Config) -> int:
    from agent.runner import run_agent

    identity = load_identity(config.state_dir)
    endpoints = _endpoints(args.control_plane) if args.control_plane else ()
    targets = endpoints or ((config.stream_address or identity.control_plane,) if identity is not None else ())
    credentials = _credentials_for(config, targets, args.insecure) if targets else None
    return run_agent(config, args.duration, _containment(config), credentials, endpoints)


def _simulate(args: argparse.Namespace, config: Config) -> int:
    from agent.simulate import SimulateOptions, run_simulation

    endpoints = _endpoints(args.control_plane)
    options = SimulateOptions(
        count=args.count,
        control_plane=endpoints,
        tenant=args.tenant,
        secret=read_secret(args.secret_file, SECRET_ENV, "the enrollment secret"),
        interval=args.interval,
        duration=args.duration,
        exposed_fraction=args.exposed_fraction,
        sensitive_fraction=args.sensitive_fraction,
        unapproved_fraction=args.unapproved_fraction,
        change_probability=args.change_probability,
        seed=args.seed,
        channels=args.channels,
        first_reconnect_jitter=args.first_reconnect_jitter,
        report_every=args.report_every,
        identities=args.identities,
        warm=args.warm,
        report_file=args.report_file,
        vanish_after=args.vanish_after,
        vanish_count=args.vanish_count,
    )
    if not options.secret and not (options.identities is not None and options.identities.exists()):
        print(f"error: the enrollment secret is needed to enroll (--secret-file PATH or ${SECRET_ENV}), or give "
              "--identities with an existing file", file=sys.stderr)
        return EXIT_USAGE
    summary = run_simulation(options, credentials=_credentials_for(config, endpoints, args.insecure))
    print(json.dumps(summary, indent=2))
    enrolled = summary["enrolled"] + summary["identities_loaded"]
    return EXIT_OK if enrolled and summary["heartbeats_acked"] else EXIT_FAILED


def _endpoints(values: list[str]) -> tuple[str, ...]:
    try:
        return parse_endpoints(values)
    except ValueError as exc:
        raise ConfigError(f"--control-plane: {exc}") from None


def _credentials_for(config: Config, targets: tuple[str, ...], insecure: bool) -> grpc.ChannelCredentials | None:
    """TLS credentials for every one of `targets` (the same for all), or None for plaintext."""
    credentials = None
    for target in targets:
        credentials = _credentials(config, target, insecure)
    return credentials


def _credentials(config: Config, target: str, insecure: bool) -> grpc.ChannelCredentials | None:
    """TLS credentials for `target`, or None for plaintext, which only a loopback target gets unless allowed."""
    if not config.stream_tls:
        refusal = None if insecure or config.stream_insecure else plaintext_refusal(
            target, "pass --insecure (or set [stream] insecure = true) if you mean it")
        if refusal is not None:
            raise ConfigError(refusal)
        return None
    roots = config.stream_ca_file.read_bytes() if config.stream_ca_file else None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def _scan(args: argparse.Namespace, config: Config) -> int:
    if args.digests:
        config = replace(config, compute_digests=True)
    inventory = collect(config)
    if args.json:
        print(json.dumps({**inventory.to_dict(), "digest": inventory.digest()}, indent=2))
    else:
        _print_inventory(inventory)
    return EXIT_OK


def _contain_apply(args: argparse.Namespace, config: Config) -> int:
    stop = config.stop_engines if args.stop_engines is None else args.stop_engines
    policy = build_policy(
        control_plane=args.control_plane or config.control_plane,
        resolvers=args.resolver or config.resolvers or host_resolvers(),
        allowlist=args.allow or config.allowlist,
        stop_engines=stop,
    )
    containment = _containment(config)
    if args.dry_run:
        print(containment.firewall.render(policy), end="")
        return EXIT_OK
    pids = [engine.pid for engine in collect(config).engines] if stop else []
    return _report(containment.apply(policy, args.command_id, pids), args.json)


def _contain_release(args: argparse.Namespace, config: Config) -> int:
    return _report(_containment(config).release(args.command_id), args.json)


def _contain_reconcile(args: argparse.Namespace, config: Config) -> int:
    statefile.repair(config.state_dir)
    return _report(_containment(config).reconcile(), args.json)


def _contain_status(args: argparse.Namespace, config: Config) -> int:
    status = _containment(config).status()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        state = "isolated" if status.installed else "not isolated"
        sync = "" if status.in_sync else " (persisted state and firewall disagree; run `contain reconcile`)"
        print(f"{state}; command {status.command_id or '-'}; since {status.applied_at or '-'}{sync}")
    return EXIT_OK if status.in_sync else EXIT_FAILED


def _break_glass(args: argparse.Namespace, config: Config) -> int:
    if not args.confirm:
        print(
            "lz-agent: break-glass removes isolation; re-run with --confirm if you mean it", file=sys.stderr
        )
        return EXIT_USAGE
    return _report(_containment(config).break_glass(args.reason), json_output=False)


def _containment(config: Config) -> Containment:
    return Containment(NftablesFirewall(config.nft, config.table), config.state_dir, config.self_test_timeout)


def _report(result: ContainmentResult, json_output: bool) -> int:
    if json_output:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        replay = " (replayed)" if result.replayed else ""
        print(f"{result.action}: {'ok' if result.ok else 'FAILED'}: {result.message}{replay}")
        evidence = result.evidence
        if evidence.ruleset_sha256:
            print(f"  rules: {evidence.rule_count} ({evidence.ruleset_sha256})")
        if evidence.self_test is not None:
            for attempt in evidence.self_test.attempts:
                outcome = "reachable" if attempt.ok else f"unreachable: {attempt.error}"
                print(f"  control plane {attempt.host} [{attempt.address}]:{attempt.port} {outcome}")
        if evidence.stopped_pids:
            print(f"  stopped engine pids: {', '.join(map(str, evidence.stopped_pids))}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _print_inventory(inventory: Inventory) -> None:
    print(f"{inventory.hostname} ({inventory.os}) at {inventory.collected_at}  digest {inventory.digest()}")
    print(f"engines: {len(inventory.engines)}")
    for engine in inventory.engines:
        state = "confirmed" if engine.confirmed else "unconfirmed"
        ports = (
            ", ".join(f"{e.address}:{e.port}{' EXPOSED' if e.exposed else ''}" for e in engine.listen) or "-"
        )
        print(
            f"  {engine.kind} pid {engine.pid} user {engine.user} {state} version {engine.version or '-'} "
            f"listen {ports}"
        )
        for label, items in (
            ("loaded", engine.models_loaded),
            ("sensitive files", engine.open_sensitive_files),
            ("outbound", [f"{c.remote_address}:{c.remote_port}" for c in engine.outbound]),
        ):
            if items:
                print(f"    {label}: {', '.join(items)}")
    print(f"models: {len(inventory.models)}")
    for model in inventory.models:
        print(
            f"  {model.name} [{model.source}, {model.format}, {model.quantization or '-'}, "
            f"{model.size_bytes} bytes] {model.path}"
        )
        for error in model.errors:
            print(f"    error: {error}")
    _print_agents(inventory)
    for error in inventory.errors:
        print(f"error: {error}")


def _print_agents(inventory: Inventory) -> None:
    print(f"agents: {len(inventory.agents)}")
    for agent in inventory.agents:
        endpoints = ", ".join(f"{e.host} ({e.location})" for e in agent.endpoints) or "-"
        print(f"  {agent.kind} user {agent.user} {'running' if agent.running else 'installed'} endpoints {endpoints}")
    print(f"mcp servers: {len(inventory.mcp_servers)}")
    for server in inventory.mcp_servers:
        secrets = ", ".join(f"{s.variable} ({s.detector})" for s in server.secrets) or "-"
        print(f"  {server.agent}/{server.name} {server.transport} {server.url or server.package or server.command} "
              f"[{', '.join(server.capabilities)}] roots {', '.join(server.roots) or '-'} "
              f"{'running' if server.running else 'not running'} secrets {secrets}")


if __name__ == "__main__":
    sys.exit(main())
