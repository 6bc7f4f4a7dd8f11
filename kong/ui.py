"""How kong shows things to people: tables, colours, sizes, times, progress.

Small outputs are rich tables. Job listings can hold 100,000 rows, which rich
would take many seconds to lay out, so they are aligned here line by line, with
the status colours taken from the same rich styles.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.style import Style

from kong.model.job import JobRow, JobStatus

if TYPE_CHECKING:
    from rich.progress import Progress

    from kong.model.folder import Folder
    from kong.model.job import Job

STATUS_STYLE: dict[JobStatus, str] = {
    JobStatus.UNKNOWN: "magenta",
    JobStatus.CREATED: "bright_black",
    JobStatus.SUBMITTED: "yellow",
    JobStatus.RUNNING: "blue",
    JobStatus.FAILED: "bold red",
    JobStatus.COMPLETED: "green",
}

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def use_color(stream: IO[str] | None = None) -> bool:
    return console.is_terminal and not console.no_color if stream is None else stream.isatty()


def _ansi(style: str) -> tuple[str, str]:
    rendered = Style.parse(style).render("\0")
    start, _, end = rendered.partition("\0")
    return start, end


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"


def local_time(value: datetime | float | None, seconds: bool = True) -> str:
    if value is None:
        return "-"
    ts = value.timestamp() if isinstance(value, datetime) else value
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(ts))


def status_counts_text(counts: dict[JobStatus, int], color: bool) -> str:
    parts = []
    for status in JobStatus:
        n = counts.get(status, 0)
        if not n:
            continue
        text = f"{status.name[0]}{n}"
        if color:
            start, end = _ansi(STATUS_STYLE[status])
            text = f"{start}{text}{end}"
        parts.append(text)
    return " ".join(parts) if parts else "empty"


def render_listing(
    folders: Sequence[Folder],
    folder_counts: dict[int, dict[JobStatus, int]],
    rows: Sequence[JobRow],
    *,
    out: IO[str] | None = None,
    color: bool | None = None,
    sizes: dict[int, int] | None = None,
    extra: dict[int, dict[str, Any]] | None = None,
    show_profile: bool | None = None,
) -> None:
    """Print folders (with per-status counts) and jobs as aligned columns."""
    out = out or sys.stdout
    color = use_color() if color is None else color
    width = shutil.get_terminal_size((120, 24)).columns
    for folder in folders:
        counts = status_counts_text(folder_counts.get(folder.folder_id, {}), color)
        name = f"{folder.name}/"
        if color:
            start, end = _ansi("bold cyan")
            name = f"{start}{name}{end}"
        out.write(f"{name}  {counts}\n")
    if not rows:
        return
    if show_profile is None:
        show_profile = len({r.profile for r in rows}) > 1
    extra_keys = sorted({k for d in (extra or {}).values() for k in d})
    header = ["id", "batch id", *(["profile"] if show_profile else []), "status", "created",
              *(["size"] if sizes is not None else []), *extra_keys, "command"]
    minute_cache: dict[int, str] = {}

    def created(ts: float) -> str:
        key = int(ts // 60)
        text = minute_cache.get(key)
        if text is None:
            text = minute_cache[key] = local_time(ts, seconds=False)
        return text

    table: list[list[str]] = [header]
    statuses: list[JobStatus] = []
    for r in rows:
        cells = [str(r.job_id), r.batch_job_id or "-"]
        if show_profile:
            cells.append(r.profile)
        cells.append(r.status.name)
        cells.append(created(r.created_at))
        if sizes is not None:
            cells.append(human_size(sizes.get(r.job_id)))
        for key in extra_keys:
            cells.append(str((extra or {}).get(r.job_id, {}).get(key, "-")))
        cells.append(r.command.replace("\n", "; "))
        table.append(cells)
        statuses.append(r.status)
    ncols = len(header) - 1
    widths = [max(len(row[i]) for row in table) for i in range(ncols)]
    status_col = header.index("status")
    used = sum(widths) + 2 * ncols
    command_width = max(20, width - used)
    colors = {s: _ansi(STATUS_STYLE[s]) for s in JobStatus} if color else {}
    fmt_cols = list(range(ncols))
    lines = []
    for i, row in enumerate(table):
        parts = []
        for c in fmt_cols:
            cell = row[c].ljust(widths[c]) if c != 0 else row[c].rjust(widths[c])
            if c == status_col and color and i > 0:
                start, end = colors[statuses[i - 1]]
                cell = f"{start}{cell}{end}"
            elif i == 0 and color:
                cell = f"\x1b[1m{cell}\x1b[0m"
            parts.append(cell)
        command = row[-1]
        if len(command) > command_width and out.isatty():
            command = command[: command_width - 1] + "…"
        parts.append(command)
        lines.append("  ".join(parts))
    out.write("\n".join(lines))
    out.write("\n")


def job_dict(job: Job, with_data: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": job.job_id,
        "batch_job_id": job.batch_job_id,
        "profile": job.profile,
        "driver": job.driver,
        "folder": job.folder.path,
        "command": job.command,
        "status": job.status.name,
        "cores": job.cores,
        "memory": job.memory,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }
    if with_data:
        out["data"] = job.data
    return out


def row_dict(row: JobRow) -> dict[str, Any]:
    return {
        "job_id": row.job_id,
        "batch_job_id": row.batch_job_id,
        "profile": row.profile,
        "driver": row.driver,
        "command": row.command,
        "status": row.status.name,
        "cores": row.cores,
        "memory": row.memory,
        "created_at": datetime.fromtimestamp(row.created_at).astimezone().isoformat(),
        "updated_at": datetime.fromtimestamp(row.updated_at).astimezone().isoformat(),
    }


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str))
    sys.stdout.write("\n")


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on stderr while slow work (a cluster round trip) runs."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    """A progress bar on stderr (nothing when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=False,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar
