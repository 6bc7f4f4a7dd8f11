"""The kong agent: one per user (per data dir), owning the SSH connections of every kong process.

A REPL, a ``kong wait`` and a script each used to open their own connections to a
login node, and with two-factor login each of them asked for a code. The agent
holds one ``HostPool`` per target instead; kong processes reach it over a Unix
socket (``AgentTransport``), so one authenticated connection serves them all and
the per-host budget (``max_connections``, ``connect_interval``) holds across
processes.

Protocol: one request per connection to the socket. Every frame is a 4-byte
big-endian length and a JSON object; bytes travel base64-encoded. The client
sends a request (``op``: hello, run, stream, connect, disconnect, status, stop);
the agent answers with ``result`` or ``error`` frames, and before that may send
``prompt`` frames (a one-time code, a password) that the client answers with
``answers`` or ``cancel``. A stream sends ``data`` frames until ``end``, or
until the client hangs up.

Security: the socket's directory is 0700, the socket 0600, and every peer's uid
is checked (SO_PEERCRED) before a byte of the request is read; nothing listens
on TCP. The client in turn checks the directory (a real one, the user's, that
nobody else can write) and the listener's uid before it sends anything
(``agent_paths``). Requests are capped at ``MAX_FRAME`` (16 MiB) and must arrive
within ``REQUEST_TIMEOUT``; a bad one costs one line in agent.log.

Modules: ``agent_paths`` (where, and who), ``agent_wire`` (frames),
``agent_server`` (the server), ``agent_daemon`` (running it), ``agent_client``.
"""

from __future__ import annotations

import sys

# The agent lives in five modules along its seams; this one keeps the import path
# every caller uses (``from kong.remote import agent``) and ``python -m kong.remote.agent``.
from kong.remote.agent_client import (
    Exchange,
    call,
    connect,
    has_terminal,
    raise_error,
    start,
    status,
    stop_agent,
)
from kong.remote.agent_daemon import main, serve
from kong.remote.agent_paths import (
    MAX_SOCKET_PATH,
    AgentNotRunning,
    AgentUnavailable,
    AgentUntrusted,
    agent_dir,
    available,
    check_listener,
    check_socket_dir,
    peer_uid,
    socket_path,
)
from kong.remote.agent_server import WORK, AgentServer
from kong.remote.agent_wire import (
    DEFAULT_CONNECT_INTERVAL,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_SESSIONS,
    MAX_FRAME,
    MAX_REPLY_FRAME,
    MAX_STDIN,
    PROTOCOL,
    REQUEST_TIMEOUT,
    BadFrame,
    b64,
    encode_frame,
    error_kind,
    no_terminal_message,
    read_frame,
    recv_frame,
    send_frame,
    target_from_json,
    target_to_json,
    unb64,
)

__all__ = [
    "DEFAULT_CONNECT_INTERVAL",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_SESSIONS",
    "MAX_FRAME",
    "MAX_REPLY_FRAME",
    "MAX_SOCKET_PATH",
    "MAX_STDIN",
    "PROTOCOL",
    "REQUEST_TIMEOUT",
    "WORK",
    "AgentNotRunning",
    "AgentServer",
    "AgentUnavailable",
    "AgentUntrusted",
    "BadFrame",
    "Exchange",
    "agent_dir",
    "available",
    "b64",
    "call",
    "check_listener",
    "check_socket_dir",
    "connect",
    "encode_frame",
    "error_kind",
    "has_terminal",
    "main",
    "no_terminal_message",
    "peer_uid",
    "raise_error",
    "read_frame",
    "recv_frame",
    "send_frame",
    "serve",
    "socket_path",
    "start",
    "status",
    "stop_agent",
    "target_from_json",
    "target_to_json",
    "unb64",
]

if __name__ == "__main__":
    sys.exit(main())
