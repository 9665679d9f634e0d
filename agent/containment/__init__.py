"""Host containment: one nftables table that isolates the host except for the control plane."""

from agent.containment.firewall import Firewall, FirewallError, NftablesFirewall
from agent.containment.manager import Containment, ContainmentResult, ContainmentStatus, Evidence
from agent.containment.policy import ContainmentPolicy, ControlPlane, PolicyError, build_policy
from agent.containment.selftest import Attempt, SelfTest

__all__ = [
    "Attempt",
    "Containment",
    "ContainmentPolicy",
    "ContainmentResult",
    "ContainmentStatus",
    "ControlPlane",
    "Evidence",
    "Firewall",
    "FirewallError",
    "NftablesFirewall",
    "PolicyError",
    "SelfTest",
    "build_policy",
]
