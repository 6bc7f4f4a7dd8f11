"""``kong wait --notify`` end to end: real local jobs, a real ``kong`` process, apprise's
json:// target posting to an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_state import write_config
from tests.kongcmd import KONG


class Hook:
    """An HTTP server in a thread that records every POST it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hook.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def kong(home: Path, *words: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KONG_HOME": str(home)}
    env.pop("KONG_CONFIG_DIR", None)
    return subprocess.run([*KONG, *words], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_wait_notify_sends_one_notification_with_counts(kong_home: Path, hook: Hook) -> None:
    write_config(kong_home, f"notify:\n  - json://127.0.0.1:{hook.port}/kong-hook\n")
    assert kong(kong_home, "mkdir", "/batch").returncode == 0
    for command in ("sleep 1; true", "true", "sleep 1; exit 4"):
        assert kong(kong_home, "create-job", "-f", "/batch", "--", command).returncode == 0
    assert kong(kong_home, "submit", "/batch").returncode == 0

    proc = kong(kong_home, "wait", "--notify", "--poll-interval", "0.2", "/batch")
    assert proc.returncode == 1, proc.stderr  # one job failed
    assert proc.stdout.strip() == "done: 2 completed, 1 failed"
    time.sleep(0.5)  # anything sent late would arrive by now
    assert len(hook.received) == 1
    path, payload = hook.received[0]
    assert path == "/kong-hook"
    assert payload["title"] == "kong: 3 job(s) done: 2 completed, 1 failed"
    assert payload["message"].startswith("2 completed, 1 failed after ")
    assert payload["type"] == "failure"


def test_wait_notify_success_and_timeout(kong_home: Path, hook: Hook) -> None:
    write_config(kong_home, f"notify:\n  - url: json://127.0.0.1:{hook.port}/done\n"
                 "    on: [finished, failed, timeout]\n")
    assert kong(kong_home, "create-job", "--submit", "--", "true").returncode == 0
    assert kong(kong_home, "wait", "--notify", "-i", "0.1", "1").returncode == 0
    assert [p["title"] for _, p in hook.received] == [
        "kong: 1 job(s) done: 1 completed, 0 failed"]
    assert hook.received[0][1]["type"] == "success"

    assert kong(kong_home, "create-job", "--submit", "--", "sleep 60").returncode == 0
    proc = kong(kong_home, "wait", "--notify", "--timeout", "0.5", "-i", "0.1", "2")
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("kong: timeout:")
    time.sleep(0.3)
    assert len(hook.received) == 2
    assert hook.received[1][1]["title"].startswith("kong: wait TIMEOUT")
    assert "1 running" in hook.received[1][1]["message"] or \
        "1 submitted" in hook.received[1][1]["message"]
    kong(kong_home, "kill", "-y", "2")


def test_wait_without_notify_sends_nothing(kong_home: Path, hook: Hook) -> None:
    write_config(kong_home, f"notify: [json://127.0.0.1:{hook.port}/x]\n")
    assert kong(kong_home, "create-job", "--submit", "--", "true").returncode == 0
    assert kong(kong_home, "wait", "-i", "0.1", "1").returncode == 0
    time.sleep(0.3)
    assert hook.received == []


def test_unreachable_target_is_one_warning(kong_home: Path, hook: Hook) -> None:
    port = hook.port
    hook.close()  # nothing listens there any more
    write_config(kong_home, f"notify: [json://127.0.0.1:{port}/x]\n")
    assert kong(kong_home, "create-job", "--submit", "--", "true").returncode == 0
    proc = kong(kong_home, "wait", "--notify", "-i", "0.1", "1")
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        f"kong: warning: could not deliver the notification to json://127.0.0.1:{port}/..."]


def test_notify_without_targets_warns(kong_home: Path) -> None:
    assert kong(kong_home, "create-job", "--submit", "--", "true").returncode == 0
    proc = kong(kong_home, "wait", "--notify", "-i", "0.1", "1")
    assert proc.returncode == 0
    assert "no `notify:` targets" in proc.stderr
