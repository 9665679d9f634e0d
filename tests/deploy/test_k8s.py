"""The kustomize overlays: they render, validate against the Kubernetes schemas, and keep the house rules."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import OVERLAYS, REPO

K8S_VERSIONS = ("1.30.0", "1.33.0")
SERVERS = {"ingest", "assets", "ledger", "sealer"}
DEPLOYMENTS = SERVERS | {"risk-worker"}
GRPC_PORT = 50051
INTERNAL_PORT = 50052  # ingest's service-to-service RPCs


def _objects(rendered: dict[str, list[dict[str, Any]]], overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered[overlay] if o["kind"] == kind}


def _service_deployments(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> list[dict[str, Any]]:
    return [d for name, d in _objects(rendered, overlay, "Deployment").items() if name in DEPLOYMENTS]


def _labels(peer: dict[str, Any]) -> str | None:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_service(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """`kubectl kustomize` renders a Deployment for each of the five processes."""
    assert set(_objects(rendered, overlay, "Deployment")) >= DEPLOYMENTS


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_schemas(rendered: dict[str, list[dict[str, Any]]], overlay: str,
                                                    version: str) -> None:
    """Every rendered object is valid for the Kubernetes API, unknown fields included."""
    for obj in rendered[overlay]:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_are_hardened(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Every container runs as non-root on a read-only root with no capabilities and a writable /tmp."""
    for deployment in _objects(rendered, overlay, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_have_requests_and_limits(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Every container requests and limits CPU and memory."""
    for deployment in _objects(rendered, overlay, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_native_grpc_on_the_health_port(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Startup, readiness and liveness are native gRPC probes on the plaintext health port."""
    for deployment in _service_deployments(rendered, overlay):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_expose_a_named_grpc_port(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Each gRPC server has a Service whose port is named grpc and targets the container's grpc port."""
    services = _objects(rendered, overlay, "Service")
    for name in SERVERS:
        (port,) = services[name]["spec"]["ports"]
        assert port["name"] == "grpc" and port["targetPort"] == "grpc" and port["appProtocol"] == "grpc"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Each process has a PodDisruptionBudget selecting its pods."""
    budgets = _objects(rendered, overlay, "PodDisruptionBudget")
    for name in DEPLOYMENTS:
        assert budgets[name]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_and_worker_scale_on_cpu(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Ingest and the risk worker scale on CPU, and their Deployments leave the replica count to the HPA."""
    hpas = _objects(rendered, overlay, "HorizontalPodAutoscaler")
    deployments = _objects(rendered, overlay, "Deployment")
    assert set(hpas) == {"ingest", "risk-worker"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in deployments[name]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_accounts_carry_irsa_roles(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Each process runs as its own ServiceAccount annotated with its role ARN."""
    accounts = _objects(rendered, overlay, "ServiceAccount")
    for deployment in _service_deployments(rendered, overlay):
        name = deployment["metadata"]["name"]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert account == f"lz-{name}"
        assert accounts[account]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
            f":role/lifecyclezero-{name}")


def test_aws_overlay_uses_stack_outputs_and_real_endpoints(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The aws overlay takes role ARNs from the stack outputs, sets no embedded endpoint and emits no local config."""
    objects = rendered["aws"]
    assert not [o for o in objects if o["metadata"]["name"] == "stack-outputs"]
    common = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("lz-common"))
    assert "LZ_AWS_ENDPOINT_URL" not in common["data"]
    accounts = _objects(rendered, "aws", "ServiceAccount")
    assert accounts["lz-ledger"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::111122223333:")


def test_local_overlay_uses_the_embedded_endpoint(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The local overlay runs moto in the namespace and points every process at it, one replica each."""
    objects = rendered["local"]
    common = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("lz-common"))
    assert common["data"]["LZ_AWS_ENDPOINT_URL"] == "http://embedded-aws:4566"
    assert "embedded-aws" in _objects(rendered, "local", "Deployment")
    for name, deployment in _objects(rendered, "local", "Deployment").items():
        assert deployment["spec"].get("replicas", 1) == 1, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_rendered(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Secrets are referenced by name and never part of the manifests."""
    assert not [o for o in rendered[overlay] if o["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tls_secret_is_mounted_where_the_settings_point(rendered: dict[str, list[dict[str, Any]]],
                                                        overlay: str) -> None:
    """Each process mounts its lz-tls-<name> Secret at the directory LZ_TLS_* name."""
    common = next(o for o in rendered[overlay] if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"].startswith("lz-common"))["data"]
    for deployment in _service_deployments(rendered, overlay):
        pod = deployment["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert volume["secret"]["secretName"] == f"lz-tls-{deployment['metadata']['name']}"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls")
        files = (("LZ_TLS_CERT_FILE", "tls.crt"), ("LZ_TLS_KEY_FILE", "tls.key"), ("LZ_TLS_CA_FILE", "ca.crt"))
        for key, file in files:
            assert common[key] == f"{mount['mountPath']}/{file}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sealer_mounts_the_signing_key(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """The sealer reads its checkpoint signing key from the mounted lz-signing-key Secret."""
    sealer = _objects(rendered, overlay, "Deployment")["sealer"]["spec"]["template"]["spec"]
    volume = next(v for v in sealer["volumes"] if v["name"] == "signing-key")
    assert volume["secret"]["secretName"] == "lz-signing-key"
    mount = next(m for m in sealer["containers"][0]["volumeMounts"] if m["name"] == "signing-key")
    config = next(o for o in _objects(rendered, overlay, "ConfigMap").values()
                  if o["metadata"]["name"].startswith("lz-sealer"))
    assert config["data"]["LZ_SIGNING_KEY_FILE"] == f"{mount['mountPath']}/signing.key"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_denies_by_default(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """A policy selecting every pod denies all ingress and egress not allowed by another."""
    deny = _objects(rendered, overlay, "NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_the_designed_calls(rendered: dict[str, list[dict[str, Any]]],
                                                        overlay: str) -> None:
    """Between the processes, exactly the designed gRPC calls are allowed, in both directions (assets, and
    ingest replicas forwarding a nudge, reach ingest on its internal port only)."""
    policies = _objects(rendered, overlay, "NetworkPolicy").values()
    egress: set[tuple[str, str]] = set()
    ingress: set[tuple[str, str]] = set()
    for policy in policies:
        spec = policy["spec"]
        me = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in spec.get("egress", []):
            for port in {p["port"] for p in rule.get("ports", [])} & {GRPC_PORT, INTERNAL_PORT}:
                egress |= {(me, _labels(peer), port) for peer in rule.get("to", []) if _labels(peer)}
        for rule in spec.get("ingress", []):
            for port in {p["port"] for p in rule.get("ports", [])} & {GRPC_PORT, INTERNAL_PORT}:
                ingress |= {(_labels(peer), me, port) for peer in rule.get("from", []) if _labels(peer)}
    designed = {("ingest", "assets", GRPC_PORT), ("risk-worker", "assets", GRPC_PORT),
                ("assets", "ledger", GRPC_PORT), ("assets", "ingest", INTERNAL_PORT),
                ("ingest", "ingest", INTERNAL_PORT), ("ledger", "sealer", GRPC_PORT)}
    assert egress == designed
    assert {edge for edge in ingress if edge[0] in DEPLOYMENTS} == designed


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_example_operator_ingress_validates(version: str) -> None:
    """deploy/k8s/examples/operator-ingress.yaml is valid for the API and routes gRPC over TLS to each service."""
    path = REPO / "deploy" / "k8s" / "examples" / "operator-ingress.yaml"
    ingresses = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for ingress in ingresses:
        kubernetes_validate.validate(ingress, version, strict=True)
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    backends = {i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] for i in ingresses}
    assert backends == {"assets", "ledger", "sealer"}


def test_aws_ingest_drains_before_it_stops(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """In the aws site ingest waits in preStop, and its grace period covers that wait plus the server's drain."""
    ingest = _objects(rendered, "aws", "Deployment")["ingest"]["spec"]["template"]["spec"]
    wait = int(ingest["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    common = next(o for name, o in _objects(rendered, "aws", "ConfigMap").items() if name.startswith("lz-common"))
    assert ingest["terminationGracePeriodSeconds"] > wait + int(common["data"]["LZ_GRACE_SECONDS"])


def test_aws_ingest_load_balancer_keeps_streams_across_rollouts(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The NLB has a readiness gate, a deregistration delay, cross-zone balancing and an idle timeout over keepalive."""
    from agent.stream import KEEPALIVE_OPTIONS

    service = _objects(rendered, "aws", "Service")["ingest"]["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    target_group = dict(item.split("=") for item in service[prefix + "target-group-attributes"].split(","))
    assert int(target_group["deregistration_delay.timeout_seconds"]) > 0
    assert target_group["deregistration_delay.connection_termination.enabled"] == "true"
    assert service[prefix + "attributes"] == "load_balancing.cross_zone.enabled=true"
    idle = int(service[prefix + "listener-attributes.TCP-50051"].split("=")[1])
    assert idle * 1000 > dict(KEEPALIVE_OPTIONS)["grpc.keepalive_time_ms"]
    (namespace,) = _objects(rendered, "aws", "Namespace").values()
    assert namespace["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_internal_port_is_only_in_its_cluster_service(rendered: dict[str, list[dict[str, Any]]],
                                                               overlay: str) -> None:
    """The agents' ingest Service carries only the public port; the internal port is in a ClusterIP Service."""
    services = _objects(rendered, overlay, "Service")
    assert [p["targetPort"] for p in services["ingest"]["spec"]["ports"]] == ["grpc"]
    assert services["ingest-internal"]["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in services["ingest-internal"]["spec"]["ports"]] == ["internal"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_ingest_pod_advertises_its_own_internal_address(rendered: dict[str, list[dict[str, Any]]],
                                                             overlay: str) -> None:
    """Ingest's LZ_ADVERTISE_ADDRESS is its pod IP (downward API) and internal port, where peers forward nudges."""
    ingest = _objects(rendered, overlay, "Deployment")["ingest"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in ingest["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["LZ_ADVERTISE_ADDRESS"]["value"] == f"$(POD_IP):{INTERNAL_PORT}"
    assert [e["name"] for e in ingest["env"]].index("POD_IP") < [e["name"] for e in ingest["env"]].index(
        "LZ_ADVERTISE_ADDRESS")
