"""A stack of the sealer tests' own (`sealer_stack`), so killing and reconfiguring its sealer disturbs no
other test; and `own_tenant`, a fresh tenant on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.kit.devstack import Stack
from tests.conftest import TenantHandle, running
from tests.sealer.helpers import OWN_STACK_ENV, make_tenant


@pytest.fixture(scope="session")
def sealer_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Embedded AWS and every service, with a sealer that seals often in small batches."""
    yield from running(Stack(state_dir=tmp_path_factory.mktemp("sealer-stack"), extra_env=dict(OWN_STACK_ENV)))


@pytest.fixture
def own_tenant(sealer_stack: Stack) -> TenantHandle:
    """A fresh tenant on the sealer tests' own stack."""
    return make_tenant(sealer_stack)
