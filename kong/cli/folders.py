"""Folder commands: ls, mkdir, mv, rm, cd, pwd."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from kong.cli.group import (
    FOLDER,
    JOBSPEC,
    STATUS_NAMES,
    Confirmation,
    Context,
    cli,
    pass_context,
)
from kong.cli.render import folder_paths_of, job_row

#: end reasons ``ls -s`` takes besides the statuses (EXIT/SIGNAL: any code; also EXIT(n))
_REASON_WORDS = ("TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED", "EXIT",
                 "SIGNAL")


@cli.command("ls")
@click.argument("paths", nargs=-1, type=JOBSPEC)
@click.option("-R", "--recursive", is_flag=True, help="List the jobs of all folders below PATH.")
@click.option("-u", "--refresh", is_flag=True,
              help="Ask the clusters for the current status first (one query per profile).")
@click.option("-s", "--status", "statuses", multiple=True, metavar="STATUS",
              callback=lambda _ctx, _param, value: _check_statuses(value),
              shell_complete=lambda _ctx, _param, incomplete: [
                  w.lower() for w in (*STATUS_NAMES, *_REASON_WORDS)
                  if w.lower().startswith(incomplete.lower())],
              help="Show only jobs in this status or with this end reason: "
                   f"{', '.join(s.lower() for s in STATUS_NAMES)}; timeout, out_of_memory, "
                   "cancelled, node_fail, preempted, exit, exit(N), signal, signal(N) "
                   "(repeatable).")
@click.option("-S", "--sizes", is_flag=True,
              help="Show the size of each job's output dir (also: -x size).")
@click.option("-x", "--extra", "extra", multiple=True, metavar="KEY",
              help="Extra column from the job's data (e.g. exit_code, node); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-w", "--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only jobs whose sweep parameter (or data) KEY is VALUE, as text; "
                   "KEY=A,B for either; repeatable (all must hold).")
@pass_context
def ls_command(
    obj: Context,
    paths: Sequence[str],
    recursive: bool,
    refresh: bool,
    statuses: Sequence[str],
    sizes: bool,
    extra: Sequence[str],
    as_json: bool,
    where: Sequence[str],
) -> None:
    """List the folders and jobs in PATHS (default: the current folder).

    A PATH may also be any JobSpec (an id, a range, a glob); then only jobs are
    listed. Folders show how many jobs in them and below them are in each
    status. Times are local. Several PATHS are listed one after the other, each
    under its name (with --json: a list, one object per PATH).
    """
    from kong import ui

    listings = []
    for i, path in enumerate(paths or ["."]):
        if len(paths) > 1 and not as_json:
            if i:
                click.echo()
            click.echo(f"{path}:")
        listing = _ls_one(obj, path, recursive, refresh, statuses, sizes, extra, as_json,
                          where)
        if listing is not None:
            listings.append({"path": path, **listing} if len(paths) > 1 else listing)
    if as_json:
        ui.print_json(listings if len(paths) > 1 else listings[0])


def _ls_one(
    obj: Context,
    path: str,
    recursive: bool,
    refresh: bool,
    statuses: Sequence[str],
    sizes: bool,
    extra: Sequence[str],
    as_json: bool,
    where: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Print the listing of one PATH, or return it for JSON."""
    from kong import ui
    from kong.model.job import JobList

    state = obj.state
    if "size" in extra:  # output sizes come from the cluster (one du), not the job's data
        sizes, extra = True, [x for x in extra if x != "size"]
    if refresh:
        with ui.spinner("Refreshing job status"):
            folders, jobs = state.ls(path, refresh=True, recursive=recursive)
    else:
        folders, jobs = state.ls(path, recursive=recursive)
    from kong.selection import status_or_reason_matches

    rows = jobs.rows if isinstance(jobs, JobList) else [job_row(j) for j in jobs]
    # a table needs only the end reason and run time: cheap JSON reads; --json gets all
    accounting = (state.job_accounting if as_json else state.job_run_times)(
        [r.job_id for r in rows])
    if statuses:
        rows = [r for r in rows if any(
            status_or_reason_matches(s, r.status.name,
                                     accounting.get(r.job_id, {}).get("end_reason"))
            for s in statuses)]
    if where:
        matching = state.job_ids_where([r.job_id for r in rows], list(where))
        rows = [r for r in rows if r.job_id in matching]
    counts = state.folder_counts(folders)
    job_sizes = None
    if sizes:
        selected = {r.job_id for r in rows}
        with ui.spinner("Measuring output sizes"):
            job_sizes = state.sizes([j for j in jobs if j.job_id in selected])
    extra_data = None
    if extra:
        extra_data = state.job_data([r.job_id for r in rows], list(extra))
    if as_json:
        paths = folder_paths_of({r.folder_id for r in rows}, at_least=1) or {}
        return {
            "folders": [
                {"name": f.name, "path": f.path,
                 "counts": {s.name: n for s, n in counts[f.folder_id].items()}}
                for f in folders
            ],
            "jobs": [
                {**ui.row_dict(r), "folder": paths.get(r.folder_id),
                 **accounting.get(r.job_id, {}),
                 **({"size": job_sizes.get(r.job_id)} if job_sizes is not None else {}),
                 **((extra_data or {}).get(r.job_id, {}))}
                for r in rows
            ],
        }
    # Only folders without jobs need their subfolders counted ("2 folders, no jobs").
    subfolders = {f.folder_id: len(f.subfolders()) for f in folders
                  if not any(counts[f.folder_id].values())}
    ui.render_listing(folders, counts, rows, sizes=job_sizes, extra=extra_data,
                      subfolders=subfolders, accounting=accounting,
                      folder_paths=folder_paths_of({r.folder_id for r in rows},
                                                   at_least=1 if recursive else 2))
    if isinstance(jobs, JobList):
        for line in ui.staleness_lines(jobs.views):
            click.echo(f"kong: {line}", err=True)  # one line, never wrapped
    if not folders and not rows:
        place = state.cwd.path if path == "." else path
        if where:
            click.echo(f"no jobs with {' and '.join(where)} in {place}")
        elif statuses:
            wanted_names = ", ".join(s.upper() for s in statuses)
            click.echo(f"no jobs with status {wanted_names} in {place}")
        else:
            click.echo(f"{place} is empty: no folders, no jobs")
    return None


