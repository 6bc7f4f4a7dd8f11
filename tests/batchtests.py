"""What the end-to-end tests of the batch drivers (tests/test_slurm.py, test_lsf.py,
test_sge.py) share: small helpers and two scenarios every scheduler must pass the
same way, each driver's test counting with its own scheduler's records (sacct,
qacct, the LSF simulator's job files) what really ran.

The scenarios are not in the driver contract suite (tests/test_driver_contract.py)
because what they assert is the scheduler's own count of submissions, which only
each driver's test knows how to read.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kong import db
from kong.errors import ConnectionLost, TransportError
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.clusters import Cluster

#: a scheduler's count of kong's submissions, per kong job id (or per job token)
Counts = Callable[[], Counter[Any]]


def root(cluster: Cluster, cmd: str) -> str:
    """Run ``cmd`` as root in the cluster's container, outside the transport under test."""
    code, out = cluster.exec(cmd)
    assert code == 0, out
    return out


_COUNT_CALLS = (Path(__file__).parent / "data" / "count_calls.sh").read_text()


class CallLog:
    """The calls of one scheduler command on a test cluster (see ``counted_calls``)."""

    def __init__(self, cluster: Cluster, tool: str):
        self.cluster, self.tool = cluster, tool

    def calls(self) -> list[str]:
        """Each call's arguments (one line per call), oldest first."""
        return root(self.cluster, f"cat /tmp/kong-calls/{self.tool}.log").splitlines()

    def clear(self) -> None:
        root(self.cluster, f": > /tmp/kong-calls/{self.tool}.log")

    def hide(self, batch_id: str) -> None:
        """From now on, leave ``batch_id`` out of calls that name more than one id."""
        root(self.cluster, f"printf '%s\\n' {shlex.quote(batch_id)} "
                           f"> /tmp/kong-calls/{self.tool}.hide")


@contextmanager
def counted_calls(cluster: Cluster, tool: str) -> Iterator[CallLog]:
    """Log every run of the scheduler command ``tool`` on the cluster, by anyone, while
    the block runs: tests/data/count_calls.sh goes ahead of it on PATH (and the real
    one is put back after)."""
    wrapper = f"/usr/local/bin/{tool}"
    root(cluster, f"""set -e
d=/tmp/kong-calls; mkdir -p "$d/real"; chmod 1777 "$d"
orig=$(command -v {tool}); ln -sfn "$(readlink -f "$orig")" "$d/real/{tool}"
if [ "$orig" = {wrapper} ]; then mv {wrapper} "$d/{tool}.orig"; fi
printf '%s' {shlex.quote(_COUNT_CALLS)} > {wrapper}; chmod 755 {wrapper}
: > "$d/{tool}.log"; chmod 666 "$d/{tool}.log"; rm -f "$d/{tool}.hide"
""")
    try:
        yield CallLog(cluster, tool)
    finally:
        root(cluster, f"""d=/tmp/kong-calls; rm -f {wrapper} "$d/{tool}.hide"
if [ -e "$d/{tool}.orig" ] || [ -L "$d/{tool}.orig" ]; then mv "$d/{tool}.orig" {wrapper}; fi
""")


def create(state: State, n: int, command: Callable[[int], str], **kw: Any) -> list[Job]:
    return [state.create_job(command=command(i), **kw) for i in range(n)]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout} s: {what}")
        time.sleep(0.2)


def statuses(jobs: Sequence[Job]) -> Counter[JobStatus]:
    return Counter(j.status for j in jobs)


def read_log(job: Job, which: str) -> str:
    with (job.stdout() if which == "stdout" else job.stderr()) as fh:
        return fh.read()


def round_trips(state: State, action: Callable[[], object], profile: str) -> int:
    stats = state.driver(profile).transport.stats
    before = stats.round_trips
    action()
    return stats.round_trips - before


def counts_of_names(names: Iterable[str]) -> Counter[int]:
    """How many submissions of each kong job of this database a list of scheduler job
    names holds (kong names a job ``kong-<install id>-<job id>-<attempt>``)."""
    pattern = re.compile(rf"^kong-{re.escape(db.install_id())}-(\d+)-\d+$")
    return Counter(int(m.group(1)) for n in names if (m := pattern.match(n)))


def settled_counts(counts: Counts, submissions: int, settle: float = 0.0,
                   timeout: float = 60.0, what: str = "the scheduler") -> Counter[Any]:
    """``counts()`` once it holds at least ``submissions`` (accounting learns of jobs
    a few seconds late), and again after ``settle`` more seconds (a late second record
    of one job would show then)."""
    deadline = time.monotonic() + timeout
    while sum((per_job := counts()).values()) < submissions:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} has {sum(per_job.values())} of {submissions} jobs")
        time.sleep(0.5)
    if settle:
        time.sleep(settle)
        per_job = counts()
    return per_job


