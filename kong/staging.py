"""Staging: job inputs sent with the submit, job outputs pulled back to the laptop.

Inputs. ``create_job(inputs=[...])`` records, in the job's data, which laptop
files and dirs go into the job's output dir (its working place, as kong-batch
users know it) and under which names. The driver's submit puts them in the
upload it makes anyway (``kong.drivers.inputs``); nothing is read before then,
so a file may still change between create and submit.

Outputs. ``pull`` brings each job's output dir to ``DEST/<folder path>/<job id>/``:
per profile one manifest command for all jobs, a comparison with the local copy
(size + mtime), and one stream of what is new or changed (``kong.remote.transfer``).
A job with no local dir yet skips the manifest: over SSH the host lists it and sends
it on in the same command (``fetch_trees``), so a first pull is one round trip. A
dry run is the manifest and the plan without the stream, so its sizes are what a
pull moves.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kong.errors import ArgumentTypeError, ArgumentValueError, ConfigError, ConnectionLost
from kong.remote import transfer
from kong.remote.transfer import FetchItem, TreeRequest
from kong.remote.transfer_remote import wanted

if TYPE_CHECKING:
    from kong.config import Config
    from kong.drivers.base import DriverBase
    from kong.model.job import Job

# -- inputs -----------------------------------------------------------------------------


def check_inputs(inputs: Any) -> list[dict[str, str]]:
    """``inputs`` as recorded in a job's data: ``[{"local": abs path, "name": rel name}]``.

    Each entry is a path (its name in the job dir is its base name) or a pair
    ``(local path, name in the job dir)``. Refused: missing files, names that
    leave the job dir, two inputs with one name.
    """
    if inputs is None:
        return []
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, (list, tuple)):
        raise ArgumentTypeError("inputs must be a list of paths or (path, name) pairs")
    out: list[dict[str, str]] = []
    names: set[str] = set()
    for entry in inputs:
        if isinstance(entry, (str, Path)):
            local, name = Path(entry), None
        elif (isinstance(entry, (list, tuple)) and len(entry) == 2
              and all(isinstance(x, (str, Path)) for x in entry)):
            local, name = Path(entry[0]), str(entry[1])
        else:
            raise ArgumentTypeError(f"an input must be a path or a (path, name) pair, "
                                    f"not {entry!r}")
        local = local.expanduser().absolute()
        if not local.exists():
            raise ArgumentValueError(f"input {str(local)!r} does not exist")
        if not (local.is_file() or local.is_dir()):
            raise ArgumentValueError(f"input {str(local)!r} is neither a file nor a dir")
        name = check_input_name(name if name is not None else local.name)
        if name in names:
            raise ArgumentValueError(f"two inputs are named {name!r} in the job dir")
        names.add(name)
        out.append({"local": str(local), "name": name})
    return out


def check_input_name(name: str) -> str:
    """A relative path inside the job dir, normalised; refused if it leaves it."""
    if any(c in name for c in "\0\n\r") or not name.strip():
        raise ArgumentValueError(f"bad input name {name!r}")
    norm = posixpath.normpath(name)
    if norm.startswith("/") or norm == "." or norm.split("/")[0] == "..":
        raise ArgumentValueError(f"input name {name!r} must stay inside the job dir")
    return norm


def input_names(job: Job) -> list[str]:
    return [entry["name"] for entry in (job.data or {}).get("inputs", [])]


# -- outputs ----------------------------------------------------------------------------


def default_dest(config: Config) -> Path:
    return Path(config.data_dir) / "pulled"


def job_dest(dest: Path, folder_path: str, job_id: int) -> Path:
    """Where a job's output dir lands under ``dest``: ``DEST/<folder path>/<job id>``."""
    return dest.joinpath(*[p for p in folder_path.split("/") if p], str(job_id))


@dataclass
class JobPull:
    """One job's part of a pull: what comes, and what is already here."""

    job_id: int
    remote_dir: str
    local_dir: Path
    items: list[FetchItem] = field(default_factory=list)
    unchanged: int = 0  # files the local copy has in this version
    missing: bool = False  # the job has no output dir on its host (yet)
    finished: bool = False
    #: nothing of it is here yet: it comes whole, listed and sent in one command, and
    #: ``items`` / ``missing`` are known once that command's listing arrives
    whole: bool = False
    inputs: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(item.to_move for item in self.items)


@dataclass
class PullResult:
    """What ``State.pull`` planned and (unless a dry run) did."""

    dest: Path
    jobs: list[JobPull]
    dry_run: bool
    bytes_moved: int = 0
    files_moved: int = 0
    #: (job id, file) changed on the host while read: pull again to get it
    changed: list[tuple[int, str]] = field(default_factory=list)
    #: (job id, file, why) the host could not read
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    #: job ids whose output dir was removed on the host after the pull
    removed_remote: list[int] = field(default_factory=list)

    @property
    def bytes_planned(self) -> int:
        return sum(j.bytes for j in self.jobs)

    @property
    def files_planned(self) -> int:
        return sum(len(j.items) for j in self.jobs)


