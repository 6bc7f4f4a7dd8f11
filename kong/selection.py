"""What a JobSpec or folder path selects, and the folder operations of the State API.

``State`` inherits these methods; they only read and write folder and job rows (no
driver is involved). JobSpecs:

  * a job id (``1234`` or ``"1234"``): that job, wherever it is;
  * ``"dir/1234"`` (``"f2/2"``, ``"../4"``, ``"/a/b/17"``): that job, which must be in
    ``dir`` (or below it with ``recursive``);
  * a range ``"a..b"``: every job with an id from a to b inclusive, anywhere;
    ``"dir/a..b"``: the same, restricted to the folder ``dir``. A range that selects
    nothing selects ``[]`` (as in kong-batch); the CLI and the REPL set
    ``empty_range_is_error`` and say "no jobs in range ...";
  * a folder path (absolute, relative, with ``..``): the jobs directly in it, or
    in it and all folders below with ``recursive``;
  * ``"dir/*"``: the jobs directly in ``dir``;
  * a glob on folder names (``"runs/2024-*"``): the jobs of every matching folder;
  * a ``Job`` instance.

``..`` of the root folder is the root folder, as in a POSIX shell.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from kong import db, lifecycle
from kong.errors import (
    ArgumentTypeError,
    CannotCreateError,
    CannotRemoveRoot,
    FolderError,
    IsAFolderError,
    JobSpecError,
    MissingParentError,
    NoSuchJobOrFolder,
)
from kong.jobspec import MAX_DEPTH, Spec, check_text, is_glob, job_id, shown
from kong.model.folder import Folder, FolderDoesNotExist, check_folder_name, subtree_ids
from kong.model.job import Job, JobDoesNotExist

JobSpec = str | int | Job


def status_or_reason_matches(word: str, status: str, end_reason: str | None) -> bool:
    """Whether a job with ``status`` (a JobStatus name) and ``end_reason`` is what a
    user's ``-s WORD`` asks for: a status (``failed``), an end reason (``timeout``,
    ``out_of_memory``, ``exit(3)``), or ``exit``/``signal`` for any code of that kind."""
    wanted = word.strip().upper().replace("-", "_")
    if wanted == status:
        return True
    if end_reason is None:
        return False
    return wanted == end_reason or (wanted in ("EXIT", "SIGNAL")
                                    and end_reason.startswith(f"{wanted}("))


class MoveResult(list[Job | Folder]):
    """The jobs and folders ``mv`` moved; ``skipped`` names those a bulk move left
    where they were, each with the reason (``mv("*", "f2")`` cannot move ``f2``)."""

    def __init__(self, moved: Sequence[Job | Folder], skipped: Sequence[tuple[Folder, str]]):
        super().__init__(moved)
        self.skipped = list(skipped)


class Selection:
    """Folder navigation and JobSpec selection; mixed into ``State``."""

    cwd: Folder
    #: the CLI and the REPL: a range that selects no job is an error there
    empty_range_is_error: bool = False

    # -- folders ------------------------------------------------------------------------

    def _folder(self, path: str | Folder) -> Folder:
        if isinstance(path, Folder):
            return path
        text = check_text(path, "folder path", FolderError)
        folder = Folder.find_by_path(text, self.cwd)
        if folder is None:
            raise FolderDoesNotExist(f"no such folder: {shown(text)}")
        return folder

    @contextmanager
    def pushd(self, folder: Folder | str) -> Iterator[None]:
        previous = self.cwd
        self.cwd = self._folder(folder)
        try:
            yield
        finally:
            self.cwd = previous

    def cd(self, target: str | Folder = ".") -> None:
        if isinstance(target, str) and target == "":
            self.cwd = Folder.get_root()
            return
        self.cwd = self._folder(target)

    def get_folders(self, pattern: str) -> list[Folder]:
        """The folders a path matches; each component may be a glob on folder names.

        A path that leads to no folder raises ``NoSuchFolder`` (a ``ValueError``, as in
        kong-batch); a glob that matches no folder gives ``[]``.
        """
        text = check_text(pattern, "folder pattern", FolderError)
        folders = self._match_folders(text)
        if folders is None:
            raise FolderDoesNotExist(f"no such folder: {shown(text)}")
        return folders

    def _match_folders(self, pattern: str) -> list[Folder] | None:
        """The folders ``pattern`` matches; None when a part before any glob is missing."""
        if not is_glob(pattern):
            folder = Folder.find_by_path(pattern, self.cwd)
            return [folder] if folder is not None else None
        current = [Folder.get_root() if pattern.startswith("/") else self.cwd]
        globbed = False
        for part in pattern.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = [f.parent or f for f in current]
            elif is_glob(part):
                globbed = True
                current = [
                    c for f in current for c in f.subfolders() if fnmatch.fnmatchcase(c.name, part)
                ]
            else:
                current = [c for f in current if (c := f.subfolder(part)) is not None]
            if not current:
                return [] if globbed else None
        unique = {f.folder_id: f for f in current}
        return list(unique.values())

    def mkdir(
        self, path: str, exist_ok: bool = False, create_parent: bool = False
    ) -> Folder | None:
        """Make a folder. Returns it (the existing one with ``exist_ok``).

        All folders ``create_parent`` makes are written in one transaction: a refusal
        halfway leaves none of them behind.
        """
        db.require_writable()  # before anything is done that could not be recorded
        text = check_text(path, "folder path", FolderError)
        existing = Folder.find_by_path(text, self.cwd)
        if existing is not None:
            if exist_ok:
                return existing
            raise CannotCreateError(f"folder exists: {shown(text)}")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if not parts:
            raise CannotCreateError(f"cannot create {text!r}")
        parent = Folder.get_root() if text.startswith("/") else self.cwd
        index = 0
        while index < len(parts) - 1:
            part = parts[index]
            below = (parent.parent or parent) if part == ".." else parent.subfolder(part)
            if below is None:
                break
            parent, index = below, index + 1
        missing = parts[index:]
        if ".." in missing:
            raise CannotCreateError(
                f"cannot create {shown(text)}: '..' of a folder that does not exist"
            )
        if len(missing) > 1 and not create_parent:
            head = ("/" if text.startswith("/") else "") + "/".join(parts[:-1])
            raise MissingParentError(shown(head))
        for part in missing:
            check_folder_name(part)
        if _depth(parent) + len(missing) > MAX_DEPTH:
            raise CannotCreateError(
                f"cannot create {shown(text[:60])}{'...' if len(text) > 60 else ''}: "
                f"folders nest at most {MAX_DEPTH} levels deep"
            )
        with db.write() as s:
            for part in missing:
                folder = Folder(name=part, parent_id=parent.folder_id)
                s.add(folder)
                s.flush()
                parent = folder
        forget_collections()
        return parent

    def mv(
        self, source: str | int | Job | Folder, dest: str | Folder
    ) -> MoveResult:
        """Move jobs or folders into a folder, or rename a folder (``dest`` does not exist).

        A glob (``"*"``, ``"runs/*"``) moves every job and folder it selects that can
        move; the ones that cannot (the destination itself, a folder that holds the
        destination, a name already taken there) stay and are listed in the result's
        ``skipped``. A single source that cannot move is refused.
        """
        db.require_writable()  # before anything is done that could not be recorded
        if isinstance(source, bool) or not isinstance(source, (str, int, Job, Folder)):
            raise ArgumentTypeError(f"mv: the source must be a JobSpec, a Job or a Folder, "
                                    f"not {type(source).__name__}: {source!r}")
        if not isinstance(dest, (str, Folder)):
            raise ArgumentTypeError(f"mv: the destination must be a folder path or a Folder, "
                                    f"not {type(dest).__name__}: {dest!r}")
        folders, jobs, bulk = self._mv_sources(source)
        dest_folder = self._folder(dest) if isinstance(dest, Folder) else None
        if isinstance(dest, str):
            dest_text = check_text(dest, "destination", FolderError)
            dest_folder = Folder.find_by_path(dest_text, self.cwd)
            if dest_folder is None:
                if jobs or len(folders) != 1 or bulk:
                    raise FolderDoesNotExist(f"no such folder: {shown(dest_text)}")
                return MoveResult([self._rename(folders[0], dest_text)], [])
        assert dest_folder is not None

        skipped: list[tuple[Folder, str]] = []
        movable: list[Folder] = []
        arriving: set[str] = set()  # names this move brings into dest (a glob may repeat one)
        for folder in folders:
            reason = self._move_refusal(folder, dest_folder, folder.name)
            if reason is None and folder.name in arriving:
                target = f"{dest_folder.path.rstrip('/')}/{folder.name}"
                reason = f"{target} is taken by another moved folder"
            if reason is None:
                arriving.add(folder.name)
                movable.append(folder)
            elif bulk:
                skipped.append((folder, reason))
            else:
                raise FolderError(reason)
        if bulk and not movable and not jobs and skipped:
            raise FolderError("; ".join(reason for _, reason in skipped))
        parent_id = dest_folder.folder_id

        def move_folders() -> None:  # folder rows, in the jobs' write
            for folder in movable:
                folder.parent_id = parent_id

        lifecycle.move(jobs, dest_folder, same_transaction=move_folders)
        for obj in [*movable, *jobs]:
            db.session().expire(obj, ["parent"] if isinstance(obj, Folder) else ["folder"])
        forget_collections()
        return MoveResult([*movable, *jobs], skipped)

    def _mv_sources(self, source: str | int | Job | Folder) -> tuple[list[Folder], list[Job], bool]:
        """(folders, jobs, bulk) that ``source`` names; bulk for globs."""
        if isinstance(source, Folder):
            return [source], [], False
        if isinstance(source, (Job, int)):
            return [], self.get_jobs(source), False
        spec = Spec.parse(source)
        if spec.last == "*":  # everything in the folder: its subfolders and its jobs
            return self._match_folders(spec.text) or [], self.get_jobs(spec.text), True
        if spec.selects_jobs_only:
            return [], self.get_jobs(spec.text), False
        folders = self._match_folders(spec.text)
        if not folders:
            return [], self.get_jobs(spec.text), False
        return folders, [], is_glob(spec.text)

    def _rename(self, folder: Folder, dest: str) -> Folder:
        head, _, new_name = dest.rstrip("/").rpartition("/")
        check_folder_name(new_name)
        parent = self._folder(head or ("/" if dest.startswith("/") else "."))
        reason = self._move_refusal(folder, parent, new_name)
        if reason is not None:
            raise FolderError(reason)
        with db.write():
            folder.name = new_name
            folder.parent_id = parent.folder_id
        db.session().expire(folder, ["parent"])
        forget_collections()
        return folder

    def _move_refusal(self, folder: Folder, parent: Folder, name: str) -> str | None:
        """Why ``folder`` cannot become ``parent/name``; None when it can."""
        if folder.parent_id is None:
            return "cannot move the root folder"
        if folder.folder_id == parent.folder_id:
            return f"{folder.path} is the destination"
        if parent.folder_id in folder.descendant_ids():
            return f"cannot move {folder.path} into itself ({parent.path})"
        clash = parent.subfolder(name)
        if clash is not None and clash.folder_id != folder.folder_id:
            return f"{clash.path} already exists"
        return None

    # -- selecting jobs -----------------------------------------------------------------

    def get_jobs(self, name: JobSpec, recursive: bool = False) -> list[Job]:
        """The jobs a JobSpec selects (see the module doc). Unknown ids, bad ranges and
        missing folders raise a ``JobSpecError``/``FolderError``; an empty range is []."""
        if isinstance(name, Job):
            return [name]
        if isinstance(name, bool) or not isinstance(name, (int, str)):
            raise ArgumentTypeError(
                f"not a JobSpec: {name!r} (a job id, a range, a folder path or a Job)"
            )
        if isinstance(name, int):
            return [self._job(job_id(name))]
        spec = Spec.parse(name)
        if (number := spec.job_id) is not None:
            if spec.folder is None:
                return [self._job(number)]
            folder = self._folder(spec.folder)
            job = self._job(number)
            inside = folder.descendant_ids() if recursive else [folder.folder_id]
            if job.folder_id not in inside:
                raise JobDoesNotExist(f"no job {number} in {folder.path}")
            return [job]
        if (span := spec.range) is not None:
            query = select(Job).where(Job.job_id.between(span.start, span.end))
            if spec.folder is not None:
                query = query.where(self._in_folder(self._folder(spec.folder), recursive))
            jobs = list(db.session().scalars(query.order_by(Job.job_id)))
            if not jobs and self.empty_range_is_error:
                raise JobSpecError(f"no jobs in range {shown(spec.text)}")
            return jobs
        if spec.last == "*":
            folders = self._match_folders(spec.folder or ".")
            if not folders:
                raise FolderDoesNotExist(f"no such folder: {shown(spec.folder or '.')}")
            return self._jobs_in(folders, recursive)
        folders = self._match_folders(spec.text)
        if not folders:
            raise NoSuchJobOrFolder(f"no such folder or job: {shown(spec.text)}")
        return self._jobs_in(folders, recursive)

    def _job(self, number: int) -> Job:
        # populate_existing: another process may have changed the row since we loaded it
        job = db.session().get(Job, number, populate_existing=True)
        if job is None:
            raise JobDoesNotExist(f"no job with id {number}")
        return job

    def _in_folder(self, folder: Folder, recursive: bool) -> Any:
        if not recursive:
            return Job.folder_id == folder.folder_id
        return Job.folder_id.in_(subtree_ids(folder.folder_id))

    def _jobs_in(self, folders: Sequence[Folder], recursive: bool) -> list[Job]:
        s = db.session()
        jobs: list[Job] = []
        for folder in folders:
            query = select(Job).where(self._in_folder(folder, recursive)).order_by(Job.job_id)
            jobs.extend(s.scalars(query))
        if len(folders) > 1:
            jobs = list({j.job_id: j for j in jobs}.values())
        return jobs

    def select_jobs(self, names: JobSpec | Sequence[JobSpec], recursive: bool) -> list[Job]:
        """The jobs of one JobSpec or of several (each job once)."""
        if isinstance(names, (str, int, Job)):
            return self.get_jobs(names, recursive)
        # bytes are a Sequence too, of ints: b"12" must not select jobs 49 and 50
        if isinstance(names, (bytes, bytearray)) or not isinstance(names, Sequence):
            raise ArgumentTypeError(f"not a JobSpec or a list of them: {names!r}")
        found: dict[int, Job] = {}
        for name in names:
            for job in self.get_jobs(name, recursive):
                found[job.job_id] = job
        return list(found.values())

    def _ls_target(self, path: str | int | Job) -> Folder | None:
        """The one folder ``ls(path)`` lists, or None when ``path`` selects jobs."""
        if isinstance(path, Job) or (isinstance(path, int) and not isinstance(path, bool)):
            return None  # a job id or a Job: get_jobs lists it
        text = check_text(path, "path", JobSpecError)
        if text.strip() and Spec.parse(text).selects_jobs_only:
            return None
        folders = self._match_folders(text)
        return folders[0] if folders is not None and len(folders) == 1 else None

    def _rm_targets(self, name: str | int | Job | Folder) -> tuple[list[Folder], list[Job]]:
        """The folders and jobs ``rm(name)`` removes (folders without their jobs yet)."""
        if isinstance(name, Folder):
            return [name], []
        if isinstance(name, Job):
            return [], [name]
        if isinstance(name, bool) or not isinstance(name, (str, int)):
            raise ArgumentTypeError(
                f"rm: not a JobSpec, a Job or a Folder: {type(name).__name__} {name!r}"
            )
        if isinstance(name, int):
            return [], self.get_jobs(name)
        spec = Spec.parse(name)
        if spec.text.rstrip("/") == "" and spec.text.startswith("/"):
            raise CannotRemoveRoot("cannot remove the root folder")
        folders = [] if spec.selects_jobs_only else (self._match_folders(spec.text) or [])
        if folders:
            return folders, []
        jobs = self.get_jobs(spec.text)
        if not jobs and spec.range is not None:  # kong-batch: DoesNotExist here too
            raise NoSuchJobOrFolder(f"no jobs in range {shown(spec.text)}")
        return [], jobs

    @staticmethod
    def _check_rm(folders: Sequence[Folder], recursive: bool) -> None:
        if any(f.parent_id is None for f in folders):
            raise CannotRemoveRoot("cannot remove the root folder")
        if folders and not recursive:
            paths = ", ".join(f.path for f in folders)
            raise IsAFolderError(paths)


def forget_collections() -> None:
    """Make ``folder.children`` and ``folder.jobs`` load again on their next use.

    The session keeps objects across transactions, so a collection loaded before a
    move or a new job would go on listing the old contents; kong-batch scripts read
    ``len(folder.jobs)`` right after changing them.
    """
    s = db.session()
    for obj in list(s.identity_map.values()):
        if isinstance(obj, Folder):
            s.expire(obj, ["children", "jobs"])


def _depth(folder: Folder) -> int:
    """How many levels below the root ``folder`` is."""
    depth = 0
    current: Folder | None = folder
    while current is not None and current.parent_id is not None:
        depth += 1
        current = current.parent
    return depth
