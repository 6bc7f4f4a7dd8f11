"""The SSH transport: the ``Transport`` interface over pooled asyncssh connections.

Each method is one remote command (one round trip) built from an argv with
``shlex.join`` (the helpers live in ``kong.remote.commands``, shared with the
kong agent's transport). The connections themselves live in a
``kong.remote.pool.SSHPool``; transports for the same target share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncssh

from kong.errors import ConnectionLost, TransportError
from kong.remote.base import CommandResult, TransportStats
from kong.remote.commands import (
    DEFAULT_UMASK,
    MAX_COMMAND_BYTES,
    CommandTransport,
    command_line,
)
from kong.remote.pool import HostPool, PromptCallback, SSHPool, SSHTarget, _Conn

#: receive window of a ``run_stream`` channel: 2 MiB (asyncssh's default) in flight
#: caps a download at 40 MB/s with 50 ms of round trip; 16 MiB lets it fill the link
_STREAM_WINDOW = 16 << 20


class SSHTransport(CommandTransport):
    """Runs commands on one SSH target through a shared ``SSHPool``."""

    def __init__(self, target: SSHTarget, *, pool: SSHPool, **host_options: Any) -> None:
        """``host_options`` go to ``HostPool``: max_sessions, max_connections,
        idle_timeout, prompt, channel_wait, probe_after, probe_timeout, connect_interval."""
        self.target = target
        self.label = target.label
        self.stats = TransportStats()
        self._pool = pool
        self._host_options = host_options
        self._key: tuple[Any, ...] = (target, *sorted(host_options.items(), key=lambda kv: kv[0]))
        self._home_lock = threading.Lock()

    def _host(self) -> HostPool:
        # Looked up per call rather than held: after a fork the pool starts afresh.
        return self._pool.host(
            self._key, lambda: HostPool(self.target, stats=self.stats, **self._host_options)
        )

    def connection_count(self) -> int:
        """Connections open right now (for tests and ``kong agent status``)."""
        host = self._host()

        async def _count() -> int:
            return host.connection_count()

        return self._pool.call(_count())

    # -- Transport -------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        line = command_line(argv, self.umask)
        outcome = self._pool.call(self._host().run(line, stdin, timeout))
        return CommandResult(tuple(argv), outcome.exit_code, outcome.stdout, outcome.stderr)

    streams = True

    def run_stream(self, argv: Sequence[str], *, stdin: bytes | None = None) -> Iterator[bytes]:
        """Yield the stdout of ``argv`` as it arrives, on one channel (bulk file data)."""
        line = command_line(argv, self.umask)
        host = self._host()
        entry, proc = self._pool.call(host.open_process(line, stdin, window=_STREAM_WINDOW))
        self.stats.add(round_trips=1, sent=len(line) + len(stdin or b""))
        try:
            while True:
                chunk = self._pool.call(_read_chunk(proc, 1 << 20))
                if not chunk:
                    break
                self.stats.add(received=len(chunk))
                yield chunk
            code, err = self._pool.call(_exit_of(proc))
            if code is None:
                raise host._cut_off(line)
            CommandResult(tuple(argv), code, b"", err).check()
        finally:
            self._pool.call(_close_process(host, entry, proc))

    def stream(self, path: str, offset: int = 0, poll_interval: float = 0.5) -> Iterator[bytes]:
        """Follow ``path`` with ``tail -F`` on one channel; resume after a dropped connection.

        Reading is idempotent, so unlike ``run`` a cut-off stream is reopened
        from the last byte received.
        """
        remote = self.expand(path)
        host = self._host()
        while True:
            argv = ["tail", "-c", f"+{offset + 1}", "-F", "--", remote]
            line = command_line(argv)
            try:
                entry, proc = self._pool.call(host.open_process(line, None))
            except ConnectionLost:
                # Starting tail twice is harmless: try again on a fresh connection.
                time.sleep(poll_interval)
                continue
            self.stats.add(round_trips=1, sent=len(line))
            try:
                while True:
                    chunk = self._pool.call(_read_chunk(proc))
                    if not chunk:
                        break
                    self.stats.add(received=len(chunk))
                    offset += len(chunk)
                    yield chunk
            finally:
                self._pool.call(_close_process(host, entry, proc))
            if not entry.closed:
                # tail itself ended (killed remotely): do not spin on it.
                time.sleep(poll_interval)

    def home(self) -> str:
        host = self._host()
        with self._home_lock:
            if host.home is None:
                out = self.run_checked(["sh", "-c", 'printf "%s" "$HOME"']).text()
                if not out.startswith("/"):
                    raise TransportError(f"{self.label} reports no usable $HOME ({out!r})")
                host.home = out
            return host.home

    def close(self) -> None:
        host = self._host()
        self._pool.call(host.close())


async def _read_chunk(proc: asyncssh.SSHClientProcess[bytes], size: int = 65536) -> bytes:
    try:
        data = await proc.stdout.read(size)
    except (asyncssh.Error, OSError):
        return b""
    return data if isinstance(data, bytes) else b""


async def _exit_of(proc: asyncssh.SSHClientProcess[bytes]) -> tuple[int | None, bytes]:
    """The exit code (None: the connection went before it came) and stderr of ``proc``."""
    try:
        result = await proc.wait(check=False)
    except (asyncssh.Error, OSError):
        return None, b""
    err = result.stderr if isinstance(result.stderr, bytes) else b""
    return result.returncode, err


async def _close_process(
    host: HostPool, entry: _Conn, proc: asyncssh.SSHClientProcess[bytes]
) -> None:
    proc.close()
    with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
        await asyncio.wait_for(proc.wait_closed(), 5)
    await host._release(entry)


_default_pool: SSHPool | None = None
_default_lock = threading.Lock()
_transports: dict[tuple[Any, ...], SSHTransport] = {}

_HOST_OPTIONS = {
    "max_connections": int,
    "idle_timeout": float,
    "prompt": None,
    "channel_wait": float,
    "probe_after": float,
    "probe_timeout": float,
    "connect_interval": float,
}
_OPTIONS = {*_HOST_OPTIONS, "config", "connect_timeout", "pool", "umask"}


def default_pool() -> SSHPool:
    """The process-wide pool that ``ssh_transport`` uses unless given another."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = SSHPool()
        return _default_pool


