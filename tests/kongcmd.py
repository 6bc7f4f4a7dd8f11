"""How tests start the ``kong`` command: the interpreter running the tests, never PATH.

A ``kong`` found on PATH may be another install than the one under test (or none,
on a fresh machine where kong lives only in ``.venv``).
"""

from __future__ import annotations

import shlex
import sys

#: argv prefix of the kong command line under test
KONG: list[str] = [sys.executable, "-m", "kong"]

#: the same, as one shell word sequence (for tmux panes and ``sh -c``)
KONG_SHELL: str = shlex.join(KONG)
