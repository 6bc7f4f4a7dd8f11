"""The agent's server: one ``HostPool`` per target, requests relayed from clients."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kong.errors import TransportError
from kong.remote.agent_paths import peer_uid
from kong.remote.agent_wire import (
    DEFAULT_CONNECT_INTERVAL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_SESSIONS,
    PROTOCOL,
    REQUEST_TIMEOUT,
    BadFrame,
    b64,
    encode_frame,
    error_kind,
    no_terminal_message,
    read_frame,
    target_from_json,
    target_to_json,
    unb64,
)
from kong.remote.statusview import Outcome, StatusView, Verdict
from kong.remote.target import PromptUnavailable, SSHTarget

log = logging.getLogger(__name__)

#: seconds a shared status query may run before it counts as failed (statusview)
VIEW_TIMEOUT = 300.0
#: requests that keep the agent from stopping when idle (asking its status does not)
WORK = frozenset({"run", "stream", "connect", "disconnect", "poll"})


@dataclass(eq=False)
class _Client:
    """One request in flight: where its prompts go."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tty: bool
    profile: str | None
    pid: int | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gone: bool = False


@dataclass(eq=False)
class _Host:
    pool: Any  # HostPool (imported lazily: asyncssh is slow to import)
    #: requests that may be waiting for a login, oldest first (the one that caused it)
    waiters: list[_Client] = field(default_factory=list)