def resubmit_failed_only_then_rm(kong: State, cluster: Cluster, counts: Counts,
                                 job_dir: Callable[[Job], str]) -> None:
    """Six jobs, the odd ones fail on their first run only; ``resubmit --failed`` runs
    just those again (a new batch id, the old one in history, the rerun's own stdout),
    the scheduler saw each odd job twice and each even one once, and ``rm -r`` of the
    folder deletes every job dir on the cluster."""
    kong.mkdir("/again")
    marker = f"/tmp/kong-test-{db.install_id()}"
    jobs = create(kong, 6, lambda i: (
        "exit 0" if i % 2 == 0 else
        f'if [ -e {marker}-{i} ]; then echo second; exit 0; fi; touch {marker}-{i}; exit 5'
    ), folder="/again")
    kong.submit_job("/again")
    kong.wait("/again", notify=False, timeout=120)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED, JobStatus.FAILED] * 3
    first_ids = [j.batch_job_id for j in jobs]

    resubmitted = kong.resubmit_job("/again", failed_only=True)
    assert sorted(j.job_id for j in resubmitted) == [j.job_id for j in jobs[1::2]]
    kong.wait("/again", notify=False, timeout=120)
    assert statuses(jobs) == {JobStatus.COMPLETED: 6}
    for i, job in enumerate(jobs):
        data = job.data or {}
        if i % 2 == 0:
            assert job.batch_job_id == first_ids[i]
            assert not data.get("history")
        else:
            assert job.batch_job_id != first_ids[i]
            assert [h["batch_job_id"] for h in data["history"]] == [first_ids[i]]
            assert data["history"][0]["status"] == "FAILED"
            assert data["attempt"] == 2
            assert read_log(job, "stdout") == "second\n"
    assert settled_counts(counts, 9) == {j.job_id: 1 + i % 2 for i, j in enumerate(jobs)}

    dirs = " ".join(job_dir(j) for j in jobs)
    assert root(cluster, f"ls -d {dirs} | wc -l").strip() == "6"
    assert kong.rm("/again", recursive=True)
    assert root(cluster, f"ls -d {dirs} 2>/dev/null | wc -l || true").strip() == "0"
    assert kong.get_folders("/agai[n]") == []  # gone (a glob matches nothing now)


def connection_cut_mid_submit(kong: State, cluster: Cluster, n: int,
                              submitted_so_far: Callable[[], int], counts: Counts,
                              cut_after: int = 10, timeout: int = 180, settle: float = 3.0,
                              command: Callable[[int], str] = lambda i: "true") -> list[Job]:
    """``n`` jobs; every SSH connection to the cluster is killed once the scheduler
    has ``cut_after`` of them: the submit fails, the jobs it saw submitted are
    SUBMITTED, and submitting again reconciles first and submits only the rest, so
    that every job ran and the scheduler got each exactly once (``counts``: the
    scheduler's submissions per job, keyed by job id or by the job's token)."""
    kong.mkdir("/cut")
    jobs = create(kong, n, command, folder="/cut")
    killed: list[int] = []

    def cut_when_submitting() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if submitted_so_far() >= cut_after:
                killed.append(cluster.kill_ssh_connections())
                return
            time.sleep(0.05)

    cutter = threading.Thread(target=cut_when_submitting)
    cutter.start()
    try:
        with pytest.raises((ConnectionLost, TransportError)):
            kong.submit_job("/cut")
    finally:
        cutter.join()
    # (its count can be 0 though connections were cut: a monitor process may exit on
    # its own between the killing of its child and its own kill)
    assert killed, "the connections were not cut"
    adopted = [j for j in jobs if j.status == JobStatus.SUBMITTED]
    print(f"connection cut after {len(adopted)} of {n} submissions were adopted")
    assert 0 < len(adopted) < n, "the cut did not fall in the middle of the submit loop"

    kong.submit_job("/cut")
    assert statuses(jobs) == {JobStatus.SUBMITTED: n}
    kong.wait("/cut", notify=False, timeout=timeout)
    assert statuses(jobs) == {JobStatus.COMPLETED: n}
    assert len({j.batch_job_id for j in jobs}) == n
    per_job = settled_counts(counts, n, settle=settle, timeout=90)
    assert len(per_job) == n and set(per_job.values()) == {1}, "some job was submitted twice"
    return jobs

