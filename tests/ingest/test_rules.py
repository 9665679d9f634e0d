"""Risk rules: each rule fires with its evidence, and tenant overrides change what fires."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifecyclezero.v1 import common_pb2

from services.ingest import rules


def _policy(override: str = "") -> rules.Policy:
    base = rules.load_document(rules.DEFAULT_POLICY_FILE.read_text(), "default")
    return rules.build_policy(rules.merge(base, rules.load_document(override, "override")))


def _engine(**kw: object) -> common_pb2.Engine:
    base: dict[str, object] = {"kind": "ollama", "pid": 42, "executable": "/usr/bin/ollama", "user": "alice"}
    base.update(kw)
    return common_pb2.Engine(**base)  # type: ignore[arg-type]


def _findings(inventory: common_pb2.Inventory, previous: list[str] | None = None,
              override: str = "") -> dict[str, rules.Finding]:
    return {f.rule_id: f for f in rules.evaluate(inventory, previous, _policy(override))}


def test_default_policy_is_valid_and_quiet_on_a_clean_host() -> None:
    """The default policy loads and finds nothing on a host whose engine listens on loopback only."""
    inv = common_pb2.Inventory(engines=[_engine(listen=[common_pb2.Endpoint(address="127.0.0.1", port=11434)])])
    assert _findings(inv) == {}


def test_exposed_listener_names_the_engine_and_socket() -> None:
    """An engine listening on 0.0.0.0 is a CRITICAL exposed-listener finding naming the socket."""
    inv = common_pb2.Inventory(engines=[_engine(listen=[common_pb2.Endpoint(address="0.0.0.0", port=11434)])])
    finding = _findings(inv)["exposed-listener"]
    assert finding.severity is rules.Severity.CRITICAL
    assert finding.evidence["engines"][0]["listen"] == [{"address": "0.0.0.0", "port": 11434}]
    assert finding.evidence["engines"][0]["pid"] == 42


def test_exposed_flag_counts_even_for_an_odd_address() -> None:
    """An endpoint the agent marks exposed is reported even if its address text looks local."""
    inv = common_pb2.Inventory(engines=[_engine(listen=[common_pb2.Endpoint(address="::1", port=1, exposed=True)])])
    assert "exposed-listener" in _findings(inv)


def test_sensitive_files_match_the_configured_patterns() -> None:
    """Open files matching a sensitive pattern are reported with the pattern that matched."""
    inv = common_pb2.Inventory(engines=[_engine(open_sensitive_files=["/home/alice/.ssh/id_ed25519", "/tmp/x"])])
    finding = _findings(inv)["sensitive-files-open"]
    assert finding.evidence["engines"][0]["files"] == [{"path": "/home/alice/.ssh/id_ed25519", "pattern": "*/.ssh/*"}]


def test_sensitive_file_patterns_are_configurable() -> None:
    """A tenant that narrows the patterns no longer sees files outside them."""
    inv = common_pb2.Inventory(engines=[_engine(open_sensitive_files=["/home/alice/.ssh/id_ed25519"])])
    assert "sensitive-files-open" not in _findings(inv, override="sensitive_file_patterns: ['*.pem']")


def test_engine_not_on_the_allowlist() -> None:
    """An engine kind missing from the tenant's allowlist is a WARNING with the allowed kinds as evidence."""
    inv = common_pb2.Inventory(engines=[_engine(kind="vllm")])
    finding = _findings(inv, override="allowlists: {engine_kinds: [ollama]}")["engine-not-allowed"]
    assert finding.severity is rules.Severity.WARNING
    assert finding.evidence == {"engines": [{"kind": "vllm", "pid": 42, "executable": "/usr/bin/ollama",
                                             "user": "alice"}], "allowed_kinds": ["ollama"]}


def test_model_allowed_by_digest_even_when_its_name_is_not() -> None:
    """A model whose digest is listed passes the allowlist although its name is not listed."""
    model = common_pb2.Model(name="mystery", digest="sha256:" + "ab" * 32, license="mit")
    inv = common_pb2.Inventory(models=[model])
    override = f"allowlists: {{model_names: ['llama3*'], model_digests: ['{'ab' * 32}']}}"
    assert "model-not-allowed" not in _findings(inv, override=override)


def test_model_with_a_licence_off_the_allowlist() -> None:
    """A model whose licence is not allowed is reported with the reason."""
    inv = common_pb2.Inventory(models=[common_pb2.Model(name="llama3:8b", license="llama3", path="/m/a.gguf")])
    finding = _findings(inv, override="allowlists: {licenses: [apache-2.0, mit]}")["model-not-allowed"]
    assert finding.evidence["models"][0]["reasons"] == ["licence llama3 not on the allowlist"]


def test_new_model_against_the_previous_inventory() -> None:
    """A model absent from the previous inventory is an INFO new-model finding; a first inventory is a baseline."""
    old = common_pb2.Model(name="a", digest="sha256:" + "11" * 32)
    new = common_pb2.Model(name="b", digest="sha256:" + "22" * 32, path="/m/b.gguf")
    inv = common_pb2.Inventory(models=[old, new])
    finding = _findings(inv, previous=[rules.model_key(old)])["new-model"]
    assert finding.severity is rules.Severity.INFO
    assert [m["name"] for m in finding.evidence["models"]] == ["b"]
    assert "new-model" not in _findings(inv, previous=None)


def test_outbound_connection_to_a_public_peer() -> None:
    """An engine connected to a non-loopback peer is reported; loopback and allowed CIDRs are not."""
    inv = common_pb2.Inventory(engines=[_engine(outbound=[
        common_pb2.OutboundConnection(remote_address="203.0.113.9", remote_port=443),
        common_pb2.OutboundConnection(remote_address="127.0.0.1", remote_port=8080),
        common_pb2.OutboundConnection(remote_address="10.1.2.3", remote_port=443),
    ])])
    finding = _findings(inv, override="outbound_allow_cidrs: [10.0.0.0/8]")["outbound-connection"]
    assert finding.evidence["engines"][0]["connections"] == [{"remote_address": "203.0.113.9", "remote_port": 443}]


def test_disabled_rule_does_not_fire() -> None:
    """A rule the tenant disables produces no finding."""
    inv = common_pb2.Inventory(engines=[_engine(listen=[common_pb2.Endpoint(address="0.0.0.0", port=1)])])
    assert _findings(inv, override="rules: {exposed-listener: {enabled: false}}") == {}


def test_isolate_is_only_allowed_on_critical_rules() -> None:
    """A policy asking a WARNING rule to isolate is refused."""
    with pytest.raises(rules.PolicyError, match="only CRITICAL"):
        _policy("rules: {outbound-connection: {isolate: true}}")


def test_unknown_keys_are_refused() -> None:
    """A misspelt policy key is an error rather than silently ignored."""
    with pytest.raises(rules.PolicyError, match="unknown"):
        _policy("alowlists: {}")


def test_policy_book_reads_a_tenant_override_and_ignores_a_broken_one(tmp_path: Path) -> None:
    """The book merges a tenant's file over the default and falls back to the default on a broken file."""
    (tmp_path / "t1.yaml").write_text("rules: {exposed-listener: {isolate: true}}\n")
    (tmp_path / "t2.yaml").write_text("rules: [not, a, mapping]\n")
    book = rules.PolicyBook(rules.DEFAULT_POLICY_FILE, tmp_path, recheck_seconds=0.0)
    assert book.for_tenant("t1").rules[rules.Rule.EXPOSED_LISTENER].isolate
    assert book.for_tenant("t2") is book.default
    assert book.for_tenant("t3") is book.default
