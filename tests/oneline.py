"""Run ``kong`` in a real process and check that a refusal is one line."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from tests.kongcmd import KONG


def kong(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``kong ARGS`` in a process of its own, with this test's KONG_HOME."""
    return subprocess.run(
        [*KONG, *args], capture_output=True, text=True, input=stdin,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


def refused(proc: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> str:
    """Assert that kong refused in one ``kong: error:`` line holding ``words``; return it."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("kong: error: "), line
    for word in words:
        assert word in line, (word, line)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    return line


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


__all__: Sequence[str] = ["kong", "ok", "refused"]