def _check_statuses(values: Sequence[str]) -> Sequence[str]:
    """``-s`` words: statuses, end reasons, EXIT(n)/SIGNAL(n); anything else is refused."""
    import re

    for value in values:
        word = value.strip().upper().replace("-", "_")
        if word in STATUS_NAMES or word in _REASON_WORDS or re.fullmatch(
                r"(EXIT|SIGNAL)\(\d+\)", word):
            continue
        raise click.BadParameter(
            f"{value!r} is no status or end reason (expected one of: "
            f"{', '.join(s.lower() for s in (*STATUS_NAMES, *_REASON_WORDS))}, exit(N), "
            "signal(N))", param_hint="'-s'")
    return values


@cli.command("mkdir")
@click.argument("paths", nargs=-1, required=True, type=FOLDER)
@click.option("-p", "--parents", is_flag=True,
              help="Create missing parent folders; no error if the folder exists.")
@pass_context
def mkdir_command(obj: Context, paths: Sequence[str], parents: bool) -> None:
    """Create the folders PATHS (relative to the current folder, or absolute)."""
    from kong.state import MissingParentError

    for path in paths:
        try:
            obj.state.mkdir(path, exist_ok=parents, create_parent=parents)
        except MissingParentError as exc:
            raise MissingParentError(exc.parent, "use mkdir -p to create it too") from None


@cli.command("mv")
@click.argument("sources", nargs=-1, required=True, type=JOBSPEC)
@click.argument("dest", type=FOLDER)
@pass_context
def mv_command(obj: Context, sources: Sequence[str], dest: str) -> None:
    """Move jobs or folders SOURCES into folder DEST, or rename a folder when DEST does
    not exist (then give one SOURCE)."""
    from kong.errors import FolderError

    state = obj.state
    if len(sources) > 1 and not state.get_folders(dest):
        raise FolderError(f"no such folder: {dest} (moving several, DEST must exist)")
    results = [state.mv(source, dest) for source in sources]
    click.echo(f"moved {sum(len(moved) for moved in results)} item(s)")
    for moved in results:
        for folder, reason in getattr(moved, "skipped", []):
            click.echo(f"not moved: {folder.path}: {reason}")


@cli.command("rm")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Remove folders and everything in them.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def rm_command(obj: Context, specs: Sequence[str], recursive: bool, yes: bool) -> None:
    """Remove jobs (killing them if they run, deleting their files) or folders.

    Asks once before removing anything unless -y is given; without a terminal
    to ask on, it refuses instead.
    """
    from kong.state import IsAFolderError

    with Confirmation(yes, spinning="Removing") as ask:
        try:
            removed = obj.state.rm(list(specs), recursive=recursive, confirm=ask)
        except IsAFolderError as exc:
            raise IsAFolderError(exc.paths, "use rm -r to remove it") from None
    if ask.declined:
        click.echo("nothing removed (not confirmed)")
    else:
        click.echo("removed" if removed else "nothing removed")


@cli.command("cd")
@click.argument("path", default="/", required=False, type=FOLDER)
@pass_context
def cd_command(obj: Context, path: str) -> None:
    """Change the current folder to PATH (default: /) of the interactive shell.

    From a terminal there is no folder to change: give each command its path
    (kong ls /runs) or open the shell with kong.
    """
    from kong.errors import KongError

    obj.state.cd(path)  # a folder that does not exist is reported either way
    if not obj.interactive:
        raise KongError("cd changes the folder of kong's interactive shell (start it with "
                        "`kong`); from a terminal, give each command its path, e.g. kong ls "
                        f"{path}")


@cli.command("pwd")
@pass_context
def pwd_command(obj: Context) -> None:
    """Print the current folder."""
    click.echo(obj.state.cwd.path)

