"""Where the kong agent lives and who may use it: its directories, socket path and
peer credentials."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path

from kong.errors import KongError
from kong.paths import make_private_dir

#: longest socket path the kernel takes (sun_path is 108 bytes on Linux, 104 on macOS)
MAX_SOCKET_PATH = 100


class AgentUnavailable(KongError):
    """The agent cannot run or be reached here; callers fall back to in-process SSH."""


class AgentNotRunning(AgentUnavailable):
    """Nobody listens on the agent's socket (and starting one was not asked for)."""


class AgentUntrusted(KongError):
    """The agent's socket could be another user's: kong sends it nothing and does not fall
    back quietly, so the user learns that someone tried."""


def agent_dir() -> Path:
    """Lock, pid and log file of the agent: under kong's data dir."""
    from kong.config import data_dir

    return data_dir() / "agent"


def _private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter (created 0700 if missing).

    Checked with ``lstat`` after creating it: a directory someone else made first
    (``/tmp/kong-<uid>`` is guessable), a symlink, or one others can write is refused,
    since whoever controls it can put their own socket where kong looks for the agent.
    """
    try:
        make_private_dir(path)
    except OSError as exc:
        raise AgentUnavailable(f"cannot create the agent's directory {path}: {exc}") from exc
    check_socket_dir(path)
    return path


def check_socket_dir(path: Path) -> None:
    """Raise ``AgentUntrusted`` unless ``path`` is a real directory of this user that
    nobody else can write (group/world read bits are taken away quietly)."""
    uid = os.getuid()
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise AgentUntrusted(
            f"{path} is a symbolic link, not a directory: another user may be impersonating "
            f"the kong agent; remove it (`rm {path}`) and try again")
    if not stat.S_ISDIR(st.st_mode):
        raise AgentUntrusted(f"{path} is not a directory: remove it and try again")
    if st.st_uid != uid:
        # The fallback under $TMPDIR can be avoided; the agent dir in the data dir not.
        elsewhere = "" if path == agent_dir() else (
            " or set XDG_RUNTIME_DIR to a private directory")
        raise AgentUntrusted(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {uid}): another user may be "
            f"impersonating the kong agent; have it removed (as root: `rm -r {path}`)"
            f"{elsewhere}")
    if st.st_mode & 0o022:
        raise AgentUntrusted(
            f"{path} is writable by other users, who could plant a fake kong agent there: "
            f"`chmod 700 {path}` and try again")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def check_listener(sock: socket.socket, path: Path) -> None:
    """Raise ``AgentUntrusted`` unless the process listening on ``sock`` is this user's
    (asked of the kernel, SO_PEERCRED / LOCAL_PEERCRED): checked before a byte is sent."""
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        raise AgentUntrusted(
            f"the process listening on {path} runs as uid {uid}, not as you (uid "
            f"{os.getuid()}): refusing to talk to it; remove {path} and try again")


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

