"""Identifiers are validated before they can reach a key."""

from __future__ import annotations

import pytest

from services.kit.errors import InvalidArgument
from services.kit.ids import is_valid_id, validate_id


@pytest.mark.parametrize("good", ["a", "host-01.corp", "A_b.c-9", "x" * 64])
def test_well_formed_ids_pass(good: str) -> None:
    """Ids made of letters, digits, dot, underscore and dash up to 64 characters pass."""
    assert validate_id("asset_id", good) == good


@pytest.mark.parametrize("bad", ["", "a#b", "a/b", "..", ".", "x" * 65, "é", "a b", "a\x00", "TENANT#x#LEDGER"])
def test_malformed_ids_are_refused(bad: str) -> None:
    """Ids with separators, path tricks, other characters or over 64 characters are refused."""
    assert not is_valid_id(bad)
    with pytest.raises(InvalidArgument) as caught:
        validate_id("asset_id", bad)
    assert caught.value.violations[0].field == "asset_id"


def test_non_strings_are_refused() -> None:
    """A value that is not a string is never an identifier."""
    assert not is_valid_id(7)
    assert not is_valid_id(None)