class AgentServer:
    """Serves one ``HostPool`` per target on the current event loop."""

    def __init__(self, path: Path, idle_timeout: float) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self.hosts: dict[SSHTarget, _Host] = {}
        #: one shared status view per (target, status query command): see statusview
        self.views: dict[tuple[SSHTarget, str], StatusView] = {}
        self.active = 0
        self.last_active = time.monotonic()
        self.started = time.time()
        self.refused = 0
        #: connections dropped for a bad, oversized or missing request
        self.dropped = 0
        self.requests = 0
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inode: tuple[int, int] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket: we hold the lock, so nobody serves it
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        log.info("kong agent %d listening on %s (idle timeout %.0f s)",
                 os.getpid(), self.path, self.idle_timeout)
        if ready is not None:
            ready()
        watcher = asyncio.create_task(self._watch())
        try:
            await self._stop.wait()
        finally:
            watcher.cancel()
            server.close()
            await asyncio.gather(*(h.pool.close() for h in self.hosts.values()),
                                 return_exceptions=True)
            if self._socket_is_ours():
                with contextlib.suppress(OSError):
                    self.path.unlink()
            log.info("kong agent %d stopped", os.getpid())

    def stop(self, why: str) -> None:
        log.info("stopping: %s", why)
        if self._stop is not None:
            self._stop.set()

    def _socket_is_ours(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._inode

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(self.idle_timeout / 4, 0.05)))
            if not self._socket_is_ours():
                # Removed or replaced (data dir deleted, another agent took over):
                # nobody can reach this agent any more.
                self.stop("the socket is gone")
                return
            if self.active == 0 and time.monotonic() - self.last_active >= self.idle_timeout:
                self.stop(f"idle for {self.idle_timeout:.0f} s")
                return

    # -- hosts --------------------------------------------------------------------------

    def _host(self, request: dict[str, Any]) -> _Host:
        from kong.remote.pool import HostPool

        target = target_from_json(request["target"])
        options = request.get("options") or {}
        host = self.hosts.get(target)
        if host is None:
            pool = HostPool(
                target,
                max_sessions=int(options.get("max_sessions", DEFAULT_MAX_SESSIONS)),
                max_connections=int(options.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
                connect_interval=float(
                    options.get("connect_interval", DEFAULT_CONNECT_INTERVAL)),
                # Connections live as long as the agent: each new one may cost a code.
                idle_timeout=self.idle_timeout,
                prompt=lambda label, instructions, prompts: self._prompt_from_thread(
                    target, label, instructions, prompts),
            )
            host = self.hosts[target] = _Host(pool)
        else:
            # One budget per host, whichever profile reaches it; the latest settings win.
            if "max_connections" in options:
                host.pool.max_connections = int(options["max_connections"])
            if "connect_interval" in options:
                host.pool.connect_interval = float(options["connect_interval"])
        return host

    def _prompt_from_thread(
        self, target: SSHTarget, label: str, instructions: str,
        prompts: Sequence[tuple[str, bool]],
    ) -> list[str]:
        # HostPool asks from a worker thread; the clients' sockets live on the loop.
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            self._relay(target, label, instructions, prompts), self._loop)
        return future.result()

    async def _relay(
        self, target: SSHTarget, label: str, instructions: str,
        prompts: Sequence[tuple[str, bool]],
    ) -> list[str]:
        host = self.hosts[target]
        waiters = list(host.waiters)
        for client in waiters:
            if not client.tty or client.gone:
                continue
            async with client.lock:
                try:
                    client.writer.write(encode_frame({
                        "type": "prompt", "label": label, "instructions": instructions,
                        "prompts": [[text, bool(echo)] for text, echo in prompts],
                    }))
                    await client.writer.drain()
                    answer = await read_frame(client.reader)
                except (OSError, ValueError):
                    answer = None
            if answer is None:
                client.gone = True  # killed while asked: ask the next one
                continue
            if answer.get("type") != "answers":
                raise PromptUnavailable(str(answer.get("message") or "no answer given"))
            log.info("%s: prompt answered by the client of pid %s", label, client.pid)
            return [str(a) for a in answer.get("answers") or []]
        profile = waiters[0].profile if waiters else None
        raise PromptUnavailable(no_terminal_message(label, profile))

    # -- requests -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            self.refused += 1
            log.warning("refused a client of uid %d (the agent serves uid %d only)",
                        uid, os.getuid())
            with contextlib.suppress(OSError):
                writer.write(encode_frame({"type": "error", "kind": "refused",
                                           "message": "the kong agent serves its own user only"}))
                await writer.drain()
            writer.close()
            return
        op: Any = None
        counted = False
        try:
            try:
                # A silent client gets REQUEST_TIMEOUT seconds; it is not counted as
                # active meanwhile, so it cannot keep an idle agent alive either.
                request = await asyncio.wait_for(read_frame(reader), REQUEST_TIMEOUT)
            except TimeoutError:
                self.dropped += 1
                log.warning("dropped a client that sent no request within %.0f s",
                            REQUEST_TIMEOUT)
                return
            except BadFrame as exc:
                self.dropped += 1
                log.warning("dropped a client that sent %s", exc)
                await self._send(writer, {"type": "error", "kind": "transport",
                                          "message": f"kong agent: bad request: {exc}"})
                return
            if request is None:
                return
            self.active += 1
            self.requests += 1
            counted = True
            op = request.get("op")
            if op != "stop" and request.get("v") != PROTOCOL:
                await self._send(writer, {"type": "error", "kind": "version",
                                          "message": f"agent speaks protocol {PROTOCOL}"})
                return
            handler = {
                "hello": self._op_hello,
                "run": self._op_run,
                "poll": self._op_poll,
                "stream": self._op_stream,
                "connect": self._op_connect,
                "disconnect": self._op_disconnect,
                "status": self._op_status,
                "stop": self._op_stop,
            }.get(str(op))
            if handler is None:
                self.dropped += 1
                log.warning("dropped a request with unknown op %.40r", op)
                await self._send(writer, {"type": "error", "kind": "transport",
                                          "message": f"kong agent: unknown request {op!r}"})
                return
            try:
                reply = await handler(request, reader, writer)
            except TransportError as exc:
                reply = {"type": "error", "kind": error_kind(exc), "message": str(exc)}
            except (OSError, ConnectionError):
                return  # the client went away: nobody to answer
            except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
                # A request with fields missing or of the wrong type: the client's fault.
                self.dropped += 1
                log.warning("dropped a malformed %.40s request: %s: %s",
                            op, type(exc).__name__, exc)
                reply = {"type": "error", "kind": "transport",
                         "message": f"kong agent: malformed {op} request: {exc!r}"}
            except Exception as exc:
                # One line, as every entry of agent.log: a person reads it.
                log.error("request %s failed: %s: %s", op, type(exc).__name__, exc)
                reply = {"type": "error", "kind": "transport",
                         "message": f"kong agent: {type(exc).__name__}: {exc}"}
            if reply is not None:
                await self._send(writer, reply)
        finally:
            if counted:
                self.active -= 1
            if op in WORK:
                self.last_active = time.monotonic()
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        # A client killed mid-command is no error of the agent's: drop its answer.
        with contextlib.suppress(OSError, ConnectionError):
            writer.write(encode_frame(message))
            await writer.drain()

    def _client(self, request: dict[str, Any], reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> _Client:
        return _Client(reader, writer, bool(request.get("tty")), request.get("profile"),
                       request.get("pid"))

    @contextlib.contextmanager
    def _waiting(self, host: _Host, client: _Client) -> Any:
        if client.tty:
            failure = host.pool._failure
            # A login that failed for want of a terminal must not be replayed to a
            # process that has one (HostPool shares recent failures with new callers).
            if failure is not None and isinstance(failure[1], PromptUnavailable):
                host.pool._failure = None
        host.waiters.append(client)
        try:
            yield
        finally:
            host.waiters.remove(client)

    async def _op_hello(self, request: dict[str, Any], reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> dict[str, Any]:
        return {"type": "result", "pid": os.getpid(), "protocol": PROTOCOL}

    async def _op_run(self, request: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> dict[str, Any]:
        host = self._host(request)
        client = self._client(request, reader, writer)
        timeout = request.get("timeout")
        with self._waiting(host, client):
            # Not cancelled when the client goes away: a submit that started must
            # finish, or the job's token could not be reconciled.
            outcome = await asyncio.shield(host.pool.run(
                str(request["command"]), unb64(request.get("stdin")) or None,
                None if timeout is None else float(timeout)))
        return {"type": "result", "exit_code": outcome.exit_code,
                "stdout": b64(outcome.stdout), "stderr": b64(outcome.stderr)}

    async def _op_poll(self, request: dict[str, Any], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> dict[str, Any]:
        """A status query shared by every client: see ``kong.remote.statusview``."""
        host = self._host(request)
        client = self._client(request, reader, writer)
        command = str(request["command"])
        key = (host.pool.target, command)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = StatusView(command)
        verdict = Verdict(
            done_line=request.get("done_line"), error_prefix=request.get("error_prefix"),
            throttle_words=tuple(str(w).lower() for w in request.get("throttle_words") or ()))
        timeout = float(request.get("timeout") or VIEW_TIMEOUT)

        async def run(stdin: bytes) -> Outcome:
            with self._waiting(host, client):
                try:
                    outcome = await asyncio.shield(host.pool.run(command, stdin, timeout))
                except TransportError as exc:
                    if "timed out after" not in str(exc):
                        raise
                    # Every client waits on this run: a hung scheduler is a failed
                    # query (the view backs off), not a hang of every kong process.
                    return Outcome(124, b"", str(exc).encode())
            return Outcome(outcome.exit_code, outcome.stdout, outcome.stderr)

        cap = request.get("cap")
        answer = await view.ask(
            [str(i) for i in request["ids"]], run, verdict, floor=float(request["floor"]),
            cap=None if cap is None else float(cap), force=bool(request.get("force")),
            submitted=bool(request.get("submitted")))
        return {"type": "result", **answer.to_json(), "stdout": b64(answer.outcome.stdout),
                "stderr": b64(answer.outcome.stderr)}

    async def _op_connect(self, request: dict[str, Any], reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> dict[str, Any]:
        host = self._host(request)
        client = self._client(request, reader, writer)
        before = host.pool.stats.connections_opened
        with self._waiting(host, client):
            outcome = await host.pool.run("true", None, 60.0)
        if outcome.exit_code != 0:
            raise TransportError(f"`true` failed on {host.pool.target.label}")
        return {"type": "result", "connections": host.pool.connection_count(),
                "opened": host.pool.stats.connections_opened - before}

    async def _op_disconnect(self, request: dict[str, Any], reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> dict[str, Any]:
        target = target_from_json(request["target"])
        host = self.hosts.get(target)
        if host is None:
            return {"type": "result", "closed": 0}
        closed = host.pool.connection_count()
        await host.pool.close()
        log.info("%s: %d connection(s) closed on request", target.label, closed)
        return {"type": "result", "closed": closed}

    async def _op_status(self, request: dict[str, Any], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> dict[str, Any]:
        hosts = []
        for target, host in self.hosts.items():
            pool = host.pool
            stats = pool.stats.snapshot()
            hosts.append({
                "host": target.label,
                "target": target_to_json(target),
                "connections": pool.connection_count(),
                "channels_in_use": sum(c.in_use for c in pool._conns if not c.closed),
                "ciphers": pool.ciphers(),
                "connections_opened": stats["connections_opened"],
                "commands": stats["round_trips"],
                "bytes_sent": stats["bytes_sent"],
                "bytes_received": stats["bytes_received"],
                "max_connections": pool.max_connections,
                "connect_interval": pool.connect_interval,
            })
        views = [{"host": target.label, "command": command[:80], **view.summary()}
                 for (target, command), view in self.views.items()]
        return {
            "type": "result", "pid": os.getpid(), "socket": str(self.path), "views": views,
            "uptime": time.time() - self.started, "idle_timeout": self.idle_timeout,
            "requests": self.requests, "refused": self.refused, "dropped": self.dropped,
            "clients": self.active - 1, "hosts": hosts,
        }

    async def _op_stop(self, request: dict[str, Any], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> dict[str, Any]:
        assert self._loop is not None
        self._loop.call_soon(self.stop, "asked to stop")
        return {"type": "result", "pid": os.getpid()}

    async def _op_stream(self, request: dict[str, Any], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> dict[str, Any] | None:
        from kong.remote.ssh import _close_process, _read_chunk

        host = self._host(request)
        client = self._client(request, reader, writer)
        with self._waiting(host, client):
            entry, proc = await host.pool.open_process(str(request["command"]), None)
        host.pool.stats.add(round_trips=1, sent=len(str(request["command"])))
        # The client ends a stream by hanging up; watch for that while forwarding.
        hangup = asyncio.ensure_future(read_frame(reader))
        try:
            while True:
                chunk_task = asyncio.ensure_future(_read_chunk(proc))
                done, _ = await asyncio.wait({chunk_task, hangup},
                                             return_when=asyncio.FIRST_COMPLETED)
                if hangup in done:
                    chunk_task.cancel()
                    if not hangup.cancelled():
                        hangup.exception()  # a bad frame also ends it: retrieved, not logged
                    return None
                chunk = chunk_task.result()
                if not chunk:
                    return {"type": "end", "lost": entry.closed}
                host.pool.stats.add(received=len(chunk))
                writer.write(encode_frame({"type": "data", "data": b64(chunk)}))
                await writer.drain()
        finally:
            hangup.cancel()
            await _close_process(host.pool, entry, proc)
