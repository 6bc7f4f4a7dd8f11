"""Pooled asyncssh connections, served by one event-loop thread.

An ``SSHPool`` owns one event loop running in a daemon thread and, per target
host, a ``HostPool`` of connections that each carry up to ``max_sessions``
channels. Everything asynchronous lives here; ``kong.remote.ssh`` wraps it in
the synchronous ``Transport`` interface. An ``SSHPool`` is a plain object (no
module globals), so the per-user agent (issue 11) can own one and serve it
over a socket unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh

from kong.errors import ConnectionLost, HostKeyError, TransportError
from kong.remote.base import TransportStats
from kong.remote.target import (
    PromptCallback,
    PromptUnavailable,
    SSHTarget,
    keyring_secret,
    store_keyring_secret,
    terminal_prompt,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "HostPool", "PromptCallback", "PromptUnavailable", "SSHPool", "SSHTarget",
    "keyring_secret", "store_keyring_secret", "terminal_prompt",
]

#: seconds a failed login is reported to new callers without trying again
FAILURE_MEMORY = 3.0

#: Tried first when the user's ssh config names no ``Ciphers``: AES-GCM runs in
#: the CPU's AES instructions, where asyncssh's default (chacha20-poly1305) costs
#: about twice the CPU per byte in this process, which is what limits a pull.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def cipher_preference(target: SSHTarget, host: str, kwargs: dict[str, Any]) -> str | None:
    """``encryption_algs`` for a connection to ``host``: AES-GCM first, then
    asyncssh's defaults; None (asyncssh's own choice) when the ssh config gives the
    host a ``Ciphers`` line, which must win, or when this build has no AES-GCM."""
    from asyncssh.config import SSHClientConfig
    from asyncssh.encryption import get_encryption_algs

    if target.config is not None:
        paths = [os.path.expanduser(c) for c in target.config]
    else:
        default = os.path.expanduser("~/.ssh/config")
        paths = [default] if os.access(default, os.R_OK) else []
    try:
        config = SSHClientConfig.load(
            None, paths, False, False, False, getpass.getuser(),
            kwargs.get("username", ()), host, kwargs.get("port", ()))
    except Exception:  # an unreadable config: asyncssh's connect will say why
        return None
    if config.get("Ciphers") is not None:
        return None
    known = {alg.decode("ascii") for alg in get_encryption_algs()}
    fast = [name for name in FAST_CIPHERS if name in known]
    return "^" + ",".join(fast) if fast else None

class _LoopThread:
    """One event loop in a daemon thread; sync code submits coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="kong-ssh-loop", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking transport call was made from the SSH event-loop thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            # Ctrl-C or a timeout here must not leave a channel running unattended.
            fut.cancel()
            raise

    def stop(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class _Conn:
    """One pooled connection (or one being opened: ``conn`` is None until ``ready``)."""

    ready: asyncio.Future[None]
    conn: asyncssh.SSHClientConnection | None = None
    jump: asyncssh.SSHClientConnection | None = None
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)
    #: wall clock, which (unlike the monotonic one) runs on while a laptop sleeps
    last_wall: float = field(default_factory=time.time)
    closed: bool = False
    prompted: bool = False


