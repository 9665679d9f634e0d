"""Two network namespaces joined by a veth pair, for containment tests.

The "agent" namespace plays the workstation; the "peer" namespace holds a
control-plane listener and an "outside" listener on their own addresses. All
traffic stays inside the namespaces; both are always deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CP4, OUT4, AGENT4 = "10.213.7.2", "10.213.7.3", "10.213.7.1"
CP6, OUT6, AGENT6 = "fd13:213:7::2", "fd13:213:7::3", "fd13:213:7::1"
CP_PORT, OUT_PORT = 7443, 8080

_SERVE = """
import socket, sys, threading
def serve(host, port):
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.close()
targets = [(h, int(p)) for h, p in (a.rsplit('/', 1) for a in sys.argv[1:])]
for t in targets: threading.Thread(target=serve, args=t, daemon=True).start()
print('ready', flush=True)
sys.stdin.read()
"""

_CHECK = """
import json, socket, sys
out = {}
lo = socket.socket(); lo.bind(('127.0.0.1', 0)); lo.listen(1)
peers = [(h, int(p)) for h, p in (a.rsplit('/', 1) for a in sys.argv[1:])]
targets = [('127.0.0.1', lo.getsockname()[1])] + peers
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=1).close(); out[f'{host}/{port}'] = True
    except OSError:
        out[f'{host}/{port}'] = False
out['loopback'] = out.pop(f'127.0.0.1/{targets[0][1]}')
print(json.dumps(out))
"""


DNS_PORT = 53

_SERVE_DNS = """
import socket, sys, threading
def tcp(host):
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 53)); s.listen(16)
    while True:
        c, _ = s.accept(); c.close()
def udp(host):
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 53))
    while True:
        data, peer = s.recvfrom(512); s.sendto(data, peer)
for host in sys.argv[1:]:
    threading.Thread(target=tcp, args=(host,), daemon=True).start()
    threading.Thread(target=udp, args=(host,), daemon=True).start()
print('ready', flush=True)
sys.stdin.read()
"""

_CHECK_DNS = """
import json, socket, sys
out = {}
for host in sys.argv[1:]:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    try:
        socket.create_connection((host, 53), timeout=1).close(); out[f'tcp {host}'] = True
    except OSError:
        out[f'tcp {host}'] = False
    u = socket.socket(family, socket.SOCK_DGRAM); u.settimeout(1)
    try:
        u.sendto(b'ping', (host, 53)); out[f'udp {host}'] = u.recvfrom(512)[0] == b'ping'
    except OSError:
        out[f'udp {host}'] = False
print(json.dumps(out))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Namespaces:
    agent: str
    peer: str

    def in_agent(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.agent, *args, check=check)

    def reachable(self) -> dict[str, bool]:
        """Which of loopback, control plane and outside the agent namespace can connect to."""
        targets = [f"{CP4}/{CP_PORT}", f"{OUT4}/{OUT_PORT}", f"{CP6}/{CP_PORT}", f"{OUT6}/{OUT_PORT}"]
        done = self.in_agent(sys.executable, "-c", _CHECK, *targets, check=True)
        raw = json.loads(done.stdout)
        names = {
            f"{CP4}/{CP_PORT}": "cp4",
            f"{OUT4}/{OUT_PORT}": "out4",
            f"{CP6}/{CP_PORT}": "cp6",
            f"{OUT6}/{OUT_PORT}": "out6",
        }
        return {names.get(k, k): v for k, v in raw.items()}

    def dns_reachable(self) -> dict[str, bool]:
        """Whether TCP and UDP port 53 of each peer address answer from the agent namespace."""
        done = self.in_agent(sys.executable, "-c", _CHECK_DNS, CP4, OUT4, CP6, OUT6, check=True)
        return dict(json.loads(done.stdout))

    @contextmanager
    def dns_servers(self) -> Iterator[None]:
        """TCP listeners and UDP echo servers on port 53 of every peer address."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.peer, sys.executable, "-c", _SERVE_DNS, CP4, OUT4, CP6, OUT6],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            yield
        finally:
            server.kill()
            server.wait(timeout=5)

    @contextmanager
    def resolv_conf(self, *nameservers: str) -> Iterator[None]:
        """The agent namespace's /etc/resolv.conf (``ip netns exec`` mounts /etc/netns/<ns>/resolv.conf)."""
        directory = Path("/etc/netns") / self.agent
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text("".join(f"nameserver {n}\n" for n in nameservers))
        try:
            yield
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def table_present(self, table: str = "lz_containment") -> bool:
        return self.in_agent("nft", "list", "table", "inet", table).returncode == 0


def _wait_until_all_reachable(ns: Namespaces) -> None:
    """A fresh veth needs a moment before IPv6 neighbour discovery answers; start tests after it does."""
    deadline = time.monotonic() + 10
    while not all(ns.reachable().values()):
        if time.monotonic() > deadline:
            raise RuntimeError("namespaces did not become reachable")
        time.sleep(0.1)


@contextmanager
def namespaces() -> Iterator[Namespaces]:
    tag = uuid.uuid4().hex[:6]
    ns = Namespaces(agent=f"lzA{tag}", peer=f"lzP{tag}")
    server: subprocess.Popen[str] | None = None
    try:
        sh("ip", "netns", "add", ns.agent)
        sh("ip", "netns", "add", ns.peer)
        sh(
            "ip",
            "link",
            "add",
            f"lza{tag}",
            "netns",
            ns.agent,
            "type",
            "veth",
            "peer",
            "name",
            f"lzp{tag}",
            "netns",
            ns.peer,
        )
        for name, dev, v4, v6 in (
            (ns.agent, f"lza{tag}", [AGENT4], [AGENT6]),
            (ns.peer, f"lzp{tag}", [CP4, OUT4], [CP6, OUT6]),
        ):
            sh("ip", "-n", name, "link", "set", "lo", "up")
            for address in v4:
                sh("ip", "-n", name, "addr", "add", f"{address}/29", "dev", dev)
            for address in v6:
                sh("ip", "-n", name, "-6", "addr", "add", f"{address}/64", "dev", dev, "nodad")
            sh("ip", "-n", name, "link", "set", dev, "up")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns.peer,
                sys.executable,
                "-c",
                _SERVE,
                f"{CP4}/{CP_PORT}",
                f"{OUT4}/{OUT_PORT}",
                f"{CP6}/{CP_PORT}",
                f"{OUT6}/{OUT_PORT}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        _wait_until_all_reachable(ns)
        yield ns
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=5)
        sh("ip", "netns", "del", ns.agent, check=False)
        sh("ip", "netns", "del", ns.peer, check=False)
