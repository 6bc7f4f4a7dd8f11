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
on TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kong.errors import ConnectionLost, HostKeyError, KongError, TransportError
from kong.remote.target import PromptUnavailable, SSHTarget, terminal_prompt

log = logging.getLogger(__name__)

#: bumped when frames change meaning; an agent of another version is replaced
PROTOCOL = 1
#: a frame holds at most a command's whole output (a log read in one piece)
MAX_FRAME = 1 << 30
#: longest socket path the kernel takes (sun_path is 108 bytes on Linux, 104 on macOS)
MAX_SOCKET_PATH = 100

DEFAULT_IDLE_TIMEOUT = 1800.0
DEFAULT_MAX_CONNECTIONS = 2
DEFAULT_CONNECT_INTERVAL = 3.0
DEFAULT_MAX_SESSIONS = 10
#: requests that keep the agent from stopping when idle (asking its status does not)
WORK = frozenset({"run", "stream", "connect", "disconnect"})


class AgentUnavailable(KongError):
    """The agent cannot run or be reached here; callers fall back to in-process SSH."""


class AgentNotRunning(AgentUnavailable):
    """Nobody listens on the agent's socket (and starting one was not asked for)."""


# -- where things live ------------------------------------------------------------------


def agent_dir() -> Path:
    """Lock, pid and log file of the agent: under kong's data dir."""
    from kong.config import data_dir

    return data_dir() / "agent"


def _private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter (created 0700 if missing)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise AgentUnavailable(f"cannot create the agent's directory {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise AgentUnavailable(f"{path} is not a directory owned by this user: not using it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def socket_path() -> Path:
    """The agent's socket: in the agent dir, or under the runtime dir when that path is
    too long for a Unix socket (deep test or home directories)."""
    directory = agent_dir()
    path = directory / "agent.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    digest = hashlib.sha256(os.fsencode(directory.resolve())).hexdigest()[:16]
    return base / f"kong-{os.getuid()}" / f"agent-{digest}.sock"


def available() -> str | None:
    """Why the agent cannot run on this platform, or None when it can."""
    if not hasattr(socket, "AF_UNIX"):
        return "this platform has no Unix domain sockets"
    if not hasattr(os, "fork"):
        return "this platform cannot start a detached agent (no fork)"
    return None


# -- frames -----------------------------------------------------------------------------


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return b"" if not text else base64.b64decode(text)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(body)) + body


