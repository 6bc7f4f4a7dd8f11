"""Log commands: tail and less."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from kong.cli.group import JOBSPEC, Context, cli, pass_context
from kong.errors import KongError


def _one_job(obj: Context, spec: str) -> Any:
    jobs = obj.state.select_jobs(spec, False)
    if len(jobs) != 1:
        raise KongError(f"{spec} selects {len(jobs)} jobs; give one job id")
    return jobs[0]


def _log_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-e", "--stderr", "which", flag_value="stderr", default="stdout",
                        help="The job's stderr instead of its stdout.")(f)


@cli.command("tail")
@click.argument("spec", type=JOBSPEC)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many lines from the end to show.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing what the job writes (a local job: until it ends; "
                   "a cluster job: until Ctrl-C).")
@_log_option
@pass_context
def tail_command(obj: Context, spec: str, lines: int, follow: bool, which: str) -> None:
    """Show the end of a job's log. Cluster logs are fetched lazily: only the end is read."""
    from kong import ui

    state = obj.state
    job = _one_job(obj, spec)
    if not follow:
        with ui.spinner("Fetching the log"):
            data = state.tail_log(job, which, lines)
        click.echo(data, nl=False)
        return
    for chunk in state.follow_log(job, which, lines):
        click.echo(chunk, nl=False)


@cli.command("less")
@click.argument("spec", type=JOBSPEC)
@_log_option
@pass_context
def less_command(obj: Context, spec: str, which: str) -> None:
    """Page through a job's log ($PAGER, else less). A cluster log is synced to the local
    cache first, fetching only the bytes not cached yet."""
    import shlex
    import shutil
    import signal
    import subprocess

    from kong import ui

    job = _one_job(obj, spec)
    with ui.spinner("Fetching the log"):
        path = obj.state.log_file(job, which)
    if path is None:
        click.echo(f"(job {job.job_id} has no {which} yet)", err=True)
        return
    pager = os.environ.get("PAGER") or ("less -R" if shutil.which("less") else "")
    if not sys.stdout.isatty() or not pager:
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return
    # Ctrl-C belongs to the pager while it runs (less uses it to stop a search).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        subprocess.run([*shlex.split(pager), path], check=False)
    finally:
        signal.signal(signal.SIGINT, previous)
