"""`lz`: the LifecycleZero operator CLI.

Exit codes: 0 success; 1 the answer is negative (verification failed, not found, refused in the
current state); 2 usage, configuration or connection errors. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lz.commands import Context, assets, ledger, seal, tenants
from lz.connection import Options
from lz.errors import EXIT_ERROR, CliError, one_line
from lz.output import Output

_EPILOG = """\
connection: flags, then LZ_ASSETS_ADDRESS / LZ_LEDGER_ADDRESS / LZ_SEALER_ADDRESS / LZ_TOKEN / LZ_TLS_CA ...,
then the config file (~/.config/lz/config.toml or LZ_CONFIG), then the local stack's .lz/stack.json.
exit codes: 0 success, 1 negative answer (verification failed, not found), 2 usage or connection error.
"""


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every command accepts, before or after the subcommand."""
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    flag_default = argparse.SUPPRESS if suppress else False
    group = parser.add_argument_group("connection")
    group.add_argument("--assets", metavar="ADDR", default=default, help="assets service host:port")
    group.add_argument("--ledger", metavar="ADDR", default=default, help="ledger service host:port")
    group.add_argument("--sealer", metavar="ADDR", default=default, help="sealer service host:port")
    group.add_argument("--endpoint-file", metavar="FILE", default=default,
                       help="a stack state file (JSON with `endpoints`), like the .lz/stack.json of `make up`")
    group.add_argument("--config", metavar="FILE", default=default, help="config file (TOML)")
    group.add_argument("--token", metavar="TOKEN", default=default, help="operator token")
    group.add_argument("--bootstrap-token", metavar="TOKEN", default=default,
                       help="installation bootstrap token (tenant create)")
    group.add_argument("--tls", action="store_true", default=flag_default, help="TLS with the system roots")
    group.add_argument("--tls-ca", metavar="FILE", default=default, help="PEM CA bundle (enables TLS)")
    group.add_argument("--tls-cert", metavar="FILE", default=default, help="PEM client certificate (mTLS)")
    group.add_argument("--tls-key", metavar="FILE", default=default, help="PEM client key (mTLS)")
    group.add_argument("--insecure", action="store_true", default=flag_default,
                       help="allow plaintext to an address that is not loopback (tokens cross in the clear)")
    group.add_argument("--timeout", metavar="SECONDS", type=float, default=default, help="per-call deadline")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", default=flag_default, help="JSON for scripts")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lz", description="Operate LifecycleZero: assets, containment, tokens and the custody ledger.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common(False)],
    )
    parser.add_argument("--version", action="version", version="lz 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [_common(True)]
    for module in (tenants, assets, ledger, seal):
        module.register(sub, parents)
    return parser


def _options(args: argparse.Namespace) -> Options:
    return Options(
        assets=args.assets, ledger=args.ledger, sealer=args.sealer, endpoint_file=args.endpoint_file,
        config=args.config, token=args.token, bootstrap_token=args.bootstrap_token, tls=bool(args.tls),
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, timeout=args.timeout,
        insecure=bool(args.insecure),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(json_mode=bool(args.json))
    ctx = Context(out=out, options=_options(args))
    try:
        return int(args.func(ctx, args))
    except CliError as error:
        _fail(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stop quietly and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:  # a bug must still be one line, never a traceback
        if os.environ.get("LZ_DEBUG"):
            raise
        _fail(f"unexpected {type(error).__name__}: {error} (set LZ_DEBUG=1 for details)")
        return EXIT_ERROR
    finally:
        ctx.close()


def _fail(message: str) -> None:
    sys.stderr.write(f"lz: error: {one_line(message)}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    raise SystemExit(main())
