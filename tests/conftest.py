"""Fixtures shared by the whole suite: the embedded AWS endpoint and the local stack of real processes.

Both are session-scoped because starting them costs seconds; tests stay independent by working in a
tenant of their own (`new_tenant`), so nothing one test writes is seen by another.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from services.kit import aws, embedded
from services.kit.auth import Role
from services.kit.devstack import Stack
from services.kit.settings import AwsSettings
from services.kit.tokens import store as token_store


@pytest.fixture(scope="session")
def embedded_aws() -> Iterator[embedded.Resources]:
    """A provisioned embedded AWS endpoint of the session's own (not shared with the stack)."""
    proc, url = embedded.start_endpoint()
    try:
        yield embedded.provision(url)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def aws_settings(embedded_aws: embedded.Resources) -> AwsSettings:
    for key, value in embedded.EMBEDDED_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    return AwsSettings(table_name=embedded_aws.table_name, endpoint_url=embedded_aws.endpoint_url,
                       region=embedded_aws.region)


@pytest.fixture(scope="session")
def ddb(aws_settings: AwsSettings) -> Any:
    return aws.client(aws_settings, "dynamodb")


def running(stack: Stack) -> Iterator[Stack]:
    """Start `stack`, print its processes' logs if it cannot start, and stop it afterwards."""
    try:
        stack.start()
    except BaseException:
        stack.stop()
        for name in stack.procs:
            log = stack.log_path(name)
            if log.exists():
                sys.stderr.write(f"--- {name} log ---\n{log.read_text()[-4000:]}\n")
        raise
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Embedded AWS and every service as its own process, started once for the session."""
    yield from running(Stack(state_dir=tmp_path_factory.mktemp("stack")))


class TenantHandle:
    """A fresh tenant on the stack with a token per role, for tests that must not see each other."""

    def __init__(self, stack: Stack, tenant: str, tokens: dict[Role, str]) -> None:
        self.stack = stack
        self.tenant = tenant
        self.tokens = tokens

    def metadata(self, role: Role = Role.ADMIN) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.tokens[role]}")]

    def channel(self, service: str) -> grpc.Channel:
        return grpc.insecure_channel(self.stack.addresses[service])


@pytest.fixture
def new_tenant(stack: Stack) -> TenantHandle:
    """A tenant id no other test uses, with viewer, operator and admin tokens written to the table."""
    assert stack.resources is not None
    settings = AwsSettings(table_name=stack.resources.table_name, endpoint_url=stack.resources.endpoint_url)
    ddb = aws.client(settings, "dynamodb")
    tenant = f"t-{secrets.token_hex(4)}"
    tokens = {}
    for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        token, _ = token_store.issue(ddb, settings.table_name, tenant, role, f"test {role.value}")
        tokens[role] = str(token)
    return TenantHandle(stack, tenant, tokens)
