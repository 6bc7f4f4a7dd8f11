"""Every shell script kong runs on a job host (kong/**/*.sh) and every fake scheduler
command of the tests passes shellcheck (run-tests.sh installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def scripts() -> list[Path]:
    found = sorted((ROOT / "kong").rglob("*.sh"))
    found += sorted(p for p in (ROOT / "tests" / "faultsched").rglob("*") if p.is_file())
    found += sorted((ROOT / "tests" / "data").glob("*.sh"))
    return found


def test_there_are_scripts_to_check() -> None:
    names = {p.name for p in scripts()}
    assert {"submit_loop.sh", "slurm_query.sh", "lsf_query.sh", "sbatch",
            "count_calls.sh"} <= names


@pytest.mark.parametrize("script", scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (run-tests.sh installs it: apt-get install "
                    "shellcheck)")
    result = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
