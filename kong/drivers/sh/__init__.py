"""The shell scripts drivers run on job hosts, as package files (shellcheck checks them).

Each script is run as ``sh -c SCRIPT sh ARGS...``; a script may be put together from
fragments (``load("wait_for_submits.sh", "slurm_find.sh")``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent


@cache
def load(*names: str) -> str:
    """The named scripts of this package, joined in order."""
    return "".join((_DIR / name).read_text() for name in names)
