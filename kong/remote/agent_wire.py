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
PROTOCOL = 1
#: a frame holds at most a command's whole output (a log read in one piece)
MAX_FRAME = 1 << 30

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
