"""Running the agent: the lock that makes it one per data dir, the detached daemon and
``python -m kong.remote.agent serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kong.remote.agent_paths import _private_dir, agent_dir, socket_path
from kong.remote.agent_server import AgentServer
from kong.remote.agent_wire import DEFAULT_IDLE_TIMEOUT

log = logging.getLogger(__name__)


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
    pid_fd = os.open(directory / "agent.pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(pid_fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
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
        log.error("kong agent failed: %s: %s", type(exc).__name__, exc)  # one line, no trace
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
