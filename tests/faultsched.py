"""A FAULT-INJECTING STAND-IN for Slurm: fake ``sbatch``, ``squeue``, ``sacct``,
``scancel`` and ``scontrol`` (shell scripts in tests/faultsched/) put first on the
PATH of a local-transport ``slurm`` profile.

It is no Slurm: it exists to hit, on cue and in seconds, the faults a real cluster
cannot be made to hit (a submit that fails after N jobs, an ``sbatch`` still
running when its client is killed, ``sbatch`` exit 0 with noise instead of an id,
``scancel`` permission denied, a scheduler that forgot a job's history, a status
query or a kill held in flight while another kong process changes the job). Jobs
really run, in the background under ``sh``. The real-cluster tests of the same
behaviour are in tests/test_driver_contract.py and tests/test_slurm.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.kongcmd import KONG

SCRIPTS = Path(__file__).parent / "faultsched"


def await_condition(condition: Callable[[], bool], timeout: float = 30.0,
                    what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class FaultScheduler:
    """The fake scheduler's state dir, and the knobs of its faults."""

    dir: Path
    home: Path

    def control(self, **values: object) -> None:
        """Set faults (see the scripts' headers); later lines win."""
        with open(self.dir / "control", "a") as fh:
            for key, value in values.items():
                fh.write(f"{key}={value}\n")

    def release(self) -> None:
        """Let a submit held by ``hang_at`` go on."""
        (self.dir / "release").touch()

    @property
    def hanging(self) -> bool:
        return (self.dir / "hanging").exists()

    def release_status(self) -> None:
        """Let the status query held by ``hang_status`` go on."""
        (self.dir / "status_release").touch()

    @property
    def status_hanging(self) -> bool:
        """Whether a status query (squeue) is held by ``hang_status``."""
        return (self.dir / "status_hanging").exists()

    def release_kill(self) -> None:
        """Let the scancel held by ``hang_kill`` go on."""
        (self.dir / "kill_release").touch()

    @property
    def kill_hanging(self) -> bool:
        """Whether a scancel is held by ``hang_kill``."""
        return (self.dir / "kill_hanging").exists()

    @property
    def submits(self) -> int:
        path = self.dir / "submits"
        return int(path.read_text()) if path.exists() else 0

    def jobs(self) -> dict[str, str]:
        """Every job the fake scheduler ever queued: batch id -> job name (token)."""
        jobs_dir = self.dir / "jobs"
        if not jobs_dir.exists():
            return {}
        return {d.name: (d / "name").read_text().strip() for d in jobs_dir.iterdir()
                if (d / "name").exists()}

    def state(self, batch_id: str) -> str:
        d = self.dir / "jobs" / batch_id
        if (d / "cancelled").exists():
            return "CANCELLED"
        if (d / "rc").exists():
            return "COMPLETED" if (d / "rc").read_text().strip() == "0" else "FAILED"
        return "RUNNING" if (d / "started").exists() else "PENDING"

    def live(self) -> list[str]:
        """Batch ids of jobs still queued or running."""
        return [b for b in self.jobs() if self.state(b) in ("PENDING", "RUNNING")]

    def env(self) -> dict[str, str]:
        """The environment of a kong process that uses this scheduler."""
        env = dict(os.environ)
        env.update(PATH=f"{SCRIPTS}{os.pathsep}{env.get('PATH', '')}",
                   FAULTSCHED_DIR=str(self.dir), KONG_HOME=str(self.home), KONG_AGENT="0")
        env.pop("KONG_CONFIG_DIR", None)
        return env


def crash_mid_submit(sched: FaultScheduler, folder: str = "/f") -> None:
    """Start ``kong submit`` in its own process and kill -9 it while sbatch hangs."""
    proc = subprocess.Popen([*KONG, "submit", "-r", folder], env=sched.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await_condition(lambda: sched.hanging, what="sbatch to hang")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture
def fault_slurm(request: pytest.FixtureRequest, kong_home: Path, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultScheduler]:
    """A kong home whose default profile ``fake`` is the slurm driver over the local
    transport, with the fault-injecting Slurm first on PATH (for this process and
    the kong processes a test starts with ``sched.env()``). Indirect parameters are
    more options of the profile."""
    sched_dir = tmp_path / "faultsched"
    sched_dir.mkdir()
    config = {
        "default_profile": "fake",
        "profiles": {"fake": {"driver": "slurm", "remote_dir": str(tmp_path / "cluster"),
                              # one sbatch per job unless a test asks for arrays
                              "poll_interval": 0.1, "arrays": False,
                              **getattr(request, "param", {})}},
    }
    (kong_home / "config.yml").write_text(yaml.safe_dump(config))
    sched = FaultScheduler(sched_dir, kong_home)
    for key, value in sched.env().items():
        monkeypatch.setenv(key, value)
    yield sched
    sched.release()
    sched.release_status()
    sched.release_kill()
    # stop what the fake scheduler still runs: its jobs are this test's processes
    for batch_id in sched.live():
        pid_file = sched_dir / "jobs" / batch_id / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), 15)
