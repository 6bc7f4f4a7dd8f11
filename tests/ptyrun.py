"""Run ``kong`` on a real pseudo-terminal, as a person at a terminal would.

Prompts, spinners and colours only appear on a terminal, so these need one."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Sequence

from tests.kongcmd import KONG


class PtyKong:
    """``kong ARGS`` with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.output = b""
        self.proc = subprocess.Popen(
            [*KONG, *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
            env={**os.environ, "COLUMNS": "120", **(env or {})},
        )
        os.close(slave)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            return False
        if not data:
            return False
        self.output += data
        return True

    def expect(self, text: str, timeout: float = 60) -> str:
        """Read until ``text`` has appeared; returns everything read so far."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} in {self.output!r}"
            if not self._read(0.1) and text.encode() not in self.output:
                raise AssertionError(f"kong ended without {text!r}: {self.output!r}")
        return self.output.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Read to the end; (exit code, everything it printed)."""
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < deadline, self.output
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        code = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code, self.output.decode(errors="replace")


def pty_kong(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    return PtyKong(args, env).finish()
