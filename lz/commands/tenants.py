"""Tenants, operator tokens, the enrollment secret, and where the default token is kept."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from lifecyclezero.v1 import assets_pb2
from rich.markup import escape

from lz.commands import Context, Subparsers, positive_int, request_id
from lz.connection import SERVICES, paged, save_token
from lz.errors import EXIT_OK, UsageError
from lz.output import enum_choices, enum_short, enum_value, to_dict, when

_ROLE_CHOICES = enum_choices(assets_pb2.Role)


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    tenant = sub.add_parser("tenant", help="tenants of the installation", parents=parents)
    tenant_sub = tenant.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tenant_sub.add_parser(
        "create", parents=parents, help="create a tenant (needs the installation's bootstrap token)",
        description="Create a tenant with its first admin token and enrollment secret. Both are shown once. "
        "The bootstrap token comes from --bootstrap-token, LZ_BOOTSTRAP_TOKEN or the local stack's state file.",
    )
    create.add_argument("tenant_id", metavar="TENANT")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--save", action="store_true",
                        help="store the admin token as the default token in the config file (0600)")
    create.set_defaults(func=tenant_create)
    resolvers = tenant_sub.add_parser(
        "resolvers", parents=parents, help="set the DNS resolvers isolated hosts may still reach (admin)",
        description="Set the DNS resolvers every later isolation admits. With --clear, each host pins the "
        "resolvers it has configured when it is isolated. DNS to any other address is dropped.",
    )
    resolvers.add_argument("addresses", nargs="*", metavar="IP")
    resolvers.add_argument("--clear", action="store_true", help="remove the tenant's resolvers")
    resolvers.set_defaults(func=tenant_resolvers)

    token = sub.add_parser("token", help="operator tokens of your tenant", parents=parents)
    token_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    tcreate = token_sub.add_parser("create", parents=parents, help="issue a token (shown once)")
    tcreate.add_argument("--role", required=True, choices=_ROLE_CHOICES)
    tcreate.add_argument("--description", default="")
    tcreate.set_defaults(func=token_create)
    revoke = token_sub.add_parser("revoke", parents=parents, help="revoke a token by its id")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    revoke.set_defaults(func=token_revoke)
    tlist = token_sub.add_parser("list", parents=parents, help="list the tenant's tokens")
    tlist.add_argument("--page-size", type=positive_int, default=100)
    tlist.set_defaults(func=token_list)

    secret = sub.add_parser("enroll-secret", help="the tenant's agent enrollment secret", parents=parents)
    secret_sub = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = secret_sub.add_parser(
        "show", parents=parents,
        help="the secret's fingerprint (only a hash is stored, so the secret itself cannot be shown again)",
    )
    show.set_defaults(func=secret_show)
    rotate = secret_sub.add_parser("rotate", parents=parents,
                                   help="issue a new secret (shown once); the old one stops working")
    rotate.set_defaults(func=secret_rotate)

    login = sub.add_parser(
        "login", parents=parents, help="store the operator token in the config file (0600)",
        description="Store the token given with --token (or typed at the prompt, or read from stdin) "
        "as the default operator token in the config file.",
    )
    login.set_defaults(func=login_cmd)

    config = sub.add_parser("config", help="show the resolved connection settings", parents=parents)
    config.set_defaults(func=config_show)


def tenant_create(ctx: Context, args: argparse.Namespace) -> int:
    request = assets_pb2.CreateTenantRequest(tenant_id=args.tenant_id, display_name=args.name,
                                             request_id=request_id())
    response: assets_pb2.CreateTenantResponse = ctx.client.call("assets", "CreateTenant", request,
                                                                auth="bootstrap")
    saved = ""
    if args.save:
        save_token(ctx.settings.config_path, response.admin_token)
        saved = str(ctx.settings.config_path)
    if ctx.out.json_mode:
        data = to_dict(response)
        if saved:
            data["saved_to"] = saved
        ctx.out.emit_json(data)
        return EXIT_OK
    tenant = response.tenant
    ctx.out.line(f"created tenant [bold]{escape(tenant.tenant_id or args.tenant_id)}[/]"
                 + (f" ({escape(tenant.display_name)})" if tenant.display_name else ""))
    ctx.out.fields([("admin token", escape(response.admin_token)),
                    ("enrollment secret", escape(response.enrollment_secret))])
    ctx.out.note("[yellow]These are shown once and cannot be shown again: store them now.[/]")
    if saved:
        ctx.out.note(f"saved the admin token as the default token in {escape(saved)}")
    return EXIT_OK


def tenant_resolvers(ctx: Context, args: argparse.Namespace) -> int:
    if bool(args.addresses) == bool(args.clear):
        raise UsageError("give resolver addresses, or --clear to remove them")
    response: assets_pb2.SetTenantResolversResponse = ctx.client.call(
        "assets", "SetTenantResolvers", assets_pb2.SetTenantResolversRequest(dns_servers=args.addresses))
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
    elif response.dns_servers:
        ctx.out.line("isolated hosts may reach DNS at " + ", ".join(escape(a) for a in response.dns_servers))
    else:
        ctx.out.line("no tenant resolvers: each host pins the resolvers it has when it is isolated")
    return EXIT_OK


def _token_row(info: assets_pb2.TokenInfo) -> list[str]:
    return [escape(info.token_id), enum_short(assets_pb2.Role, info.role), escape(info.description),
            when(info.create_time), "[red]revoked[/]" if info.revoked else "active"]


_TOKEN_COLUMNS = ["TOKEN ID", "ROLE", "DESCRIPTION", "CREATED", "STATE"]


def token_create(ctx: Context, args: argparse.Namespace) -> int:
    request = assets_pb2.CreateTokenRequest(role=assets_pb2.Role.ValueType(enum_value(assets_pb2.Role, args.role)),
                                            description=args.description, request_id=request_id())
    response: assets_pb2.CreateTokenResponse = ctx.client.call("assets", "CreateToken", request)
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    info = response.token_info
    ctx.out.line(f"created {enum_short(assets_pb2.Role, info.role)} token [bold]{escape(info.token_id)}[/]")
    ctx.out.plain(response.token)
    ctx.out.note("[yellow]The token is shown once; only its hash is stored.[/]")
    return EXIT_OK


def token_revoke(ctx: Context, args: argparse.Namespace) -> int:
    request = assets_pb2.RevokeTokenRequest(token_id=args.token_id, request_id=request_id())
    response: assets_pb2.RevokeTokenResponse = ctx.client.call("assets", "RevokeToken", request)
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
    else:
        ctx.out.line(f"revoked token [bold]{escape(response.token_info.token_id or args.token_id)}[/]")
    return EXIT_OK


def token_list(ctx: Context, args: argparse.Namespace) -> int:
    def fetch(page_token: str) -> Any:
        return ctx.client.call("assets", "ListTokens",
                               assets_pb2.ListTokensRequest(page_size=args.page_size, page_token=page_token))

    tokens, _ = paged(fetch, "tokens", all_pages=True)
    if ctx.out.json_mode:
        ctx.out.emit_json({"tokens": [to_dict(t) for t in tokens]})
    else:
        ctx.out.table(_TOKEN_COLUMNS, [_token_row(t) for t in tokens], empty="no tokens",
                      no_wrap=["TOKEN ID"])
    return EXIT_OK


def secret_show(ctx: Context, args: argparse.Namespace) -> int:
    response: assets_pb2.GetEnrollmentSecretResponse = ctx.client.call(
        "assets", "GetEnrollmentSecret", assets_pb2.GetEnrollmentSecretRequest())
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    ctx.out.fields([("fingerprint", escape(response.fingerprint)), ("created", when(response.create_time))])
    ctx.out.note("[dim]Only the secret's hash is stored; `lz enroll-secret rotate` issues a new one.[/]")
    return EXIT_OK


def secret_rotate(ctx: Context, args: argparse.Namespace) -> int:
    response: assets_pb2.RotateEnrollmentSecretResponse = ctx.client.call(
        "assets", "RotateEnrollmentSecret", assets_pb2.RotateEnrollmentSecretRequest(request_id=request_id()))
    if ctx.out.json_mode:
        ctx.out.emit_json(to_dict(response))
        return EXIT_OK
    ctx.out.fields([("enrollment secret", escape(response.enrollment_secret)),
                    ("fingerprint", escape(response.fingerprint))])
    ctx.out.note("[yellow]The new secret is shown once; the old one no longer enrolls agents.[/]")
    return EXIT_OK


def login_cmd(ctx: Context, args: argparse.Namespace) -> int:
    token = ctx.options.token
    if not token:
        token = getpass.getpass("operator token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        raise UsageError("no token given: pass --token TOKEN (or type it at the prompt)")
    if any(c.isspace() for c in token):
        raise UsageError("a token has no whitespace in it")
    path = ctx.settings.config_path
    save_token(path, token)
    parts = token.split(":")
    tenant = parts[1] if len(parts) == 4 and parts[0] == "lz1" else ""
    if ctx.out.json_mode:
        ctx.out.emit_json({"config_file": str(path), "tenant": tenant})
    else:
        ctx.out.line(f"stored the token in {escape(str(path))}" + (f" (tenant {escape(tenant)})" if tenant else ""))
    return EXIT_OK


def config_show(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings

    def masked(secret: str) -> str:
        if not secret:
            return ""
        head = secret.rsplit(":", 1)[0] + ":" if secret.count(":") == 3 else ""
        return f"{head}****"

    data: dict[str, Any] = {
        "config_file": str(settings.config_path),
        "endpoint_file": str(settings.state_path) if settings.state_path else "",
        "endpoints": {name: settings.endpoints.get(name, "") for name in SERVICES},
        "token": masked(settings.token),
        "bootstrap_token": masked(settings.bootstrap_token),
        "tls": settings.tls,
        "tls_ca": settings.tls_ca,
        "tls_cert": settings.tls_cert,
        "tls_key": settings.tls_key,
        "timeout": settings.timeout,
        "sources": settings.sources,
    }
    if ctx.out.json_mode:
        ctx.out.emit_json(data)
        return EXIT_OK
    rows = [("config file", escape(data["config_file"])), ("endpoint file", escape(data["endpoint_file"] or "-"))]

    def shown(value: str, key: str) -> str:
        source = settings.sources.get(key, "")
        return escape(value or "-") + (f"  [dim]({escape(source)})[/]" if source else "")

    rows += [(name, shown(data["endpoints"][name], name)) for name in SERVICES]
    rows += [(key.replace("_", " "), shown(data[key], key)) for key in ("token", "bootstrap_token")]
    tls = "off"
    if settings.tls:
        tls = "mTLS" if settings.tls_cert else "on"
    rows.append(("tls", tls))
    ctx.out.fields(rows)
    return EXIT_OK
