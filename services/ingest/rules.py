"""Risk rules, declarative: a policy (YAML) says which rules run, how severe they are and what they allow.

`evaluate` is pure: it takes one host's inventory, the model keys of its previous inventory and the
tenant's policy, and returns findings (rule id, severity, summary, evidence). Loading and merging the
YAML is here too; reading the files is left to the caller (`PolicyBook`).
"""

from __future__ import annotations

import copy
import enum
import fnmatch
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lifecyclezero.v1 import common_pb2

from services.ingest import agent_rules
from services.ingest.health import HealthSettings, version_key
from services.kit.addresses import is_loopback
from services.kit.errors import ConfigError
from services.kit.ids import is_valid_id

log = logging.getLogger(__name__)

DEFAULT_POLICY_FILE = Path(__file__).parent / "policy" / "default.yaml"
MAX_EVIDENCE_ITEMS = 20


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3


class Rule(enum.StrEnum):
    EXPOSED_LISTENER = "exposed-listener"
    SENSITIVE_FILES_OPEN = "sensitive-files-open"
    ENGINE_NOT_ALLOWED = "engine-not-allowed"
    MODEL_NOT_ALLOWED = "model-not-allowed"
    NEW_MODEL = "new-model"
    OUTBOUND_CONNECTION = "outbound-connection"
    MCP_SECRET_IN_CONFIG = "mcp-secret-in-config"  # noqa: S105 - a rule id, not a password
    MCP_BROAD_FILESYSTEM = "mcp-broad-filesystem"
    MCP_SHELL = "mcp-shell"
    MCP_REMOTE_SERVER_NOT_ALLOWED = "mcp-remote-server-not-allowed"
    AGENT_NOT_ALLOWED = "agent-not-allowed"
    AGENT_CLOUD_ENDPOINT_NOT_ALLOWED = "agent-cloud-endpoint-not-allowed"
    # Agent health: raised by ingest's health sweep, not by `evaluate` (see services/ingest/health.py).
    AGENT_SILENT = "agent-silent"
    AGENT_MISSING = "agent-missing"
    AGENT_STOPPED_WHILE_ISOLATED = "agent-stopped-while-isolated"
    AGENT_OUTDATED = "agent-outdated"


class PolicyError(ValueError):
    """A policy document that does not have the policy's shape."""


@dataclass(frozen=True)
class RulePolicy:
    enabled: bool
    severity: Severity
    isolate: bool


@dataclass(frozen=True)
class Policy:
    sensitive_file_patterns: tuple[str, ...]
    engine_kinds: frozenset[str] | None
    model_names: tuple[str, ...] | None
    model_digests: frozenset[str] | None
    licenses: frozenset[str] | None
    outbound_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    rules: dict[Rule, RulePolicy]
    agent_kinds: frozenset[str] | None = None
    mcp_remote_hosts: tuple[str, ...] | None = None
    agent_cloud_hosts: tuple[str, ...] | None = None
    agent_health: HealthSettings = field(default_factory=HealthSettings)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    summary: str
    evidence: dict[str, Any]
    isolate: bool = False


# ---------------------------------------------------------------------------------------------- policy


