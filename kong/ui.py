"""How kong shows things to people: tables, colours, sizes, times, progress.

Small outputs are rich tables. Job listings can hold 100,000 rows, which rich
would take many seconds to lay out, so they are aligned here line by line, with
the status colours taken from the same rich styles.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.style import Style

from kong.model.job import JobRow, JobStatus

if TYPE_CHECKING:
    from rich.progress import Progress

    from kong.model.folder import Folder
    from kong.model.job import Job
    from kong.remote.statusview import ViewAnswer

STATUS_STYLE: dict[JobStatus, str] = {
    JobStatus.UNKNOWN: "magenta",
    JobStatus.CREATED: "bright_black",
    JobStatus.SUBMITTED: "yellow",
    JobStatus.RUNNING: "blue",
    JobStatus.FAILED: "bold red",
    JobStatus.COMPLETED: "green",
}



def use_color(stream: IO[str] | None = None) -> bool:
    """Colour only on a terminal that shows it: not into a pipe, not with NO_COLOR set,
    not on TERM=dumb (rich leaves such a terminal's colours on)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") in ("dumb", "unknown"):
        return False
    return console.is_terminal and not console.no_color if stream is None else stream.isatty()


def _console(stderr: bool = False) -> Console:
    no_color = os.environ.get("TERM") in ("dumb", "unknown") or None
    return Console(stderr=stderr, highlight=False, no_color=no_color)


console: Console = _console()
err_console: Console = _console(stderr=True)


def cell(value: Any) -> str:
    """A value from a job's data as a person reads it: blank for nothing, JSON for
    lists and mappings (never a Python repr)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


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


def human_duration(seconds: float | None) -> str:
    """A duration as kubectl prints ages: ``45s``, ``3m12s``, ``47m``, ``5h3m``,
    ``20h``, ``3d4h``, ``12d``; ``-`` for none."""
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 600:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if s < 3 * 3600:
        return f"{m}m"
    if s < 8 * 3600:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if s < 2 * 86400:
        return f"{h}h"
    if s < 8 * 86400:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


def local_time(value: datetime | float | None, seconds: bool = True) -> str:
    if value is None:
        return "-"
    ts = value.timestamp() if isinstance(value, datetime) else value
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(ts))


def status_counts_text(counts: dict[JobStatus, int], color: bool) -> str:
    """``2 running  5 completed`` in status order, coloured like the job rows."""
    parts = []
    for status in JobStatus:
        n = counts.get(status, 0)
        if not n:
            continue
        text = f"{n} {status.name.lower()}"
        if color:
            start, end = _ansi(STATUS_STYLE[status])
            text = f"{start}{text}{end}"
        parts.append(text)
    return "  ".join(parts) if parts else "no jobs"


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
    folder_paths: dict[int, str] | None = None,
    subfolders: dict[int, int] | None = None,
    accounting: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Print folders (with per-status counts) and jobs as aligned columns.

    ``accounting`` (``State.job_accounting``) adds REASON (why a job ended) and
    RUNTIME; AGE is the time since the job was created, as kubectl shows it.

    ``subfolders`` (for folders without jobs) says how many folders such a folder
    holds, so that it does not read as empty; ``folder_paths`` adds a folder column.
    """
    out = out or sys.stdout
    color = use_color() if color is None else color
    width = shutil.get_terminal_size((120, 24)).columns
    name_width = max((len(f.name) + 1 for f in folders), default=0)
    for folder in folders:
        counts = status_counts_text(folder_counts.get(folder.folder_id, {}), color)
        if n_sub := (subfolders or {}).get(folder.folder_id):
            counts = f"{n_sub} folder{'s' if n_sub > 1 else ''}, {counts}"
        name = f"{folder.name}/".ljust(name_width)
        if color:
            start, end = _ansi("bold cyan")
            name = f"{start}{name}{end}"
        out.write(f"{name}  {counts}\n")
    if not rows:
        return
    if show_profile is None:
        show_profile = len({r.profile for r in rows}) > 1
    extra_keys = sorted({k for d in (extra or {}).values() for k in d})
    show_folder = folder_paths is not None
    header = ["id", "batch id", *(["profile"] if show_profile else []),
              *(["folder"] if show_folder else []), "status",
              *(["reason", "age", "runtime"] if accounting is not None else ["created"]),
              *(["size"] if sizes is not None else []), *extra_keys, "command"]
    minute_cache: dict[int, str] = {}

    def created(ts: float) -> str:
        key = int(ts // 60)
        text = minute_cache.get(key)
        if text is None:
            text = minute_cache[key] = local_time(ts, seconds=False)
        return text

    # Columns are built whole and joined by one format string per row: with
    # 100,000 rows, every per-cell Python call shows up in the time.
    columns: list[list[str]] = [
        [str(r.job_id) for r in rows],
        [r.batch_job_id or "-" for r in rows],
    ]
    if show_profile:
        columns.append([r.profile for r in rows])
    if show_folder:
        paths = folder_paths or {}
        columns.append([paths.get(r.folder_id, "?") for r in rows])
    status_index = len(columns)
    columns.append([r.status.name for r in rows])
    if accounting is not None:
        now = time.time()
        ages: dict[int, str] = {}

        def age(created_at: float) -> str:
            # jobs made in bulk share their second: one formatting per second
            key = int(now - created_at)
            text = ages.get(key)
            if text is None:
                text = ages[key] = human_duration(key)
            return text

        none: dict[str, Any] = {}
        columns.append([accounting.get(r.job_id, none).get("end_reason") or "-" for r in rows])
        columns.append([age(r.created_at) for r in rows])
        columns.append([human_duration(accounting.get(r.job_id, none).get("run_time"))
                        for r in rows])
    else:
        columns.append([created(r.created_at) for r in rows])
    if sizes is not None:
        columns.append([human_size(sizes.get(r.job_id)) for r in rows])
    for key in extra_keys:
        columns.append([cell((extra or {}).get(r.job_id, {}).get(key)) for r in rows])
    commands = [r.command.replace("\n", "; ") for r in rows]

    widths = [max(len(h), max(map(len, col))) for h, col in zip(header, columns, strict=False)]
    command_width = max(20, width - sum(widths) - 2 * len(widths))
    if out.isatty():
        commands = [c if len(c) <= command_width else c[: command_width - 1] + "…"
                    for c in commands]
    head = [h.rjust(widths[0]) if i == 0 else h.ljust(widths[i])
            for i, h in enumerate(header[:-1])]
    head_line = "  ".join([*head, header[-1]])
    if color:
        head_line = f"\x1b[1m{head_line}\x1b[0m"
        # Colour codes take no room on screen: pad the status first, colour it after.
        status_width = widths[status_index]
        painted = {}
        for status in JobStatus:
            start, end = _ansi(STATUS_STYLE[status])
            painted[status.name] = f"{start}{status.name.ljust(status_width)}{end}"
        columns[status_index] = [painted[name] for name in columns[status_index]]
        widths[status_index] = 0
    specs = [f"{{:>{widths[0]}}}", *(f"{{:<{w}}}" for w in widths[1:])]
    fmt = "  ".join([*specs, "{}"])
    lines = [head_line]
    lines.extend(map(fmt.format, *columns, commands))
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
        from kong.usage import job_accounting

        out.update(job_accounting(job.data or {}, job.memory))
        out["data"] = job.data
    return out


def row_dict(row: JobRow) -> dict[str, Any]:
    """A listing row for JSON; times in UTC ISO 8601, as ``job_dict`` gives them."""
    return {
        "job_id": row.job_id,
        "batch_job_id": row.batch_job_id,
        "profile": row.profile,
        "driver": row.driver,
        "command": row.command,
        "status": row.status.name,
        "cores": row.cores,
        "memory": row.memory,
        "created_at": datetime.fromtimestamp(row.created_at, UTC).isoformat(),
        "updated_at": datetime.fromtimestamp(row.updated_at, UTC).isoformat(),
    }


def print_json(value: Any) -> None:
    """Indented for a person at a terminal; compact into a pipe, where json's C encoder
    (which indenting turns off) writes 100,000 jobs several times faster."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(value, indent=indent, default=str))
    sys.stdout.write("\n")


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on stderr while slow work (a cluster round trip) runs."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A small table (a few dozen rows at most: rich lays it out)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def render_info(
    jobs: Sequence[Job], *, out: IO[str] | None = None, color: bool | None = None
) -> None:
    """Every field of each job as aligned ``key  value`` lines, one block per job, and
    its earlier runs as a small table. Plain lines, not rich tables: ``info -r`` of
    thousands of jobs must print as fast as ``--json``."""
    from kong.lifecycle import removal_refusal

    out = out or sys.stdout
    color = use_color() if color is None else color
    bold = _ansi("bold") if color else ("", "")
    blocks = []
    for job in jobs:
        pairs: list[tuple[str, str]] = []
        for key, value in job_dict(job, with_data=False).items():
            if key == "status" and color:
                start, end = _ansi(STATUS_STYLE[job.status])
                value = f"{start}{value}{end}"
            elif key in ("created_at", "updated_at"):
                value = local_time(getattr(job, key))
            pairs.append((key, "-" if value is None else str(value)))
        pairs.append(("log dir", job.log_dir))
        pairs.append(("output dir", job.output_dir))
        pairs.extend(accounting_pairs(job.data or {}, job.memory))
        if refusal := removal_refusal(job):  # an rm claimed it
            pairs.append(("removing", refusal.removeprefix(f"job {job.job_id}: ")))
        history: list[dict[str, Any]] = []
        for key, value in sorted((job.data or {}).items()):
            if key == "history" and isinstance(value, list) and all(
                isinstance(h, dict) for h in value
            ):
                history = value
                continue
            if key == "submitted_at" and isinstance(value, str):
                with suppress(ValueError):
                    value = local_time(datetime.fromisoformat(value))
            pairs.append((f"data.{key}", cell(value)))
        width = max(len(k) for k, _ in pairs)
        lines = [f"{bold[0]}{k.ljust(width)}{bold[1]}  {v}".rstrip() for k, v in pairs]
        if history:
            lines.append(f"{bold[0]}{'earlier runs'.ljust(width)}{bold[1]}")
            lines.extend(" " * (width + 2) + line for line in _history_table(history))
        blocks.append("\n".join(lines))
    if blocks:
        out.write("\n\n".join(blocks))
        out.write("\n")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _mb(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else human_size(int(value * 2**20))


def accounting_pairs(data: dict[str, Any], memory: int | None) -> list[tuple[str, str]]:
    """``info``'s lines on when a job ran, why it ended and what it used; "n/a" where
    the scheduler's accounting recorded no figure (never 0)."""
    from kong.usage import job_accounting

    acc = job_accounting(data, memory)
    usage = acc["usage"] or {}

    def when(key: str) -> str:
        parsed = acc[key] and datetime.fromisoformat(acc[key])
        return local_time(parsed) if parsed else "-"

    cpus = usage.get("cpus")
    return [
        ("submitted", when("submit_time")),
        ("started", when("start_time")),
        ("ended", when("end_time")),
        ("queue wait", human_duration(acc["queue_wait"])),
        ("run time", human_duration(acc["run_time"])),
        ("end reason", acc["end_reason"] or "-"),
        ("cpu time", "n/a" if usage.get("cpu_time") is None
         else f"{usage['cpu_time']:.1f}s on {cpus or '?'} cpu{'s' if cpus != 1 else ''}"),
        ("cpu efficiency", _percent(acc["cpu_efficiency"])),
        ("peak memory", _mb(usage.get("max_rss_mb"))),
        ("memory efficiency", _percent(acc["memory_efficiency"])),
    ]


def _history_table(history: Sequence[dict[str, Any]]) -> list[str]:
    """A job's earlier runs (batch id, status, ...) as aligned lines with a header."""
    names = {"batch_job_id": "batch id"}
    keys = list(dict.fromkeys(k for h in history for k in h))
    rows = [[cell(h.get(k)) for k in keys] for h in history]
    header = [names.get(k, k.replace("_", " ")) for k in keys]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


@contextmanager
def progress_bar(
    description: str, total: int | None, disable: bool = False
) -> Iterator[Progress]:
    """A progress bar with N/M on stderr (nothing when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

    with _progress(description, total, disable,
                   BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        yield bar


@contextmanager
def _progress(
    description: str, total: int | None, disable: bool, *columns: Any
) -> Iterator[Progress]:
    """One task's progress bar with ``columns`` on stderr (none off a terminal)."""
    from rich.progress import Progress

    bar = Progress(
        "[progress.description]{task.description}",
        *columns,
        console=err_console,
        disable=disable or not err_console.is_terminal,
        transient=False,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


def staleness_lines(views: dict[str, ViewAnswer]) -> list[str]:
    """One line per profile whose listed statuses are older than the kong agent's
    interval (or could not be brought up to date), saying how old and why."""
    lines = []
    for profile, view in sorted(views.items()):
        if not view.stale:
            continue
        why = f": {view.failure}" if view.failure else ""
        if view.failed:
            lines.append(f"statuses of {profile} not current (the scheduler could not be "
                         f"asked{why}); `kong ls -u` tries again")
            continue
        age = (f"{view.age:.0f} s" if view.age < 120 else f"{view.age / 60:.0f} min")
        lines.append(f"statuses of {profile} are {age} old{why}; `kong ls -u` asks now")
    return lines


@contextmanager
def bytes_progress(
    description: str, total: int | None, disable: bool = False
) -> Iterator[Progress]:
    """A progress bar in bytes (done/total, speed, time left) on stderr, for transfers."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with _progress(description, total, disable, BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn()) as bar:
        yield bar
