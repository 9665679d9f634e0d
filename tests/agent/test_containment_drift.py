"""Drift checks when the firewall cannot be inspected or repaired: reported once, not every few seconds."""

from __future__ import annotations

from pathlib import Path

from agent.containment import Containment, NftablesFirewall, build_policy


def test_an_unrepairable_drift_is_recorded_once(tmp_path: Path) -> None:
    """With nft unusable while isolated, the first check records the drift and later identical ones do not."""
    containment = Containment(NftablesFirewall(str(tmp_path / "no-nft")), tmp_path)
    policy = build_policy(["10.1.2.3:443"], resolvers=["10.1.2.53"])
    containment.state.set_active({"policy": policy.to_dict(), "listing_sha256": "sha256:" + "0" * 64,
                                  "command_id": "c1"})
    first, second = containment.check_drift(), containment.check_drift()
    assert first is not None and (first["repaired"], first["found_sha256"]) == (False, None)
    assert second is None
    assert [e["event"] for e in containment.state.events()] == ["containment-drift"]