def load_document(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: must be a mapping")
    return doc


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`: maps merge key by key, lists and scalars replace."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_TOP_KEYS = {"version", "sensitive_file_patterns", "allowlists", "outbound_allow_cidrs", "rules", "agent_health"}
_HEALTH_KEYS = {"missing_after_seconds", "lost_after_heartbeats", "minimum_version"}
_ALLOWLIST_KEYS = {
    "engine_kinds", "model_names", "model_digests", "licenses", "agent_kinds", "mcp_remote_hosts", "agent_cloud_hosts",
}
_RULE_KEYS = {"enabled", "severity", "isolate"}


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of strings or null")
    return [str(v) for v in value]


def build_policy(doc: dict[str, Any], source: str = "policy") -> Policy:
    """A checked Policy from a (merged) document; PolicyError names the first problem."""
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise PolicyError(f"{source}: unknown keys {sorted(unknown)}")
    if doc.get("version", 1) != 1:
        raise PolicyError(f"{source}: version must be 1")
    patterns = _strings(doc.get("sensitive_file_patterns", []), f"{source}: sensitive_file_patterns") or []
    allow = doc.get("allowlists") or {}
    if not isinstance(allow, dict) or set(allow) - _ALLOWLIST_KEYS:
        raise PolicyError(f"{source}: allowlists may hold only {sorted(_ALLOWLIST_KEYS)}")
    kinds = _strings(allow.get("engine_kinds"), f"{source}: allowlists.engine_kinds")
    names = _strings(allow.get("model_names"), f"{source}: allowlists.model_names")
    digests = _strings(allow.get("model_digests"), f"{source}: allowlists.model_digests")
    licenses = _strings(allow.get("licenses"), f"{source}: allowlists.licenses")
    agent_kinds = _strings(allow.get("agent_kinds"), f"{source}: allowlists.agent_kinds")
    mcp_hosts = _strings(allow.get("mcp_remote_hosts"), f"{source}: allowlists.mcp_remote_hosts")
    cloud_hosts = _strings(allow.get("agent_cloud_hosts"), f"{source}: allowlists.agent_cloud_hosts")
    cidrs = []
    for text in _strings(doc.get("outbound_allow_cidrs", []), f"{source}: outbound_allow_cidrs") or []:
        try:
            cidrs.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise PolicyError(f"{source}: outbound_allow_cidrs: {text!r} is not a CIDR") from None
    raw_rules = doc.get("rules") or {}
    if not isinstance(raw_rules, dict):
        raise PolicyError(f"{source}: rules must be a mapping")
    rules: dict[Rule, RulePolicy] = {}
    for rule in Rule:
        spec = raw_rules.get(rule.value, {})
        if not isinstance(spec, dict) or set(spec) - _RULE_KEYS:
            raise PolicyError(f"{source}: rules.{rule.value} may hold only {sorted(_RULE_KEYS)}")
        try:
            severity = Severity[str(spec.get("severity", "WARNING")).upper()]
        except KeyError:
            raise PolicyError(f"{source}: rules.{rule.value}.severity must be INFO, WARNING or CRITICAL") from None
        isolate = spec.get("isolate", False)
        enabled = spec.get("enabled", True)
        if not isinstance(isolate, bool) or not isinstance(enabled, bool):
            raise PolicyError(f"{source}: rules.{rule.value}: enabled and isolate must be true or false")
        if isolate and severity is not Severity.CRITICAL:
            raise PolicyError(f"{source}: rules.{rule.value}: only CRITICAL rules may isolate")
        rules[rule] = RulePolicy(enabled, severity, isolate)
    unknown_rules = set(raw_rules) - {r.value for r in Rule}
    if unknown_rules:
        raise PolicyError(f"{source}: unknown rules {sorted(unknown_rules)}")
    return Policy(
        agent_health=_health(doc.get("agent_health") or {}, source),
        sensitive_file_patterns=tuple(patterns),
        engine_kinds=frozenset(k.lower() for k in kinds) if kinds is not None else None,
        model_names=tuple(names) if names is not None else None,
        model_digests=frozenset(_digest(d) for d in digests) if digests is not None else None,
        licenses=frozenset(lic.lower() for lic in licenses) if licenses is not None else None,
        outbound_allow=tuple(cidrs),
        rules=rules,
        agent_kinds=frozenset(k.lower() for k in agent_kinds) if agent_kinds is not None else None,
        mcp_remote_hosts=tuple(h.lower() for h in mcp_hosts) if mcp_hosts is not None else None,
        agent_cloud_hosts=tuple(h.lower() for h in cloud_hosts) if cloud_hosts is not None else None,
    )


def _health(spec: Any, source: str) -> HealthSettings:
    if not isinstance(spec, dict) or set(spec) - _HEALTH_KEYS:
        raise PolicyError(f"{source}: agent_health may hold only {sorted(_HEALTH_KEYS)}")
    defaults = HealthSettings()
    missing = spec.get("missing_after_seconds", defaults.missing_after_seconds)
    lost = spec.get("lost_after_heartbeats", defaults.lost_after_heartbeats)
    minimum = spec.get("minimum_version") or ""
    for name, value in (("missing_after_seconds", missing), ("lost_after_heartbeats", lost)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise PolicyError(f"{source}: agent_health.{name} must be a positive number")
    if not isinstance(minimum, str) or (minimum and version_key(minimum) is None):
        raise PolicyError(f"{source}: agent_health.minimum_version must be a version like 1.4.0, or null")
    return HealthSettings(float(missing), float(lost), minimum)


def load_book(policy_file: str, policy_dir: str) -> PolicyBook:
    """The policy book of `LZ_POLICY_FILE` (empty: the built-in) and `LZ_POLICY_DIR`; ConfigError when unusable."""
    path = Path(policy_file) if policy_file else DEFAULT_POLICY_FILE
    try:
        return PolicyBook(path, Path(policy_dir) if policy_dir else None)
    except (OSError, PolicyError) as exc:
        raise ConfigError(f"LZ_POLICY_FILE: {exc}") from None


class PolicyBook:
    """The default policy and per-tenant overrides from `<directory>/<tenant>.yaml`, re-read when changed.

    A broken override is logged and ignored (the tenant gets the default policy), so one bad file
    cannot stop the worker; the default policy itself must be valid at start.
    """

    def __init__(self, default_file: Path, overrides_dir: Path | None, recheck_seconds: float = 5.0) -> None:
        self._default_doc = load_document(default_file.read_text(), str(default_file))
        self.default = build_policy(self._default_doc, str(default_file))
        self._dir = overrides_dir
        self._recheck = recheck_seconds
        self._cache: dict[str, tuple[float, float, Policy]] = {}

    def for_tenant(self, tenant: str) -> Policy:
        if self._dir is None or not is_valid_id(tenant):
            return self.default
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[2]
        path = self._dir / f"{tenant}.yaml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            self._cache[tenant] = (now + self._recheck, -1.0, self.default)
            return self.default
        if hit is not None and hit[1] == mtime:
            self._cache[tenant] = (now + self._recheck, mtime, hit[2])
            return hit[2]
        try:
            policy = build_policy(merge(self._default_doc, load_document(path.read_text(), str(path))), str(path))
        except (PolicyError, OSError) as exc:
            log.error("ignoring the policy override of %s: %s", tenant, exc)
            policy = self.default
        self._cache[tenant] = (now + self._recheck, mtime, policy)
        return policy


# ------------------------------------------------------------------------------------------ evaluation


def _digest(text: str) -> str:
    lowered = text.strip().lower()
    return lowered if lowered.startswith("sha256:") or not lowered else f"sha256:{lowered}"


def model_key(model: common_pb2.Model) -> str:
    """How `new-model` tells models apart: name and digest (path when the digest is unknown)."""
    return f"{model.name}@{_digest(model.digest) if model.digest else model.path}"


def model_keys(inventory: common_pb2.Inventory) -> list[str]:
    return sorted({model_key(m) for m in inventory.models})


def _engine_ref(engine: common_pb2.Engine) -> dict[str, Any]:
    return {"kind": engine.kind, "pid": engine.pid, "executable": engine.executable, "user": engine.user}


@dataclass
class _Collector:
    policy: Policy
    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: Rule, summary: str, evidence: dict[str, Any]) -> None:
        spec = self.policy.rules[rule]
        self.findings.append(Finding(rule.value, spec.severity, summary, evidence, spec.isolate))


def evaluate(inventory: common_pb2.Inventory, previous_models: list[str] | None, policy: Policy) -> list[Finding]:
    """Every enabled rule's finding on this inventory (at most one finding per rule, evidence inside)."""
    out = _Collector(policy)
    on = {rule for rule, spec in policy.rules.items() if spec.enabled}
    if Rule.EXPOSED_LISTENER in on:
        _exposed(inventory, out)
    if Rule.SENSITIVE_FILES_OPEN in on:
        _sensitive(inventory, policy, out)
    if Rule.ENGINE_NOT_ALLOWED in on and policy.engine_kinds is not None:
        _engine_allow(inventory, policy, out)
    if Rule.MODEL_NOT_ALLOWED in on:
        _model_allow(inventory, policy, out)
    if Rule.NEW_MODEL in on and previous_models is not None:
        _new_models(inventory, previous_models, out)
    if Rule.OUTBOUND_CONNECTION in on:
        _outbound(inventory, policy, out)
    for rule_id, summary, evidence in agent_rules.agent_hits(inventory, policy, {rule.value for rule in on}):
        out.add(Rule(rule_id), summary, evidence)
    return out.findings


def _exposed(inventory: common_pb2.Inventory, out: _Collector) -> None:
    hits = []
    for engine in inventory.engines:
        exposed = [
            {"address": ep.address, "port": ep.port}
            for ep in engine.listen
            if ep.exposed or not is_loopback(ep.address)
        ]
        if exposed:
            hits.append({**_engine_ref(engine), "listen": exposed[:MAX_EVIDENCE_ITEMS]})
    if hits:
        first = hits[0]
        out.add(
            Rule.EXPOSED_LISTENER,
            f"{first['kind']} listens on {first['listen'][0]['address']}:{first['listen'][0]['port']}"
            + (f" (and {len(hits) - 1} more engines)" if len(hits) > 1 else ""),
            {"engines": hits[:MAX_EVIDENCE_ITEMS]},
        )


def _sensitive(inventory: common_pb2.Inventory, policy: Policy, out: _Collector) -> None:
    hits = []
    for engine in inventory.engines:
        files = []
        for path in engine.open_sensitive_files:
            pattern = next((p for p in policy.sensitive_file_patterns if fnmatch.fnmatchcase(path, p)), None)
            if pattern is not None:
                files.append({"path": path, "pattern": pattern})
        if files:
            hits.append({**_engine_ref(engine), "files": files[:MAX_EVIDENCE_ITEMS]})
    if hits:
        total = sum(len(h["files"]) for h in hits)
        out.add(
            Rule.SENSITIVE_FILES_OPEN,
            f"{hits[0]['kind']} holds {hits[0]['files'][0]['path']} open"
            + (f" (and {total - 1} more files)" if total > 1 else ""),
            {"engines": hits[:MAX_EVIDENCE_ITEMS]},
        )


def _engine_allow(inventory: common_pb2.Inventory, policy: Policy, out: _Collector) -> None:
    assert policy.engine_kinds is not None
    hits = [_engine_ref(e) for e in inventory.engines if e.kind.lower() not in policy.engine_kinds]
    if hits:
        out.add(
            Rule.ENGINE_NOT_ALLOWED,
            f"engine {hits[0]['kind']} is not on the allowlist",
            {"engines": hits[:MAX_EVIDENCE_ITEMS], "allowed_kinds": sorted(policy.engine_kinds)},
        )


def _name_allowed(name: str, policy: Policy) -> bool:
    return policy.model_names is not None and any(fnmatch.fnmatchcase(name, p) for p in policy.model_names)


def _model_allow(inventory: common_pb2.Inventory, policy: Policy, out: _Collector) -> None:
    identity = policy.model_names is not None or policy.model_digests is not None
    if not identity and policy.licenses is None:
        return
    hits: list[dict[str, Any]] = []
    for model in inventory.models:
        reasons = []
        digest = _digest(model.digest) if model.digest else ""
        if identity and not (
            _name_allowed(model.name, policy) or (policy.model_digests is not None and digest in policy.model_digests)
        ):
            reasons.append("name and digest not on the allowlist")
        if policy.licenses is not None and model.license.lower() not in policy.licenses:
            reasons.append(f"licence {model.license or '(unknown)'} not on the allowlist")
        if reasons:
            hits.append({"name": model.name, "digest": digest, "path": model.path, "license": model.license,
                         "reasons": reasons})
    if policy.model_names is not None:
        for engine in inventory.engines:
            for name in engine.loaded_models:
                if not _name_allowed(name, policy):
                    hits.append({"name": name, "loaded_by": engine.kind, "pid": engine.pid,
                                 "reasons": ["loaded model name not on the allowlist"]})
    if hits:
        out.add(
            Rule.MODEL_NOT_ALLOWED,
            f"model {hits[0]['name']} is not allowed" + (f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""),
            {"models": hits[:MAX_EVIDENCE_ITEMS]},
        )


def _new_models(inventory: common_pb2.Inventory, previous: list[str], out: _Collector) -> None:
    known = set(previous)
    fresh = [m for m in inventory.models if model_key(m) not in known]
    if fresh:
        out.add(
            Rule.NEW_MODEL,
            f"new model {fresh[0].name}" + (f" (and {len(fresh) - 1} more)" if len(fresh) > 1 else ""),
            {"models": [{"name": m.name, "digest": m.digest, "path": m.path, "format": m.format,
                         "size_bytes": m.size_bytes} for m in fresh[:MAX_EVIDENCE_ITEMS]]},
        )


def _outbound_allowed(address: str, policy: Policy) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in policy.outbound_allow)


def _outbound(inventory: common_pb2.Inventory, policy: Policy, out: _Collector) -> None:
    hits = []
    for engine in inventory.engines:
        peers = [
            {"remote_address": c.remote_address, "remote_port": c.remote_port}
            for c in engine.outbound
            if not is_loopback(c.remote_address) and not _outbound_allowed(c.remote_address, policy)
        ]
        if peers:
            hits.append({**_engine_ref(engine), "connections": peers[:MAX_EVIDENCE_ITEMS]})
    if hits:
        first = hits[0]["connections"][0]
        out.add(
            Rule.OUTBOUND_CONNECTION,
            f"{hits[0]['kind']} connects to {first['remote_address']}:{first['remote_port']}",
            {"engines": hits[:MAX_EVIDENCE_ITEMS]},
        )


def max_severity(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)
