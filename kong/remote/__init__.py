"""Transports: how drivers reach the host their jobs run on (see ``base.Transport``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kong.remote.base import CommandResult, Transport, TransportStats
from kong.remote.local import LocalTransport

if TYPE_CHECKING:
    from kong.config import Profile

_local: LocalTransport | None = None


def transport_for(profile: Profile) -> Transport:
    """The transport of a profile: this machine when it has no ``host``, else SSH.

    Transports to the same host share connections (the pool lives in
    ``kong.remote.ssh``), whatever the profile.
    """
    global _local
    if profile.host is None:
        if _local is None:
            _local = LocalTransport()
        return _local
    from kong.remote.ssh import ssh_transport

    return ssh_transport(
        profile.host,
        port=profile.port,
        user=profile.user,
        identity_file=profile.identity_file,
        known_hosts=profile.known_hosts,
        jump_host=profile.jump_host,
    )


__all__ = ["CommandResult", "LocalTransport", "Transport", "TransportStats", "transport_for"]
