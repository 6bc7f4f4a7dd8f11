"""Make sure a Docker engine answers: install ``docker.io`` and start ``dockerd`` if needed.

``ensure_engine()`` is idempotent and fast (one ``docker info``) when an engine
already answers. An engine started here is left running for later sessions (other
test sessions on this machine may use it); its log is ``/var/log/kong-dockerd.log``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DOCKERD_ARGS = ["--iptables=false", "--bridge=none"]
LOCK_FILE = Path("/tmp/kong-docker-engine.lock")


class EngineError(RuntimeError):
    """No container engine could be reached or started; the message says why."""


def _log_file() -> Path:
    for directory in (Path("/var/log"), Path("/tmp")):
        if os.access(directory, os.W_OK):
            return directory / "kong-dockerd.log"
    return Path("/tmp/kong-dockerd.log")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (builds and engine start-up of parallel sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def engine_answers(timeout: float = 10.0) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def apt_install(packages: list[str], log: Callable[[str], None] = print) -> None:
    """Install Debian packages (as root, or through password-less sudo)."""
    if shutil.which("apt-get") is None:
        raise EngineError(f"cannot install {' '.join(packages)}: no apt-get on this machine")
    log(f"installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(
            [*_sudo(), *cmd], capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            raise EngineError(
                f"`{' '.join(cmd)}` failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )


def _start_dockerd(log: Callable[[str], None]) -> None:
    log_path = _log_file()
    storage = "overlay2"
    for attempt in ("overlay2", "vfs"):
        storage = attempt
        log(f"starting dockerd (storage driver {storage}), log in {log_path}")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [*_sudo(), "dockerd", *DOCKERD_ARGS, f"--storage-driver={storage}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if engine_answers(timeout=5):
                log(f"dockerd is up (pid {proc.pid}, storage driver {storage})")
                return
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise EngineError(
        f"dockerd did not answer `docker info` (tried overlay2 and vfs storage). "
        f"Last lines of {log_path}:\n{tail}"
    )


def ensure_engine(log: Callable[[str], None] = print) -> None:
    """Return once ``docker info`` answers; install and start the engine if needed.

    Raises EngineError with the reason when that is impossible.
    """
    if engine_answers():
        return
    with file_lock(LOCK_FILE):
        if engine_answers():  # another session started it meanwhile
            return
        missing = [
            pkg
            for cmd, pkg in (("dockerd", "docker.io"), ("docker", "docker.io"))
            if shutil.which(cmd) is None
        ]
        if missing:
            apt_install(sorted(set(missing)), log)
            if engine_answers():  # the package's own service started it
                return
        if shutil.which("dockerd") is None:
            raise EngineError("dockerd is still missing after installing docker.io")
        _start_dockerd(log)
