"""The agent's client side: reach (or start) the agent, send one request, relay prompts
to this process's terminal."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kong.errors import ConnectionLost, TransportError
from kong.remote.agent_daemon import _lock
from kong.remote.agent_paths import (
    AgentNotRunning,
    AgentUnavailable,
    _private_dir,
    agent_dir,
    available,
    check_listener,
    check_socket_dir,
    socket_path,
)
from kong.remote.agent_wire import _ERRORS, DEFAULT_IDLE_TIMEOUT, PROTOCOL, recv_frame, send_frame
from kong.remote.target import PromptUnavailable, terminal_prompt


def _connect(path: Path) -> socket.socket:
    """A socket connected to the agent at ``path``, once its directory and the listener's
    uid say it is this user's own agent (else ``AgentUntrusted``, nothing sent)."""
    check_socket_dir(path.parent)  # FileNotFoundError when it does not exist yet
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        check_listener(sock, path)
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