def _decode(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("frame is not a JSON object")
    return message


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at end of stream."""
    try:
        header = await reader.readexactly(4)
        (size,) = struct.unpack(">I", header)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        return _decode(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode_frame(message))


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame from a blocking socket, or None at end of stream."""

    def exactly(n: int) -> bytes | None:
        chunks = []
        while n:
            try:
                chunk = sock.recv(min(n, 1 << 20))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    header = exactly(4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise TransportError(f"kong agent sent a frame of {size} bytes")
    body = exactly(size)
    return None if body is None else _decode(body)


def target_to_json(target: SSHTarget) -> dict[str, Any]:
    data = dataclasses.asdict(target)
    if data["config"] is not None:
        data["config"] = list(data["config"])
    return data


def target_from_json(data: dict[str, Any]) -> SSHTarget:
    names = {f.name for f in dataclasses.fields(SSHTarget)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if kwargs.get("config") is not None:
        kwargs["config"] = tuple(kwargs["config"])
    return SSHTarget(**kwargs)


def no_terminal_message(label: str, profile: str | None) -> str:
    which = profile or "PROFILE"
    return (
        f"{label} asks for a one-time code or password and this process has no terminal "
        f"to ask on: run `kong connect {which}` from a terminal, then try again"
    )


_ERRORS: dict[str, type[TransportError]] = {
    "lost": ConnectionLost,
    "hostkey": HostKeyError,
    "prompt": PromptUnavailable,
    "transport": TransportError,
}


def error_kind(exc: BaseException) -> str:
    # Most specific first: each is a TransportError.
    for kind in ("lost", "hostkey", "prompt"):
        if isinstance(exc, _ERRORS[kind]):
            return kind
    return "transport"


# -- peer credentials -------------------------------------------------------------------


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if unknowable)."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:  # macOS and the BSDs: struct xucred
        creds = sock.getsockopt(0, local_peercred, struct.calcsize("iih16i"))
        _version, uid = struct.unpack_from("iI", creds)
        return int(uid)
    return None


# -- the server -------------------------------------------------------------------------


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
        self.active = 0
        self.last_active = time.monotonic()
        self.started = time.time()
        self.refused = 0
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
        self.active += 1
        self.requests += 1
        op: Any = None
        try:
            request = await read_frame(reader)
            if request is None:
                return
            op = request.get("op")
            if op != "stop" and request.get("v") != PROTOCOL:
                await self._send(writer, {"type": "error", "kind": "version",
                                          "message": f"agent speaks protocol {PROTOCOL}"})
                return
            handler = {
                "hello": self._op_hello,
                "run": self._op_run,
                "stream": self._op_stream,
                "connect": self._op_connect,
                "disconnect": self._op_disconnect,
                "status": self._op_status,
                "stop": self._op_stop,
            }.get(str(op))
            if handler is None:
                await self._send(writer, {"type": "error", "kind": "transport",
                                          "message": f"kong agent: unknown request {op!r}"})
                return
            try:
                reply = await handler(request, reader, writer)
            except TransportError as exc:
                reply = {"type": "error", "kind": error_kind(exc), "message": str(exc)}
            except (OSError, ConnectionError):
                return  # the client went away: nobody to answer
            except Exception as exc:
                log.exception("request %s failed", op)
                reply = {"type": "error", "kind": "transport",
                         "message": f"kong agent: {type(exc).__name__}: {exc}"}
            if reply is not None:
                await self._send(writer, reply)
        finally:
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
                "connections_opened": stats["connections_opened"],
                "commands": stats["round_trips"],
                "bytes_sent": stats["bytes_sent"],
                "bytes_received": stats["bytes_received"],
                "max_connections": pool.max_connections,
                "connect_interval": pool.connect_interval,
            })
        return {
            "type": "result", "pid": os.getpid(), "socket": str(self.path),
            "uptime": time.time() - self.started, "idle_timeout": self.idle_timeout,
            "requests": self.requests, "refused": self.refused,
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


# -- running the agent ------------------------------------------------------------------


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` held for the life of the process, or None if taken."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def serve(idle_timeout: float, ready: Callable[[str], None] | None = None) -> int:
    """Run the agent in this process until it is stopped or idle; 0 also when another
    agent already serves this data dir."""
    directory = _private_dir(agent_dir())
    path = socket_path()
    _private_dir(path.parent)
    lock = _lock(directory / "agent.lock")
    if lock is None:
        if ready is not None:
            ready("running")
        else:
            log.info("another kong agent already serves %s", directory)
        return 0
    (directory / "agent.pid").write_text(f"{os.getpid()}\n")
    server = AgentServer(path, idle_timeout)
    try:
        asyncio.run(server.serve(ready=(lambda: ready("ok")) if ready else None))
    finally:
        with contextlib.suppress(OSError):
            (directory / "agent.pid").unlink()
        os.close(lock)
    return 0


def _daemon(idle_timeout: float) -> int:
    """Fork a detached agent and return once it listens (exit 0) or has failed (1)."""
    directory = _private_dir(agent_dir())
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            said = pipe.read().decode(errors="replace").strip()
        if said in ("ok", "running"):
            return 0
        print(said or "the agent exited before it was ready", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    log_fd = os.open(directory / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    os.chdir("/")
    _setup_logging()

    def ready(what: str) -> None:
        os.write(write_end, what.encode())
        os.close(write_end)

    try:
        serve(idle_timeout, ready)
    except BaseException as exc:
        log.exception("kong agent failed")
        with contextlib.suppress(OSError):
            ready(f"kong agent failed: {exc}")
        os._exit(1)
    os._exit(0)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    # asyncssh logs every channel at INFO: the agent's log is for people.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kong.remote.agent")
    parser.add_argument("mode", choices=["serve"])
    parser.add_argument("--daemon", action="store_true", help="detach; exit once listening")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    args = parser.parse_args(argv)
    if args.daemon:
        return _daemon(args.idle_timeout)
    _setup_logging()
    return serve(args.idle_timeout)


# -- the client side --------------------------------------------------------------------


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except BaseException:
        sock.close()
        raise
    return sock


def start(idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
    """Start the agent of this data dir unless one answers; raise AgentUnavailable if it
    cannot be started."""
    reason = available()
    if reason is not None:
        raise AgentUnavailable(reason)
    directory = _private_dir(agent_dir())
    path = socket_path()
    _private_dir(path.parent)
    # Many processes starting at once: one spawns, the others find it answering.
    import fcntl

    fd = os.open(directory / "spawn.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            _connect(path).close()
            return
        cmd = [sys.executable, "-m", "kong.remote.agent", "serve", "--daemon",
               "--idle-timeout", str(idle_timeout)]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=60, cwd="/", check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AgentUnavailable(f"cannot start the kong agent: {exc}") from exc
        if proc.returncode != 0:
            lines = (proc.stderr or "").strip().splitlines()
            raise AgentUnavailable(
                f"cannot start the kong agent: {lines[-1] if lines else proc.returncode}")
    finally:
        os.close(fd)


def connect(*, spawn: bool = True, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> socket.socket:
    """A socket connected to the agent, starting the agent first if ``spawn``."""
    path = socket_path()
    try:
        return _connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        if not spawn:
            raise AgentNotRunning(f"the kong agent is not running ({path})") from exc
    except OSError as exc:
        raise AgentUnavailable(f"cannot reach the kong agent at {path}: {exc}") from exc
    start(idle_timeout)
    try:
        return _connect(path)
    except OSError as exc:
        raise AgentUnavailable(f"the kong agent started but does not answer: {exc}") from exc


def has_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


_prompt_lock = threading.Lock()


@contextlib.contextmanager
def _terminal_to_ourselves() -> Iterator[None]:
    """Pause kong's spinners and progress bars while a question is on the terminal:
    their redraws would overwrite the prompt."""
    with _prompt_lock:
        ui = sys.modules.get("kong.ui")
        lives: list[Any] = []
        for name in ("err_console", "console"):
            # rich keeps the running Live displays of a console on this stack.
            lives += list(getattr(getattr(ui, name, None), "_live_stack", None) or [])
        for live in lives:
            with contextlib.suppress(Exception):
                live.stop()
        try:
            yield
        finally:
            for live in lives:
                with contextlib.suppress(Exception):
                    live.start()


class Exchange:
    """One request to the agent, prompts answered on this process's terminal."""

    def __init__(self, request: dict[str, Any], *, spawn: bool = True,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.request = {"v": PROTOCOL, "pid": os.getpid(), "tty": has_terminal(), **request}
        self.spawn = spawn
        self.idle_timeout = idle_timeout
        self.sock: socket.socket | None = None

    def open(self) -> None:
        """Connect and send the request (restarting an agent of another version once)."""
        for attempt in range(2):
            sock = connect(spawn=self.spawn, idle_timeout=self.idle_timeout)
            try:
                send_frame(sock, self.request)
            except OSError as exc:
                sock.close()
                # The agent died between accept and read: nothing was received.
                if attempt:
                    raise AgentUnavailable(
                        f"the kong agent does not take requests: {exc}") from exc
                continue
            self.sock = sock
            return

    def next(self) -> dict[str, Any] | None:
        """The next frame that is not a prompt (prompts are answered here), None at EOF."""
        assert self.sock is not None
        while True:
            frame = recv_frame(self.sock)
            if frame is None or frame.get("type") != "prompt":
                return frame
            try:
                with _terminal_to_ourselves():
                    answers = terminal_prompt(
                        str(frame.get("label")), str(frame.get("instructions") or ""),
                        [(str(t), bool(e)) for t, e in frame.get("prompts") or []])
            except PromptUnavailable as exc:
                send_frame(self.sock, {"type": "cancel", "message": str(exc)})
            except EOFError:
                send_frame(self.sock, {"type": "cancel", "message": "no answer given"})
            else:
                send_frame(self.sock, {"type": "answers", "answers": list(answers)})

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_error(frame: dict[str, Any]) -> None:
    if frame.get("type") == "error":
        kind = str(frame.get("kind"))
        message = str(frame.get("message") or "kong agent error")
        if kind == "version":
            raise _VersionMismatch(message)
        if kind == "refused":
            raise AgentUnavailable(f"the kong agent refused this process: {message}")
        raise _ERRORS.get(kind, TransportError)(message)


class _VersionMismatch(AgentUnavailable):
    pass


def call(request: dict[str, Any], *, spawn: bool = True,
         idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> dict[str, Any]:
    """Send one request and return its result frame (prompts relayed on the way).

    An agent of another protocol version is stopped and replaced once. If the
    agent vanishes after the request was sent, the request may have been carried
    out: this raises ``ConnectionLost`` for ``run``, ``AgentUnavailable`` otherwise.
    """
    for attempt in range(2):
        with Exchange(request, spawn=spawn, idle_timeout=idle_timeout) as ex:
            ex.open()
            frame = ex.next()
        if frame is None:
            if request.get("op") == "run":
                raise ConnectionLost(
                    f"the kong agent stopped while `{str(request.get('command'))[:80]}` was "
                    f"running; it may or may not have taken effect")
            raise AgentUnavailable("the kong agent closed the connection without answering")
        try:
            raise_error(frame)
        except _VersionMismatch:
            if attempt or not spawn:
                raise
            stop_agent()
            continue
        return frame
    raise AgentUnavailable("unreachable")  # pragma: no cover - the loop returns or raises


def stop_agent(timeout: float = 10.0) -> int | None:
    """Ask the agent to stop and wait until its socket is gone; its pid, or None if no
    agent was running."""
    try:
        frame = call({"op": "stop"}, spawn=False)
    except AgentNotRunning:
        return None
    pid = frame.get("pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _connect(socket_path()).close()
        except OSError:
            break
        time.sleep(0.05)
    # The next agent needs the lock, which is free only once this one has exited.
    lock_path = agent_dir() / "agent.lock"
    while time.monotonic() < deadline:
        fd = _lock(lock_path) if lock_path.exists() else None
        if fd is not None or not lock_path.exists():
            if fd is not None:
                os.close(fd)
            break
        time.sleep(0.05)
    return pid if isinstance(pid, int) else None


def status() -> dict[str, Any] | None:
    """The agent's status, or None if it is not running."""
    for attempt in range(3):
        try:
            return call({"op": "status"}, spawn=False)
        except AgentNotRunning:
            return None
        except AgentUnavailable:
            # Accepted by a dying agent's backlog, then dropped: ask again.
            if attempt == 2:
                return None
            time.sleep(0.1)
    return None


if __name__ == "__main__":
    sys.exit(main())
