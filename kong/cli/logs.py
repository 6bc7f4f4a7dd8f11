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


def _tail_bytes(path: str, n: int, chunk: int = 64 * 1024) -> tuple[bytes, int]:
    """The last ``n`` lines of a local file, reading only its end; and the file size."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; a missing log is no error
    except FileNotFoundError:
        return b"", 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        got = b""
        start = size
        while start > 0 and got.count(b"\n") <= n:
            begin = max(start - chunk, 0)
            fh.seek(begin)
            got = fh.read(start - begin) + got
            start = begin
    lines = got.splitlines(keepends=True)
    return b"".join(lines[-n:]) if n > 0 else b"", size


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
    import time

    from kong import ui
    from kong.remote.local import LocalTransport

    state = obj.state
    job = _one_job(obj, spec)
    driver = job._driver()
    remote = driver.log_path(job, which)
    if isinstance(driver.transport, LocalTransport):
        data, offset = _tail_bytes(remote, lines)
        click.echo(data, nl=False)
        if not follow:
            return
        last_check = time.monotonic()
        finished = job.status.finished or job.status.name == "CREATED"
        while True:
            try:
                with open(remote, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            if data:
                offset += len(data)
                click.echo(data, nl=False)
                continue
            if finished:
                return
            time.sleep(0.2)
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                state.refresh_jobs([job])
                # One more read after the job ended catches its last lines.
                finished = job.status.finished
        return
    from kong.remote.logsync import LogCache

    cache = LogCache(state.config.data_dir / "logcache")
    key = driver.log_cache_key(job, which)
    with ui.spinner(f"Fetching the log from {driver.transport.label}"):
        data = cache.tail(driver.transport, remote, key, lines, finished=job.status.finished)
    click.echo(data, nl=False)
    if follow and not job.status.finished:
        for chunk in cache.follow(driver.transport, remote, key):
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
    from kong.remote.local import LocalTransport

    job = _one_job(obj, spec)
    driver = job._driver()
    if isinstance(driver.transport, LocalTransport):
        path = driver.log_path(job, which)
    else:
        with ui.spinner(f"Fetching the log from {driver.transport.label}"):
            path = str(driver.sync_log(job, which))
    if not os.path.exists(path):
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