def plan(
    driver: DriverBase,
    jobs: Sequence[Job],
    dest_of: dict[int, Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    checksum: bool = False,
    whole_if_new: bool = False,
) -> list[JobPull]:
    """One manifest command for all ``jobs`` of a profile, compared with the local copies.

    ``whole_if_new`` (a pull, not a dry run, on a transport that streams): a job with
    no local dir yet is not listed here; ``run`` lists and sends it in one command."""
    if not driver.reachable:
        ids = ", ".join(str(j.job_id) for j in jobs[:5]) + (" ..." if len(jobs) > 5 else "")
        raise ConfigError(f"cannot pull job(s) {ids}: their profile {driver.profile.name!r} "
                          f"is no longer in the config")
    whole_if_new = whole_if_new and driver.transport.streams
    pulls = []
    for job in jobs:
        pull = JobPull(job.job_id, driver.job_paths(job).output_dir, dest_of[job.job_id],
                       finished=job.status.finished, inputs=tuple(input_names(job)))
        # Nothing to compare with and no part to continue: the dir comes whole.
        pull.whole = whole_if_new and not pull.local_dir.exists()
        pulls.append(pull)
    listed = [p for p in pulls if not p.whole]
    listing = transfer.manifest(driver.transport, [p.remote_dir for p in listed], checksum)
    for pull in listed:
        remote_dir = pull.remote_dir
        files = listing.get(remote_dir)
        if files is None:
            pull.missing = True
            continue
        local_dir = str(pull.local_dir)
        for rf in files:
            # Inputs came from the laptop: they are not results.
            if not wanted(rf.rel, pull.inputs, include, exclude):
                continue
            item = transfer.plan_file(f"{remote_dir}/{rf.rel}", f"{local_dir}/{rf.rel}", rf)
            if item is None:
                pull.unchanged += 1
            else:
                pull.items.append(item)
    return pulls


class _Progress:
    """Bytes done over bytes planned, across every profile's thread; a whole dir's
    bytes join the total when its listing arrives."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self._lock = threading.Lock()
        self._done = 0
        self._total = total
        self._report = report

    def planned(self, n: int) -> None:
        with self._lock:
            self._total += n

    def moved(self, n: int) -> None:
        with self._lock:
            self._done += n
            done, total = self._done, self._total
        if self._report is not None:
            self._report(done, total)


def run(
    driver: DriverBase,
    pulls: Sequence[JobPull],
    result: PullResult,
    lock: threading.Lock,
    progress: _Progress,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    remove_remote: bool = False,
) -> None:
    """Fetch what ``pulls`` planned in one stream, and the dirs that come whole in one
    command; then, if asked, remove the output dirs of finished jobs whose every file
    arrived whole."""
    whole = {p.remote_dir: p for p in pulls if p.whole}

    def listed(coming: dict[str, list[FetchItem] | None]) -> None:
        for remote_dir, items in coming.items():
            pull = whole[remote_dir]
            pull.missing = items is None
            pull.items = items or []
            progress.planned(pull.bytes)

    items = [item for pull in pulls if not pull.whole for item in pull.items]
    report = transfer.FetchReport()
    try:
        if items:
            report = transfer.fetch(driver.transport, items, progress.moved)
        if whole:
            trees = [TreeRequest(p.remote_dir, p.local_dir, p.inputs) for p in whole.values()]
            more = transfer.fetch_trees(driver.transport, trees, include, exclude, listed,
                                        progress.moved)
            report.bytes_moved += more.bytes_moved
            report.done += more.done
            report.changed += more.changed
            report.failed += more.failed
    except ConnectionLost:
        # What arrived is kept in the parts: say how to go on, not which command broke.
        raise ConnectionLost(f"the connection to {driver.transport.label} dropped during "
                             f"the pull; pull again to continue where it stopped") from None
    job_of = {item.remote: pull.job_id for pull in pulls for item in pull.items}
    incomplete = set()
    with lock:
        result.bytes_moved += report.bytes_moved
        result.files_moved += len(report.done)
        for item in report.changed:
            incomplete.add(job_of[item.remote])
            result.changed.append((job_of[item.remote], item.remote))
        for item, why in report.failed:
            incomplete.add(job_of[item.remote])
            result.failed.append((job_of[item.remote], item.remote, why))
    if not remove_remote:
        return
    gone = [p for p in pulls if p.finished and not p.missing and p.job_id not in incomplete]
    if gone:
        driver.transport.remove_trees([p.remote_dir for p in gone])
        with lock:
            result.removed_remote.extend(p.job_id for p in gone)


def execute(
    plans: Sequence[tuple[DriverBase, list[JobPull]]],
    result: PullResult,
    progress: Callable[[int, int], None] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    remove_remote: bool = False,
) -> None:
    """Run the planned pulls of every profile concurrently, ``progress(done, total)``
    in bytes over all of them."""
    tracker = _Progress(result.bytes_planned, progress)
    lock = threading.Lock()
    if len(plans) == 1:
        (driver, pulls), = plans
        run(driver, pulls, result, lock, tracker, include, exclude, remove_remote)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(plans))) as pool:
        futures = [pool.submit(run, d, ps, result, lock, tracker, include, exclude,
                               remove_remote)
                   for d, ps in plans]
        for future in futures:
            future.result()
