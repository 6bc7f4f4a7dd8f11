"""The agent's wire format: length-prefixed JSON frames, and what both sides agree on."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import socket
import struct
from typing import Any

from kong.errors import ConnectionLost, HostKeyError, TransportError
from kong.remote.target import PromptUnavailable, SSHTarget

#: bumped when frames change meaning; an agent of another version is replaced
#: (2: the shared status view, op "poll")
PROTOCOL = 2
#: the largest frame a client may send the agent: a request with its stdin, which
#: AgentTransport keeps under MAX_STDIN (uploads go in several pieces), base64 and all
MAX_FRAME = 16 << 20
#: stdin bytes per request, so that base64 (4/3) and the JSON around it fit in MAX_FRAME
MAX_STDIN = 11 << 20
#: the largest answer a client takes from the agent (its own user's process): a
#: command's whole output; logs are read in pieces of logsync's SYNC_CHUNK
MAX_REPLY_FRAME = 256 << 20
#: seconds a client may take to send its request before the agent hangs up
REQUEST_TIMEOUT = 10.0

DEFAULT_IDLE_TIMEOUT = 1800.0
DEFAULT_MAX_CONNECTIONS = 2
DEFAULT_CONNECT_INTERVAL = 3.0
DEFAULT_MAX_SESSIONS = 10


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return b"" if not text else base64.b64decode(text)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(body)) + body


class BadFrame(ValueError):
    """A frame that is too big or not a JSON object: the connection is dropped."""


def _decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise BadFrame(f"a frame of {len(body)} bytes that is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise BadFrame(f"a frame that is not a JSON object ({type(message).__name__})")
    return message


async def read_frame(reader: asyncio.StreamReader,
                     max_size: int = MAX_FRAME) -> dict[str, Any] | None:
    """The next frame, or None at end of stream; ``BadFrame`` before reading the body
    of one announced bigger than ``max_size`` (memory stays bounded)."""
    try:
        header = await reader.readexactly(4)
        (size,) = struct.unpack(">I", header)
        if size > max_size:
            raise BadFrame(f"a frame of {size} bytes (the limit is {max_size})")
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
    if size > MAX_REPLY_FRAME:
        raise TransportError(f"kong agent sent a frame of {size} bytes")
    body = exactly(size)
    if body is None:
        return None
    try:
        return _decode(body)
    except BadFrame as exc:
        raise TransportError(f"kong agent sent {exc}") from None


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
