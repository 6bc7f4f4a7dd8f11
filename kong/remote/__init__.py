"""Transports: how drivers reach the host their jobs run on (see ``base.Transport``)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from kong.remote.base import CommandResult, Transport, TransportStats
from kong.remote.commands import DEFAULT_UMASK
from kong.remote.local import LocalTransport

if TYPE_CHECKING:
    from kong.config import Config, Profile

_local: dict[int, LocalTransport] = {}


def agent_enabled(config: Config) -> bool:
    """Whether remote profiles go through the kong agent: ``agent:`` in the config
    (default true), overridden by ``KONG_AGENT=0|1`` in the environment."""
    env = os.environ.get("KONG_AGENT", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return bool(config.agent)


def transport_for(profile: Profile, config: Config | None = None) -> Transport:
    """The transport of a profile: this machine when it has no ``host``, else SSH.

    SSH goes through the per-user kong agent (``kong.remote.agent``), which all
    kong processes share, unless the config says ``agent: false`` or the agent
    cannot run here; then through the in-process pool of ``kong.remote.ssh``.
    Either way transports to the same host share connections, whatever the profile.
    """
    umask = profile.umask or DEFAULT_UMASK
    if profile.host is None:
        mask = int(umask, 8)
        if mask not in _local:
            _local[mask] = LocalTransport(mask)
        return _local[mask]
    if config is None:
        from kong.config import Config

        config = Config()
    options: dict[str, Any] = {}
    if umask != DEFAULT_UMASK:
        options["umask"] = umask
    if profile.max_connections is not None:
        options["max_connections"] = profile.max_connections
    if profile.connect_interval is not None:
        options["connect_interval"] = float(profile.connect_interval)
    from kong.remote.agent_transport import agent_transport, say_once
    from kong.remote.target import SSHTarget

    if agent_enabled(config):
        from kong.remote.agent import AgentUnavailable

        target = SSHTarget(
            host=profile.host, port=profile.port, user=profile.user,
            identity_file=profile.identity_file, known_hosts=profile.known_hosts,
            jump_host=profile.jump_host,
        )
        try:
            return agent_transport(target, profile=profile.name, options=options,
                                   idle_timeout=config.agent_idle_timeout)
        except AgentUnavailable as exc:
            say_once(f"kong agent unavailable ({exc}); using in-process SSH connections")
    else:
        say_once("kong agent off (agent: false in the config, or KONG_AGENT=0); "
                 "using in-process SSH connections", logging.INFO)
    from kong.remote.ssh import ssh_transport

    return ssh_transport(
        profile.host,
        port=profile.port,
        user=profile.user,
        identity_file=profile.identity_file,
        known_hosts=profile.known_hosts,
        jump_host=profile.jump_host,
        **options,
    )


__all__ = [
    "CommandResult", "LocalTransport", "Transport", "TransportStats", "agent_enabled",
    "transport_for",
]
