"""Keys of the items the assets service owns: tenants, assets and agent commands.

This module is the only code that writes these prefixes into keys (see ACCESS_PATTERNS.md). Every
builder validates each identifier it takes before it reaches a key, so a `#` can never forge one.
"""

from __future__ import annotations

import re

from services.kit.errors import InvalidArgument
from services.kit.ids import validate_id
from services.kit.tokens import keys as token_keys

ENTITY_PREFIXES = ("METADATA", "ASSET", "CMD", "EMP", "STATE", "ACTION_REQ", "CMD_PENDING", "REENROLL",
                   "AGENT_EVENT", "AGENTS", "ENGINES")

METADATA_SK = "METADATA"
ASSET_SK_PREFIX = "ASSET#"
CMD_SK_PREFIX = "CMD#"
GSI1SK_CMD_PREFIX = "CMD#"

# Timestamps in keys: RFC 3339 UTC with exactly six fractional digits, so they sort as text.
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _tenant(tenant: str) -> str:
    return f"TENANT#{validate_id('tenant_id', tenant)}"


def validate_ts(field: str, value: str) -> str:
    """A key timestamp, or InvalidArgument naming `field`."""
    if not _TS.fullmatch(value):
        raise InvalidArgument.field(field, "must be a UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return value


def tenant_pk(tenant: str) -> str:
    """Partition of the tenant's registry: assets and commands."""
    return _tenant(tenant)


def auth_pk(tenant: str) -> str:
    """`TENANT#t#AUTH`: the tenant's metadata item and re-enrollment approvals, beside its operator tokens
    (services.kit.tokens builds that partition); only the assets role may write it."""
    return token_keys.auth_pk(tenant)


def asset_sk(asset_id: str) -> str:
    return f"{ASSET_SK_PREFIX}{validate_id('asset_id', asset_id)}"


def agent_inventory_sk(asset_id: str) -> str:
    """`AGENTS#a`: an asset's AI agents and MCP servers, beside (not under) `ASSET#` so asset lists skip it."""
    return f"AGENTS#{validate_id('asset_id', asset_id)}"


def engine_inventory_sk(asset_id: str) -> str:
    """`ENGINES#a`: an asset's AI engines and model files, beside `AGENTS#a` so each stays under the item limit."""
    return f"ENGINES#{validate_id('asset_id', asset_id)}"


def employee_gsi1pk(tenant: str, employee_id: str) -> str:
    return f"{_tenant(tenant)}#EMP#{validate_id('employee_id', employee_id)}"


def state_gsi1sk(state: str, asset_id: str) -> str:
    return f"STATE#{validate_id('status', state)}#ASSET#{validate_id('asset_id', asset_id)}"


def state_gsi1sk_prefix(state: str) -> str:
    return f"STATE#{validate_id('status', state)}#"


def action_required_gsi2pk(tenant: str) -> str:
    return f"{_tenant(tenant)}#ACTION_REQ"


def ts_asset_gsi2sk(ts: str, asset_id: str) -> str:
    """`ts#a`: the sort key of both sparse GSI2 lists (action required, pending commands)."""
    return f"{validate_ts('ts', ts)}#{validate_id('asset_id', asset_id)}"


def agent_event_sk(asset_id: str, event_id: str) -> str:
    """Marks an agent event as recorded (its custody seq), so a re-sent event is appended once."""
    return f"AGENT_EVENT#{validate_id('asset_id', asset_id)}#{validate_id('event_id', event_id)}"


def command_sk(asset_id: str, command_id: str) -> str:
    return f"{CMD_SK_PREFIX}{validate_id('asset_id', asset_id)}#{validate_id('command_id', command_id)}"


def asset_gsi1pk(tenant: str, asset_id: str) -> str:
    """`TENANT#t#ASSET#a`: an asset's commands (and, written by the ledger, its custody events)."""
    return f"{_tenant(tenant)}#ASSET#{validate_id('asset_id', asset_id)}"


def command_gsi1sk(ts: str) -> str:
    return f"{GSI1SK_CMD_PREFIX}{validate_ts('ts', ts)}"


def pending_commands_gsi2pk(tenant: str) -> str:
    return f"{_tenant(tenant)}#CMD_PENDING"


def reenroll_sk(asset_id: str) -> str:
    """`REENROLL#a`: the asset's one open re-enrollment approval (the hash of its one-time code)."""
    return f"REENROLL#{validate_id('asset_id', asset_id)}"
