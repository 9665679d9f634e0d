"""Agents and MCP servers of an :class:`Inventory` as their wire messages (``common_pb2.AiAgent``, ``McpServer``)."""

from __future__ import annotations

from lifecyclezero.v1 import common_pb2

from agent import bounds
from agent.inventory import AiAgent, Inventory, McpServer, SecretRef


def add_agents(message: common_pb2.Inventory, inventory: Inventory) -> None:
    """Append the inventory's agents and MCP servers to ``message``."""
    message.agents.extend(_agent(a) for a in inventory.agents)
    message.mcp_servers.extend(_server(s) for s in inventory.mcp_servers)


def _secrets(secrets: tuple[SecretRef, ...]) -> list[common_pb2.ConfigSecret]:
    return [common_pb2.ConfigSecret(variable=bounds.text(s.variable, 255), detector=bounds.text(s.detector, 64),
                                    fingerprint=bounds.text(s.fingerprint, 80))
            for s in secrets[: bounds.MAX_LIST]]


def _agent(agent: AiAgent) -> common_pb2.AiAgent:
    return common_pb2.AiAgent(
        kind=bounds.text(agent.kind),
        user=bounds.text(agent.user),
        home=bounds.text(agent.home),
        config_paths=bounds.texts(agent.config_paths),
        running=agent.running,
        pids=list(agent.pids),
        endpoints=[
            common_pb2.ModelEndpoint(url=bounds.text(e.url), host=bounds.text(e.host, 255), location=e.location,
                                     engine=bounds.text(e.engine, 64), source=e.source)
            for e in agent.endpoints
        ],
        secrets=_secrets(agent.secrets),
    )


def _server(server: McpServer) -> common_pb2.McpServer:
    return common_pb2.McpServer(
        name=bounds.text(server.name),
        agent=bounds.text(server.agent),
        config_path=bounds.text(server.config_path),
        user=bounds.text(server.user),
        home=bounds.text(server.home),
        scope=bounds.text(server.scope),
        transport=bounds.text(server.transport),
        command=bounds.text(server.command),
        args=bounds.texts(server.args),
        url=bounds.text(server.url),
        package=bounds.text(server.package),
        capabilities=bounds.texts(server.capabilities),
        roots=bounds.texts(server.roots),
        running=server.running,
        enabled=server.enabled,
        pids=list(server.pids),
        parent_agent=bounds.text(server.parent_agent),
        env_names=bounds.texts(server.env_names),
        secrets=_secrets(server.secrets),
    )