def ssh_transport(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    jump_host: str | None = None,
    max_sessions: int = 10,
    **options: Any,
) -> SSHTransport:
    """A transport to ``host`` (a name or a ``~/.ssh/config`` alias) from a shared pool.

    Calls with the same settings return the same transport, so they share
    connections and counters. Options: ``max_connections`` (4), ``idle_timeout``
    seconds (300), ``prompt`` (a ``PromptCallback`` for passwords and one-time
    codes; default asks on the terminal), ``config`` (ssh config files instead of
    ``~/.ssh/config``), ``connect_timeout`` seconds (30), ``channel_wait`` seconds
    a refused channel open is retried (120), ``probe_after`` seconds of idleness
    after which a connection is probed before use (60), ``probe_timeout`` (10),
    ``connect_interval`` least seconds between two logins to the host (0),
    ``pool`` (an ``SSHPool`` instead of the process-wide one).
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"ssh_transport() got unknown options: {', '.join(sorted(unknown))}")
    config = options.get("config")
    if isinstance(config, str):
        config = (config,)
    target = SSHTarget(
        host=host,
        port=port,
        user=user,
        identity_file=identity_file,
        known_hosts=known_hosts,
        jump_host=jump_host,
        config=tuple(config) if config is not None else None,
        connect_timeout=float(options.get("connect_timeout", 30.0)),
    )
    pool: SSHPool = options.get("pool") or default_pool()
    settings: dict[str, Any] = {"max_sessions": int(max_sessions)}
    for name, convert in _HOST_OPTIONS.items():
        if name in options:
            settings[name] = convert(options[name]) if convert else options[name]
    umask = str(options.get("umask") or DEFAULT_UMASK)
    key = (id(pool), target, umask, *sorted(settings.items(), key=lambda kv: kv[0]))
    with _default_lock:
        transport = _transports.get(key)
        if transport is None or transport._pool is not pool:
            transport = _transports[key] = SSHTransport(target, pool=pool, **settings)
            transport.umask = umask
        return transport


__all__ = [
    "MAX_COMMAND_BYTES",
    "ConnectionLost",
    "PromptCallback",
    "SSHPool",
    "SSHTarget",
    "SSHTransport",
    "command_line",
    "default_pool",
    "ssh_transport",
]