class _Client(asyncssh.SSHClient):
    """Routes passwords and keyboard-interactive prompts to keyring or the person."""

    def __init__(self, pool: HostPool, entry: _Conn, secret: str | None) -> None:
        self._pool = pool
        self._entry = entry
        self._secret = secret
        self.prompt_error: PromptUnavailable | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._lost(self._entry)

    async def _ask(
        self, instructions: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if self.prompt_error is not None:
            return None
        loop = asyncio.get_running_loop()
        try:
            # In a worker thread: a person typing a code must not stall other hosts.
            answers = await loop.run_in_executor(
                None, self._pool.prompt, self._pool.target.label, instructions, prompts
            )
        except PromptUnavailable as exc:
            self.prompt_error = exc
            return None
        self._entry.prompted = True
        return list(answers)

    async def password_auth_requested(self) -> str | None:
        if self._secret is not None:
            secret, self._secret = self._secret, None
            return secret
        answers = await self._ask("", [(f"Password for {self._pool.target.label}: ", False)])
        return answers[0] if answers else None

    def kbdint_auth_requested(self) -> str:
        return ""

    async def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            # Servers send empty rounds to show messages; answering them asks nobody.
            return []
        if (
            self._secret is not None
            and len(prompts) == 1
            and "password" in prompts[0][0].lower()
        ):
            secret, self._secret = self._secret, None
            return [secret]
        return await self._ask("\n".join(s for s in (name, instructions) if s), prompts)


@dataclass
class RunOutcome:
    exit_code: int
    stdout: bytes
    stderr: bytes


class HostPool:
    """Connections to one target; lives on the loop, every coroutine runs there."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        max_sessions: int = 10,
        max_connections: int = 4,
        idle_timeout: float = 300.0,
        prompt: PromptCallback | None = None,
        channel_wait: float = 120.0,
        probe_after: float = 60.0,
        probe_timeout: float = 10.0,
        stats: TransportStats | None = None,
        connect_interval: float = 0.0,
    ) -> None:
        self.target = target
        self.max_sessions = max_sessions
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.prompt: PromptCallback = prompt or terminal_prompt
        self.channel_wait = channel_wait
        self.probe_after = probe_after
        self.probe_timeout = probe_timeout
        #: least seconds between two logins to this host (sites ban bursts of logins)
        self.connect_interval = connect_interval
        self._last_open = float("-inf")
        self.stats = stats if stats is not None else TransportStats()
        self.home: str | None = None
        self._conns: list[_Conn] = []
        self._cond: asyncio.Condition | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._secret: str | None = None
        self._secret_loaded = False
        self._interactive = False
        self._failure: tuple[float, BaseException] | None = None

    # -- connections ---------------------------------------------------------

    def connection_count(self) -> int:
        return sum(1 for c in self._conns if not c.closed and c.conn is not None)

    def ciphers(self) -> list[str]:
        """The ciphers the open connections negotiated (what a pull's speed hangs on)."""
        return sorted({str(c.conn.get_extra_info("recv_cipher"))
                       for c in self._conns if not c.closed and c.conn is not None})

    def _cap(self) -> int:
        if self._interactive:
            # Every new connection would cost the person another one-time code.
            return max(1, sum(1 for c in self._conns if not c.closed))
        return self.max_connections

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def _lost(self, entry: _Conn) -> None:
        if entry.closed:
            return
        entry.closed = True
        if entry in self._conns:
            self._conns.remove(entry)
        if entry.jump is not None:
            entry.jump.close()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def _load_secret(self) -> str | None:
        if not self._secret_loaded:
            loop = asyncio.get_running_loop()
            self._secret = await loop.run_in_executor(
                None, keyring_secret, self.target.user, self.target.host
            )
            self._secret_loaded = True
        return self._secret

    async def _connect(self, entry: _Conn) -> None:
        target = self.target
        secret = await self._load_secret()
        kwargs = target.connect_kwargs()
        if secret is not None:
            kwargs["passphrase"] = secret
        else:
            # As ssh does: an encrypted IdentityFile may still sign through the agent.
            kwargs["ignore_encrypted"] = True
        ciphers = cipher_preference(target, target.host, kwargs)
        if ciphers is not None:
            kwargs["encryption_algs"] = ciphers
        client = _Client(self, entry, secret)
        try:
            if target.jump_host:
                entry.jump = await self._connect_jump(secret)
                kwargs["tunnel"] = entry.jump
            # connect_interval counts from here: a slow keyring lookup before it
            # must not shorten the gap the server sees.
            self._last_open = time.monotonic()
            conn, _ = await asyncssh.create_connection(
                lambda: client, target.host, **kwargs
            )
        except BaseException as exc:
            if entry.jump is not None:
                entry.jump.close()
            if client.prompt_error is not None:
                raise client.prompt_error from None
            raise self._connect_error(exc) from exc
        entry.conn = conn
        if entry.prompted:
            self._interactive = True
        with self.stats._lock:
            self.stats.connections_opened += 1
        log.debug("connected to %s (%d open)", target.label, self.connection_count() + 1)

    async def _connect_jump(self, secret: str | None) -> asyncssh.SSHClientConnection:
        jump = self.target.jump_host or ""
        user: str | None = None
        port: int | None = None
        host = jump
        if "@" in host:
            user, host = host.rsplit("@", 1)
        if ":" in host:
            host, port_s = host.rsplit(":", 1)
            port = int(port_s)
        jt = SSHTarget(
            host=host,
            port=port,
            user=user,
            identity_file=self.target.identity_file,
            known_hosts=self.target.known_hosts,
            config=self.target.config,
            connect_timeout=self.target.connect_timeout,
            keepalive_interval=self.target.keepalive_interval,
        )
        kwargs = jt.connect_kwargs()
        if secret is not None:
            kwargs["passphrase"] = secret
        ciphers = cipher_preference(jt, host, kwargs)  # every byte crosses it too
        if ciphers is not None:
            kwargs["encryption_algs"] = ciphers
        try:
            return await asyncssh.connect(host, **kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(
                f"host key of jump host {jt.label} is unknown or has changed: {jt.accept_hint()}"
            ) from exc

    def _connect_error(self, exc: BaseException) -> BaseException:
        label = self.target.label
        if isinstance(exc, HostKeyError | TransportError):
            return exc
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return HostKeyError(
                f"host key of {label} is unknown or has changed: {self.target.accept_hint()}"
            )
        refused = isinstance(exc, asyncssh.PermissionDenied) or (
            isinstance(exc, asyncssh.ProtocolError) and "authentication" in str(exc).lower()
        )
        if refused:
            return TransportError(
                f"{label} refused the login: load your key into ssh-agent, set IdentityFile in "
                f"~/.ssh/config, or store the key passphrase or password with "
                f"`keyring set kong USER@HOST`"
            )
        if isinstance(exc, asyncssh.KeyEncryptionError) and "bcrypt" in str(exc):
            return TransportError(
                f"cannot decrypt the SSH key for {label}: OpenSSH-format encrypted keys need "
                f"the `bcrypt` package (pip install bcrypt), or add the key to ssh-agent"
            )
        if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
            return TransportError(
                f"cannot load the SSH key for {label} ({exc}): add it to ssh-agent or store its "
                f"passphrase with `keyring set kong USER@HOST`"
            )
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return TransportError(f"cannot reach {label}: connection timed out")
        if isinstance(exc, OSError | asyncssh.Error):
            return TransportError(f"cannot reach {label}: {exc}")
        return exc

    async def _open_entry(self, entry: _Conn) -> None:
        try:
            await self._connect(entry)
        except BaseException as exc:
            entry.closed = True
            if entry in self._conns:
                self._conns.remove(entry)
            entry.ready.set_exception(exc)
            # Retrieved here so an unawaited failure is not logged as "never retrieved".
            entry.ready.exception()
            self._failure = (time.monotonic(), exc)
        else:
            self._failure = None
            entry.ready.set_result(None)
            self._start_reaper()
        await self._notify()

    async def _acquire(self) -> _Conn:
        cond = self._condition()
        while True:
            async with cond:
                while True:
                    live = [c for c in self._conns if not c.closed]
                    free = [c for c in live if c.in_use < self.max_sessions]
                    if free:
                        entry = min(free, key=lambda c: c.in_use)
                        break
                    # One connection opened at a time: the first may ask the person
                    # for a one-time code, and servers throttle bursts of logins.
                    opening = any(c.conn is None for c in live)
                    if not opening and len(live) < self._cap():
                        pause = self._last_open + self.connect_interval - time.monotonic()
                        if pause > 0:
                            # A channel freed meanwhile is taken instead of a new login.
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(cond.wait(), pause)
                            continue
                        if self._failure is not None and not live:
                            failed_at, error = self._failure
                            # Callers queued behind a failed login share its error
                            # instead of each waiting out another connect timeout.
                            if time.monotonic() - failed_at < FAILURE_MEMORY:
                                raise error
                        entry = _Conn(ready=asyncio.get_running_loop().create_future())
                        self._conns.append(entry)
                        self._last_open = time.monotonic()
                        # A task, not inline: a cancelled caller must not abort a
                        # connection other callers are waiting on.
                        asyncio.get_running_loop().create_task(self._open_entry(entry))
                        break
                    await cond.wait()
                entry.in_use += 1
            try:
                await asyncio.shield(entry.ready)
            except BaseException:
                await self._release(entry)
                raise
            if entry.closed or entry.conn is None:
                await self._release(entry)
                continue
            if not await self._alive(entry):
                await self._release(entry)
                continue
            return entry

    async def _alive(self, entry: _Conn) -> bool:
        """Probe a connection idle for long (a laptop that slept, a NAT that forgot it).

        A dead TCP connection would otherwise swallow the channel open until
        keepalives give up (minutes); the probe is one cheap global request,
        and if it goes unanswered the connection is dropped before anything ran.
        """
        if entry.in_use > 1 or time.time() - entry.last_wall < self.probe_after:
            return True
        probe = getattr(entry.conn, "_make_global_request", None)
        if probe is None:
            return True
        try:
            await asyncio.wait_for(probe(b"keepalive@openssh.com"), self.probe_timeout)
        except (TimeoutError, asyncssh.Error, OSError):
            log.debug("idle connection to %s did not answer; dropping it", self.target.label)
            self._close_entry(entry, abort=True)
            return False
        entry.last_wall = time.time()
        return True

    async def _release(self, entry: _Conn) -> None:
        cond = self._condition()
        async with cond:
            entry.in_use -= 1
            entry.last_used = time.monotonic()
            entry.last_wall = time.time()
            cond.notify_all()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while self._conns:
            await asyncio.sleep(max(0.05, min(self.idle_timeout / 2, 30.0)))
            now = time.monotonic()
            for entry in list(self._conns):
                idle = entry.in_use == 0 and now - entry.last_used >= self.idle_timeout
                if idle and entry.conn is not None and not entry.closed:
                    log.debug("closing idle connection to %s", self.target.label)
                    self._close_entry(entry)

    def _close_entry(self, entry: _Conn, *, abort: bool = False) -> None:
        entry.closed = True
        if entry in self._conns:
            self._conns.remove(entry)
        if entry.conn is not None:
            if abort:
                # No goodbye over a connection that no longer answers.
                entry.conn.abort()
            else:
                entry.conn.close()
        if entry.jump is not None:
            entry.jump.close()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for entry in list(self._conns):
            self._close_entry(entry)
        for entry in list(self._conns):
            if entry.conn is not None:
                with contextlib.suppress(Exception):
                    await entry.conn.wait_closed()
        await self._notify()

    # -- channels --------------------------------------------------------------

    async def open_process(
        self, command: str, stdin: bytes | None, window: int | None = None
    ) -> tuple[_Conn, asyncssh.SSHClientProcess[bytes]]:
        """Open a channel running ``command``; retry only while it cannot have run.
        ``window``: the channel's receive window in bytes, for bulk downloads: more
        than asyncssh's 2 MiB (which caps a stream at 2 MiB per round trip), and
        packets of 256 KiB rather than 32 KiB (asyncssh's cost is per packet; a
        300 MB stream measured twice as fast).

        The caller must ``_release`` the returned entry.
        """
        extra: dict[str, Any] = {} if window is None else {"window": window,
                                                            "max_pktsize": 256 << 10}
        delay = 0.01
        last: BaseException | None = None
        dead = 0
        # Bounded in time, not in tries: on a server whose MaxSessions is below
        # ours, a refused channel waits for a busy one to finish, however long.
        deadline = time.monotonic() + self.channel_wait
        while time.monotonic() < deadline:
            if dead > 2:
                # Fresh connections die at once: retrying would only log in (and
                # maybe ask for a code) again and again.
                raise TransportError(
                    f"{self.target.label} closes the connection right after login: {last}"
                )
            entry = await self._acquire()
            assert entry.conn is not None
            try:
                proc: asyncssh.SSHClientProcess[bytes] = await entry.conn.create_process(
                    command, input=stdin, encoding=None, **extra
                )
                return entry, proc
            except asyncssh.ChannelOpenError as exc:
                await self._release(entry)
                last = exc
                if exc.code == asyncssh.OPEN_REQUEST_SESSION_FAILED and entry.closed:
                    # The exec request was sent before the connection died: it may have run.
                    raise ConnectionLost(
                        f"connection to {self.target.label} dropped while starting `{command[:80]}`"
                    ) from exc
                if entry.closed:
                    dead += 1
                    continue
                # Over MaxSessions: the server frees closed sessions a little late.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as exc:
                await self._release(entry)
                last = exc
                if entry.closed:
                    dead += 1
                    continue
                raise ConnectionLost(
                    f"connection to {self.target.label} dropped while starting `{command[:80]}`"
                ) from exc
        raise TransportError(
            f"cannot open a channel to {self.target.label} within {self.channel_wait:.0f} s: {last}"
        )

    async def run(self, command: str, stdin: bytes | None, timeout: float | None) -> RunOutcome:
        entry, proc = await self.open_process(command, stdin)
        self.stats.add(round_trips=1, sent=len(command) + len(stdin or b""))
        try:
            try:
                result = await proc.wait(check=False, timeout=timeout)
            except asyncssh.TimeoutError as exc:
                proc.close()
                raise TransportError(
                    f"`{command[:80]}` on {self.target.label} timed out after {timeout} s"
                ) from exc
            except (asyncssh.Error, OSError) as exc:
                raise self._cut_off(command) from exc
            out = result.stdout if isinstance(result.stdout, bytes) else b""
            err = result.stderr if isinstance(result.stderr, bytes) else b""
            self.stats.add(received=len(out) + len(err))
            if result.returncode is None:
                raise self._cut_off(command)
            return RunOutcome(result.returncode, out, err)
        finally:
            await self._release(entry)

    def _cut_off(self, command: str) -> ConnectionLost:
        return ConnectionLost(
            f"connection to {self.target.label} dropped while `{command[:80]}` was running; "
            f"it may or may not have taken effect"
        )


class SSHPool:
    """The event-loop thread plus one ``HostPool`` per target; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._thread: _LoopThread | None = None
        self._hosts: dict[tuple[Any, ...], HostPool] = {}

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._pid != os.getpid():
                # After fork the loop thread is gone and the sockets are shared
                # with the parent: start afresh rather than touch either.
                self._thread = None
                self._hosts = {}
                self._pid = os.getpid()
            if self._thread is None:
                self._thread = _LoopThread()
            return self._thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._loop_thread().call(coro, timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop_thread().loop)

    def host(self, key: tuple[Any, ...], factory: Callable[[], HostPool]) -> HostPool:
        self._loop_thread()
        with self._lock:
            pool = self._hosts.get(key)
            if pool is None:
                pool = self._hosts[key] = factory()
            return pool

    def status(self) -> list[dict[str, Any]]:
        """Per target: open connections, busy channels, counters (for ``kong agent status``)."""
        with self._lock:
            thread, hosts = self._thread, list(self._hosts.values())
        if thread is None:
            return []

        async def _status() -> list[dict[str, Any]]:
            return [
                {
                    "host": h.target.label,
                    "connections": h.connection_count(),
                    "channels_in_use": sum(c.in_use for c in h._conns if not c.closed),
                    "ciphers": h.ciphers(),
                    **h.stats.snapshot(),
                }
                for h in hosts
            ]

        return thread.call(_status())

    def close_connections(self) -> None:
        """Close every connection; the pool reopens them on next use."""
        with self._lock:
            thread, hosts = self._thread, list(self._hosts.values())
        if thread is None:
            return

        async def _close_all() -> None:
            await asyncio.gather(*(h.close() for h in hosts), return_exceptions=True)

        with contextlib.suppress(Exception):
            thread.call(_close_all(), timeout=10)

    def shutdown(self) -> None:
        """Close every connection, stop the loop thread and forget all hosts."""
        self.close_connections()
        with self._lock:
            thread, self._thread, self._hosts = self._thread, None, {}
        if thread is not None:
            thread.stop()

