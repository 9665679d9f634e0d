"""Credentials in agent configurations: detected, named and fingerprinted, never carried.

A value that looks like a credential is reported as *present*: the variable
(or header, or argument position) that holds it, the detector that matched and
an HMAC-SHA256 fingerprint under a salt the tenant shares, so two hosts with the
same token show the same fingerprint while the token itself stays on the host.
Nothing in this module returns, logs or formats a matched value.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import Counter
from dataclasses import dataclass

FINGERPRINT_PREFIX = "hmac-sha256:"
_FINGERPRINT_HEX = 32
_MIN_NAMED_LENGTH = 8
_MIN_ENTROPY_LENGTH = 24
_MIN_ENTROPY_BITS = 4.0

# (detector, pattern): the first match names the value. Prefixes are the vendors' documented token formats.
DETECTORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private-key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("github-token", re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}")),
    ("github-fine-grained-token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("anthropic-api-key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai-api-key", re.compile(r"\bsk-(proj-|svcacct-)?[A-Za-z0-9_-]{20,}")),
    ("stripe-key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{16,}")),
    ("aws-access-key-id", re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("huggingface-token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("npm-token", re.compile(r"\bnpm_[A-Za-z0-9]{36}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("url-credentials", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
)
_CREDENTIAL_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH|\bPAT\b)", re.IGNORECASE
)
# References resolved elsewhere (${VAR}, $VAR, ${input:x}, {env:VAR}, ${{ secrets.X }}): not a value on disk.
_REFERENCE = re.compile(r"^\s*(\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{env:[^}]*\}|\$\{\{[^}]*\}\})\s*$")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_+/=.~-]+$")
_BEARER = re.compile(r"^\s*(Bearer|Basic|token)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class SecretFinding:
    """A credential present in a configuration: where it is and how it was recognised, not what it is."""

    variable: str
    detector: str
    fingerprint: str


def detect(value: str, variable: str = "") -> str | None:
    """The detector that recognises ``value`` as a credential, or None.

    ``variable`` is the name holding the value: a credential-like name lowers the bar, because
    ``GITHUB_TOKEN=abcd1234`` is a token whatever its shape.
    """
    if not value or _REFERENCE.match(value):
        return None
    for name, pattern in DETECTORS:
        if pattern.search(value):
            return name
    bare = _BEARER.sub("", value).strip()
    if not _TOKEN_CHARS.match(bare) or bare.startswith(("/", "~", ".")):
        return None
    if variable and _CREDENTIAL_NAME.search(variable) and len(bare) >= _MIN_NAMED_LENGTH:
        return "credential-variable"
    if len(bare) >= _MIN_ENTROPY_LENGTH and _entropy(bare) >= _MIN_ENTROPY_BITS and _mixed(bare):
        return "high-entropy"
    return None


def fingerprint(value: str, salt: str) -> str:
    """A salted, truncated HMAC of ``value``: equal values under one salt give equal fingerprints."""
    mac = hmac.new(salt.encode("utf-8"), value.encode("utf-8", errors="surrogatepass"), hashlib.sha256)
    return FINGERPRINT_PREFIX + mac.hexdigest()[:_FINGERPRINT_HEX]


def inspect(value: str, variable: str, salt: str) -> SecretFinding | None:
    """A :class:`SecretFinding` for ``value`` held in ``variable`` when it looks like a credential."""
    detector = detect(value, variable)
    if detector is None:
        return None
    return SecretFinding(variable=variable, detector=detector, fingerprint=fingerprint(value, salt))


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _mixed(text: str) -> bool:
    """Letters and digits both: long words and long numbers are not tokens."""
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)
