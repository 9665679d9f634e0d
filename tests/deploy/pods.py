"""Start a rendered Deployment's (or Job's) container as a local process, as the kubelet would, and probe it.

What the kubelet would do is followed literally: the container's `command`, its environment from
`envFrom` ConfigMaps of the render and `env` values or Secret keys, its volumes as directories (Secrets
and ConfigMaps as files, emptyDir as an empty directory) with every path under a mount point moved to
that directory, and probes run exactly as declared (gRPC port and service name, HTTP path, TCP).
Only what cannot be the same on one host changes: every Pod here shares the host's network namespace,
so each container port is given a free port; a value that is exactly a container port, or a
`<service>:<port>` address of a Service (resolved through its selector and target port), is rewritten
to it, and `0.0.0.0` listens on loopback instead.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import embedded

# Secret name -> key -> value: what `kubectl create secret` would hold.
Secrets = dict[str, dict[str, str]]
# The downward API's fields a manifest reads, as they are for a pod run here on loopback.
POD_FIELDS = {"status.podIP": "127.0.0.1"}


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def probes(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kind ("startupProbe", ...) -> probe of the workload's container."""
    return {kind: probe for kind, probe in container(workload).items() if kind.endswith("Probe")}


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container(workload).get("ports", [])}


@dataclass
class Pod:
    """A workload's container running as a process, and where its ports went."""

    name: str
    proc: subprocess.Popen[bytes]
    ports: dict[int, int]  # container port -> local port
    workload: dict[str, Any]
    log: Path

    def local_port(self, port: int | str) -> int:
        number = container_ports(self.workload)[port] if isinstance(port, str) else port
        return self.ports[number]

    def passes(self, probe: dict[str, Any]) -> bool:
        """One run of `probe` as the kubelet runs it: True on success."""
        timeout = probe.get("timeoutSeconds", 1)
        if "grpc" in probe:
            return grpc_health(f"127.0.0.1:{self.local_port(probe['grpc']['port'])}",
                               probe["grpc"].get("service", ""), timeout) == health_pb2.HealthCheckResponse.SERVING
        if "httpGet" in probe:
            url = f"http://127.0.0.1:{self.local_port(probe['httpGet']['port'])}{probe['httpGet'].get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as reply:
                    return 200 <= reply.status < 400
            except (urllib.error.URLError, OSError):
                return False
        if "tcpSocket" in probe:
            try:
                socket.create_connection(("127.0.0.1", self.local_port(probe["tcpSocket"]["port"])), timeout).close()
            except OSError:
                return False
            return True
        raise AssertionError(f"probe of a kind the kubelet has but this test does not run: {probe}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def grpc_health(address: str, service: str, timeout: float) -> int:
    """The status the health service at `address` reports for `service`; -1 if it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=timeout)
        except grpc.RpcError:
            return -1
    return int(reply.status)


@dataclass
class Cluster:
    """One rendered overlay, its Secrets, and the processes started from it."""

    docs: list[dict[str, Any]]
    secrets: Secrets
    root: Path
    ports: dict[str, dict[int, int]] = field(default_factory=dict)  # workload -> container port -> local
    addresses: dict[str, str] = field(default_factory=dict)  # Service `name:port` -> local host:port
    pods: dict[str, Pod] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in ("Deployment", "Job"):
            for name, workload in objects(self.docs, kind).items():
                self.ports[name] = {number: embedded.free_port() for number in container_ports(workload).values()}
        deployments = objects(self.docs, "Deployment")
        for name, service in objects(self.docs, "Service").items():
            (target,) = (workload for workload in deployments.values() if service["spec"]["selector"].items()
                         <= workload["spec"]["template"]["metadata"]["labels"].items())
            for port in service["spec"]["ports"]:
                number = port["targetPort"]
                number = container_ports(target)[number] if isinstance(number, str) else number
                local = self.ports[target["metadata"]["name"]][number]
                self.addresses[f"{name}:{port['port']}"] = f"127.0.0.1:{local}"

    def _rewrite(self, value: str, own: dict[int, int]) -> str:
        if value == "0.0.0.0":
            return "127.0.0.1"
        if value.isdigit() and int(value) in own:
            return str(own[int(value)])
        host, _, port = value.rpartition(":")
        if host == POD_FIELDS["status.podIP"] and port.isdigit() and int(port) in own:
            return f"{host}:{own[int(port)]}"  # the pod's own address (LZ_ADVERTISE_ADDRESS)
        for address, local in self.addresses.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(address)}(?!\d)", local, value)
        return value

    def _configmap(self, name: str) -> dict[str, str]:
        maps = objects(self.docs, "ConfigMap")
        if name in maps:
            data: dict[str, str] = maps[name].get("data", {})
            return data
        return self.secrets[name]  # a ConfigMap made by `kubectl create configmap`, like a Secret

    def _mounts(self, workload: dict[str, Any], workdir: Path) -> dict[str, Path]:
        volumes = {volume["name"]: volume for volume in workload["spec"]["template"]["spec"].get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container(workload).get("volumeMounts", []):
            volume, directory = volumes[mount["name"]], workdir / mount["name"]
            directory.mkdir(parents=True)
            source = volume.get("secret") or volume.get("configMap")
            if source is not None:
                data = (self.secrets[source["secretName"]] if "secret" in volume
                        else self._configmap(source["name"]))
                items = source.get("items") or [{"key": key, "path": key} for key in data]
                for item in items:
                    (directory / item["path"]).write_text(data[item["key"]])
            mounts[mount["mountPath"]] = directory
        return mounts

    def environment(self, workload: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        spec = container(workload)
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            env.update(self._configmap(source["configMapRef"]["name"]))
        for item in spec.get("env", []):
            if "value" in item:
                # Kubernetes expands $(NAME) from the variables defined before this one.
                env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            elif "fieldRef" in item["valueFrom"]:
                env[item["name"]] = POD_FIELDS[item["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
        own = self.ports[workload["metadata"]["name"]]
        env = {name: self._rewrite(value, own) for name, value in env.items()}
        for mount_path, directory in mounts.items():
            env = {name: value.replace(mount_path, str(directory)) for name, value in env.items()}
        return env

    def start(self, kind: str, name: str) -> Pod:
        """Start the container of workload `name` as a process, its output in a log file."""
        workload = objects(self.docs, kind)[name]
        workdir = self.root / name
        mounts = self._mounts(workload, workdir)
        # The image puts its virtualenv first on PATH; here that is the interpreter running the tests.
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **self.environment(workload, mounts)}
        own = self.ports[name]
        argv = [self._rewrite(arg, own) for arg in container(workload)["command"]]
        log = workdir / "container.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=mounts.get("/tmp", workdir), stdout=out,
                                    stderr=subprocess.STDOUT)
        pod = Pod(name, proc, own, workload, log)
        self.pods[name] = pod
        return pod

    def lost_a_port(self) -> bool:
        """Whether a process exited because another program took its port first."""
        return any(pod.proc.poll() is not None and "Address already in use" in pod.log.read_text(errors="replace")
                   for pod in self.pods.values())

    def stop(self) -> None:
        for pod in self.pods.values():
            pod.stop()


def tls_secrets(manifest: str) -> Secrets:
    """The `kubernetes.io/tls` Secrets of `python -m services.kit.certs` (secrets.yaml), decoded."""
    import yaml

    return {doc["metadata"]["name"]: {key: base64.b64decode(value).decode() for key, value in doc["data"].items()}
            for doc in yaml.safe_load_all(manifest) if doc}
