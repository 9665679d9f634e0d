"""Secrets handed to people and agents: random, URL-safe, and safe to paste after a command-line option."""

from __future__ import annotations

import base64
import string

from services.kit import auth

DRAWS = 2000  # with 1 in 64 starting with '-', a generator that allowed it would show ~31 of them


def test_a_secret_never_starts_with_a_dash() -> None:
    """No secret reads as a command-line option."""
    assert [s for s in (auth.new_secret() for _ in range(DRAWS)) if s.startswith("-")] == []


def test_a_secret_carries_at_least_256_random_bits() -> None:
    """A secret decodes to more than 32 bytes, and no two secrets drawn are the same."""
    drawn = {auth.new_secret() for _ in range(DRAWS)}
    assert len(drawn) == DRAWS
    assert all(len(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))) > 32 for s in drawn)


def test_a_secret_is_url_safe() -> None:
    """A secret uses only letters, digits, '-' and '_'."""
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert all(set(auth.new_secret()) <= allowed for _ in range(DRAWS))
