"""Agents and MCP servers of an :class:`Inventory` as their wire messages (``common_pb2.AiAgent``, ``McpServer``)."""

from __future__ import annotations

from lifecyclezero.v1 import common_pb2

from agent.inventory import AiAgent, Inventory, McpServer, SecretRef


def add_agents(message: common_pb2.Inventory, inventory: Inventory) -> None:
    """Append the inventory's agents and MCP servers to ``message``."""
    message.agents.extend(_agent(a) for a in inventory.agents)
    message.mcp_servers.extend(_server(s) for s in inventory.mcp_servers)


def _secrets(secrets: tuple[SecretRef, ...]) -> list[common_pb2.ConfigSecret]:
    return [common_pb2.ConfigSecret(variable=s.variable, detector=s.detector, fingerprint=s.fingerprint)
            for s in secrets]


def _agent(agent: AiAgent) -> common_pb2.AiAgent:
    return common_pb2.AiAgent(
        kind=agent.kind,
        user=agent.user,
        home=agent.home,
        config_paths=list(agent.config_paths),
        running=agent.running,
        pids=list(agent.pids),
        endpoints=[
            common_pb2.ModelEndpoint(url=e.url, host=e.host, location=e.location, engine=e.engine, source=e.source)
            for e in agent.endpoints
        ],
        secrets=_secrets(agent.secrets),
    )


def _server(server: McpServer) -> common_pb2.McpServer:
    return common_pb2.McpServer(
        name=server.name,
        agent=server.agent,
        config_path=server.config_path,
        user=server.user,
        home=server.home,
        scope=server.scope,
        transport=server.transport,
        command=server.command,
        args=list(server.args),
        url=server.url,
        package=server.package,
        capabilities=list(server.capabilities),
        roots=list(server.roots),
        running=server.running,
        enabled=server.enabled,
        pids=list(server.pids),
        parent_agent=server.parent_agent,
        env_names=list(server.env_names),
        secrets=_secrets(server.secrets),
    )
