"""Signing keys: one Ed25519 key per deployment, a signer *named* for each tenant's log.

A C2SP checkpoint must be signed by a key whose name equals the log's origin, and each tenant has
its own log, `<LZ_ORIGIN>/<tenant>`. Rather than keep a key per tenant, the deployment holds one (or,
during rotation, several) Ed25519 private keys and signs a tenant's checkpoints with that key under
the tenant's origin as its name. The key id covers the name (C2SP: SHA-256(name || "\\n" || 0x01 ||
public key)[:4]), so a tenant's verifier key string is distinct per tenant even though the public
key is shared; an auditor of one tenant trusts exactly `GetVerifierKeys` of that tenant.

Rotation: `LZ_SIGNING_KEY_FILE` (or `LZ_SIGNING_KEY`) holds one or more signer keys, newest first.
The newest signs new checkpoints; all of them are published as verifiers, so old checkpoints still
verify with the old key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.kit.errors import ConfigError
from services.kit.ids import validate_id
from services.tlog.errors import NoteError
from services.tlog.note import Signer, Verifier


def parse_key_list(text: str) -> list[str]:
    """Key strings from a file or variable: one per line (or comma separated), '#' comments ignored."""
    out: list[str] = []
    for line in text.replace(",", "\n").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append(stripped)
    return out


def load_signer_keys(key_file: str, key_env: str) -> list[str]:
    """The deployment's signer key strings, newest first; raises ConfigError when none are usable."""
    text = key_env
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read LZ_SIGNING_KEY_FILE: {exc.strerror or exc}") from None
    keys = parse_key_list(text)
    if not keys:
        raise ConfigError("no signing key: set LZ_SIGNING_KEY_FILE or LZ_SIGNING_KEY")
    try:
        for key in keys:
            Signer(key)
    except NoteError as exc:
        raise ConfigError(f"bad signing key: {exc}") from None
    return keys


class TenantKeys:
    """Per-tenant signers and verifiers derived from the deployment keys (newest first)."""

    def __init__(self, origin: str, signer_keys: Sequence[str] = (), verifier_keys: Sequence[str] = ()) -> None:
        if not signer_keys and not verifier_keys:
            raise ConfigError("no signing or verifier keys configured")
        self.origin = origin.rstrip("/")
        self._signer_keys = list(signer_keys)
        self._verifier_keys = list(verifier_keys) or [Signer(k).verifier().key_string for k in signer_keys]

    def origin_of(self, tenant: str) -> str:
        """The tenant's log origin, `<LZ_ORIGIN>/<tenant>` (also its key name)."""
        return f"{self.origin}/{validate_id('tenant_id', tenant)}"

    def signer(self, tenant: str) -> Signer:
        """The newest key, named for the tenant's log."""
        if not self._signer_keys:
            raise ConfigError("this process has no signing key")
        return Signer(self._signer_keys[0]).renamed(self.origin_of(tenant))

    def verifiers(self, tenant: str) -> list[Verifier]:
        """Every configured key (newest first), named for the tenant's log."""
        name = self.origin_of(tenant)
        return [Verifier(k).renamed(name) for k in self._verifier_keys]

    def deployment_verifiers(self) -> list[str]:
        """The deployment's verifier key strings (under their own names), newest first."""
        return list(self._verifier_keys)

    def verifier_strings(self, tenant: str) -> list[str]:
        return [v.key_string for v in self.verifiers(tenant)]
