"""The kong agent under hostile or broken clients of its own user (issue 17): a real
agent process fed oversized, malformed and silent connections keeps serving a good
client, stays small (its RSS read from /proc), logs one line per bad frame, and
neither a silent connection nor a flood of them keeps an idle agent alive."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from kong.remote import agent
from tests.test_agent import make_home, wait_for  # noqa: F401 - make_home is a fixture

pytestmark = [pytest.mark.timeout(120)]

PROFILES = {"c": {"driver": "slurm", "host": "127.0.0.1", "port": 1}}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def closed_by_agent(s: socket.socket, timeout: float) -> bool:
    """True once the agent hung up on ``s`` (anything it says before is read away)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def agent_log() -> str:
    return (agent.agent_dir() / "agent.log").read_text()


def test_bad_and_silent_clients_do_not_hurt_the_agent(make_home: Any) -> None:  # noqa: F811
    home = make_home(PROFILES)
    pid = int(agent.call({"op": "hello"})["pid"])
    path = agent.socket_path()
    base = rss_mb(pid)

    silent = [raw(path) for _ in range(100)]
    half_header = raw(path)
    half_header.sendall(b"\x00\x00")

    # A 300 MB frame: refused from its header, before the agent reads (or allocates) it.
    huge = raw(path)
    with contextlib.suppress(OSError):  # the agent hangs up rather than read it all
        huge.sendall(struct.pack(">I", 300 << 20) + b"{" * (1 << 20))
    bad = [
        frame(b"not json at all"),
        frame(b"[1, 2, 3]"),
        frame(b"\xff\xfe\x00garbage"),
        frame(json.dumps({"v": agent.PROTOCOL, "op": "run"}).encode()),  # no target
        frame(json.dumps({"v": agent.PROTOCOL, "op": "run", "target": "not-a-mapping",
                          "command": "true"}).encode()),
        frame(json.dumps({"v": agent.PROTOCOL, "op": "no-such-op"}).encode()),
    ]
    answers = []
    for data in bad:
        s = raw(path)
        s.sendall(data)
        s.settimeout(10)
        answers.append(s.recv(65536))
        assert closed_by_agent(s, 10)
        s.close()
    assert all(b'"type":"error"' in a for a in answers), answers
    assert closed_by_agent(huge, 10)

    # Meanwhile a good client is served at once, many times over.
    start = time.monotonic()
    for _ in range(20):
        assert agent.call({"op": "hello"})["pid"] == pid
    assert time.monotonic() - start < 5

    # Silent connections are hung up on after the request timeout, all of them.
    deadline = agent.REQUEST_TIMEOUT + 10
    assert all(closed_by_agent(s, deadline) for s in [half_header, *silent])
    for s in [half_header, huge, *silent]:
        s.close()

    status = agent.status()
    assert status is not None and status["pid"] == pid
    assert status["dropped"] >= len(bad) + 1 + 101, status
    assert rss_mb(pid) < base + 40, (base, rss_mb(pid))

    log = agent_log()
    assert "Traceback" not in log
    assert "a frame of 314572800 bytes (the limit is 16777216)" in log
    assert log.count("dropped a client that sent no request within") == 101
    for needle in ("that is not JSON", "that is not a JSON object (list)",
                   "malformed run request", "unknown op 'no-such-op'"):
        assert needle in log, needle
    said = home.kong("agent", "status").stdout
    assert f"dropped (bad or silent): {status['dropped']}" in said, said


def test_a_frame_at_the_limit_is_still_read(make_home: Any) -> None:  # noqa: F811
    """The cap is what kong really sends: a request of nearly 16 MiB is answered."""
    make_home(PROFILES)
    agent.call({"op": "hello"})
    body = json.dumps({"v": agent.PROTOCOL, "op": "hello", "pad": "x" * (agent.MAX_FRAME - 100)})
    assert len(body) <= agent.MAX_FRAME
    with raw(agent.socket_path()) as s:
        s.sendall(frame(body.encode()))
        s.settimeout(30)
        reply = agent.recv_frame(s)
    assert reply is not None and reply["type"] == "result"


def test_silent_connections_do_not_keep_an_idle_agent_alive(make_home: Any) -> None:  # noqa: F811
    make_home(PROFILES)
    pid = int(agent.call({"op": "hello"}, idle_timeout=2)["pid"])
    assert agent.status()["idle_timeout"] == 2  # type: ignore[index]
    held = [raw(agent.socket_path()) for _ in range(20)]
    started = time.monotonic()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Reaped by nobody (the agent is detached), a zombie counts as gone too.
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    wait_for(gone, timeout=agent.REQUEST_TIMEOUT + 10, what="the idle agent to stop")
    # Idle means no request: the held connections did not count.
    assert time.monotonic() - started < 2 + 3
    for s in held:
        s.close()
    assert "stopping: idle for 2 s" in agent_log()
