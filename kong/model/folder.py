"""Folders organise jobs in a tree, like directories. ``/`` is the one root."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Select, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship

from kong import db
from kong.errors import (
    ArgumentTypeError,
    CannotCreateError,
    FolderError,
    InvalidFolderName,
    NoSuchFolder,
)
from kong.model.base import Base, UTCTimestamp, utcnow

if TYPE_CHECKING:
    from kong.model.job import Job, JobStatus

ROOT_ID = 1
_VALID_NAME = re.compile(r"^[^/\x00]+$")


class FolderDoesNotExist(NoSuchFolder):
    """No folder at a path (``Folder.DoesNotExist``; a ``ValueError`` as in kong-batch)."""


def check_folder_name(name: str) -> None:
    """Refuse names that could not be told apart from job selectors."""
    if not _VALID_NAME.match(name) or name in (".", ".."):
        raise InvalidFolderName(f"invalid folder name {name!r}")
    if not name.isprintable():  # a newline or tab would break every listing of it
        raise InvalidFolderName(f"folder name {name!r} contains a control character")
    if name.isdigit():
        raise InvalidFolderName(f"folder name {name!r} is all digits: it would read as a job id")
    if ".." in name and re.fullmatch(r"\d+\.\.\d+", name):
        raise InvalidFolderName(f"folder name {name!r} would read as a job range")
    if any(c in name for c in "*?[]"):
        raise InvalidFolderName(f"folder name {name!r} contains a glob character (* ? [ ])")


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("parent_id", "name", name="uq_folder_parent_name"),)

    DoesNotExist = FolderDoesNotExist

    folder_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("folders.folder_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCTimestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCTimestamp, default=utcnow, onupdate=utcnow)

    parent: Mapped[Folder | None] = relationship(
        remote_side=[folder_id], back_populates="children"
    )
    children: Mapped[list[Folder]] = relationship(
        back_populates="parent", order_by="Folder.name", passive_deletes=True
    )
    jobs: Mapped[list[Job]] = relationship(
        back_populates="folder", order_by="Job.job_id", passive_deletes=True
    )

    def reload(self) -> None:
        """Read this row again from the database (kong-batch's ``reload``)."""
        db.session().refresh(self)

    def __repr__(self) -> str:
        return f"Folder({self.path!r})"

    @classmethod
    def get_root(cls) -> Folder:
        root = db.session().get(cls, ROOT_ID)
        if root is None:  # created by the first migration; only a damaged database lacks it
            raise FolderError("the database has no root folder")
        return root

    @property
    def path(self) -> str:
        parts: list[str] = []
        folder: Folder | None = self
        while folder is not None and folder.parent_id is not None:
            parts.append(folder.name)
            folder = folder.parent
        return "/" + "/".join(reversed(parts))

    def subfolders(self) -> list[Folder]:
        """The folders directly in this one, by name, as the database has them now
        (``children`` is loaded once and would miss folders made since)."""
        return list(
            db.session().scalars(
                select(Folder).where(Folder.parent_id == self.folder_id).order_by(Folder.name)
            )
        )

    def subfolder(self, name: str) -> Folder | None:
        if not isinstance(name, str):
            raise ArgumentTypeError(f"a folder name must be a str, not {type(name).__name__}")
        return db.session().scalars(
            select(Folder).where(Folder.parent_id == self.folder_id, Folder.name == name)
        ).first()

    def __truediv__(self, name: str) -> Folder | None:
        """``root / "f1" / "f2"``: the subfolder of that name, or None (as in kong-batch)."""
        return self.subfolder(name)

    def add_folder(self, name: str) -> Folder:
        check_folder_name(name)
        if self.subfolder(name) is not None:
            raise CannotCreateError(f"{self.path.rstrip('/')}/{name} already exists")
        with db.write() as s:
            folder = Folder(name=name, parent_id=self.folder_id)
            s.add(folder)
        s.expire(self, ["children"])  # a loaded `children` would miss the new folder
        return folder

    @staticmethod
    def find_by_path(path: str, cwd: Folder | None = None) -> Folder | None:
        """The folder at ``path`` (absolute, or relative to ``cwd``; ``..`` allowed).

        ``..`` of the root is the root, as in a POSIX shell (kong-batch: None).
        """
        if not isinstance(path, str):
            raise ArgumentTypeError(f"a folder path must be a str, not {type(path).__name__}")
        folder: Folder | None = Folder.get_root() if cwd is None or path.startswith("/") else cwd
        for part in path.split("/"):
            if folder is None:
                return None
            if part in ("", "."):
                continue
            if part == "..":
                folder = folder.parent or folder
                continue
            folder = folder.subfolder(part)
        return folder

    def descendant_ids(self, include_self: bool = True) -> list[int]:
        """Ids of all folders below this one, in one recursive query."""
        ids: list[int] = list(db.session().scalars(subtree_ids(self.folder_id)))
        return ids if include_self else [i for i in ids if i != self.folder_id]

    def folders_recursive(self) -> Iterable[Folder]:
        ids = self.descendant_ids(include_self=False)
        if not ids:
            return []
        return list(db.session().scalars(select(Folder).where(Folder.folder_id.in_(ids))))

    def job_stats(self) -> dict[JobStatus, int]:
        """Jobs per status in this folder and all below it (every status, 0 if none)."""
        from sqlalchemy import func

        from kong.model.job import Job, JobStatus

        counts = {status: 0 for status in JobStatus}
        query = (
            select(Job.status, func.count())
            .where(Job.folder_id.in_(subtree_ids(self.folder_id)))
            .group_by(Job.status)
        )
        for status, n in db.session().execute(query):
            counts[status] = n
        return counts

    def jobs_recursive(self) -> Iterable[Job]:
        from kong.model.job import Job

        query = select(Job).where(Job.folder_id.in_(subtree_ids(self.folder_id)))
        return list(db.session().scalars(query.order_by(Job.job_id)))


def subtree_ids(folder_id: int) -> Select[tuple[int]]:
    """A SELECT of the ids of a folder and of every folder below it (recursive CTE)."""
    tree = select(Folder.folder_id).where(Folder.folder_id == folder_id).cte("tree", recursive=True)
    child = aliased(Folder)
    tree = tree.union_all(
        select(child.folder_id).join(tree, child.parent_id == tree.c.folder_id)
    )
    return select(tree.c.folder_id)
