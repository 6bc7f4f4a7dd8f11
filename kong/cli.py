"""The ``kong`` command line: one click command per operation, each a thin call
into ``State``. The REPL (``kong/repl``) runs these same commands on its own,
long-lived State, so every command has exactly one implementation.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
from click.shell_completion import CompletionItem

from kong import __version__
from kong.errors import KongError

STATUS_NAMES = ["UNKNOWN", "CREATED", "SUBMITTED", "RUNNING", "FAILED", "COMPLETED"]

#: other spellings of commands: the seed REPL's names (create_job, submit_job, ...)
ALIASES = {
    "create_job": "create-job",
    "submit_job": "submit",
    "submit-job": "submit",
    "kill_job": "kill",
    "kill-job": "kill",
    "resubmit_job": "resubmit",
    "resubmit-job": "resubmit",
    "refresh": "update",
    "quit": "exit",
}


class Context:
    """What commands share: the State (created on first use) and how to talk to people."""

    def __init__(self, profile: str | None = None, state: Any = None, interactive: bool = False):
        self._profile = profile
        self._state = state
        # The REPL builds the State in a thread while the first prompt is shown.
        self._lock = threading.Lock()
        self.interactive = interactive
        self.exit_requested = False

    @property
    def state(self) -> Any:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    from kong.state import State

                    self._state = State.get_instance(profile=self._profile)
        return self._state

    @property
    def state_ready(self) -> bool:
        return self._state is not None


pass_context = click.make_pass_decorator(Context)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SpecType(click.ParamType):
    """A JobSpec or folder path; completes folder paths and job ids from the database."""

    name = "jobspec"

    def __init__(self, folders_only: bool = False) -> None:
        self.folders_only = folders_only

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from kong.repl.completion import complete_spec

        try:
            obj = ctx.find_object(Context) or Context()
            candidates = complete_spec(obj.state, incomplete, folders_only=self.folders_only)
        except Exception:  # a broken config or database must not break the user's shell
            return []
        return [CompletionItem(c.text, help=c.meta) for c in candidates]


JOBSPEC = SpecType()
FOLDER = SpecType(folders_only=True)


class KongGroup(click.Group):
    """A click group that also answers to the alias spellings in ``ALIASES``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        # Help and error messages name the command, not the alias that was typed.
        return (cmd.name if cmd is not None else name), cmd, rest


def _confirm(yes: bool) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise KongError(f"{question} Refusing without a terminal to ask; pass -y to confirm")
        return click.confirm(question, default=False)

    return ask


@click.group(cls=KongGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("-p", "--profile", metavar="NAME",
              help="Profile (cluster) that new jobs go to; default: the config's default_profile.")
@click.version_option(__version__, "-V", "--version", prog_name="kong")
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """kong: manage batch jobs on this machine and on Slurm, HTCondor and LSF clusters.

    Without a command, kong opens its interactive shell. Jobs are organised in
    folders; wherever a command takes JOBSPEC it accepts a job id (12), a range
    (10..20, or dir/10..20), a folder path (/runs/a, ../b), DIR/* for the jobs
    directly in DIR, or a glob on folder names (runs/2024-*).

    Aliases: create_job, submit_job, kill_job, resubmit_job (the seed's names),
    refresh (update), quit (exit). Shell completion for bash: eval "$(_KONG_COMPLETE=bash_source
    kong)" (zsh_source, fish_source for other shells).
    """
    if ctx.obj is None:
        ctx.obj = Context(profile=profile)
    if ctx.invoked_subcommand is None:
        from kong.repl import run_repl

        code = run_repl(ctx.obj)
        if code:
            raise SystemExit(code)


# -- folders ----------------------------------------------------------------------------


@cli.command("ls")
@click.argument("path", default=".", required=False, type=JOBSPEC)
@click.option("-R", "--recursive", is_flag=True, help="List the jobs of all folders below PATH.")
@click.option("-u", "--refresh", is_flag=True,
              help="Ask the clusters for the current status first (one query per profile).")
@click.option("-s", "--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(STATUS_NAMES, case_sensitive=False),
              help="Show only jobs in this status (repeatable).")
@click.option("-S", "--sizes", is_flag=True, help="Show the size of each job's output dir.")
@click.option("-x", "--extra", "extra", multiple=True, metavar="KEY",
              help="Extra column from the job's data (e.g. exit_code, node); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def ls_command(
    obj: Context,
    path: str,
    recursive: bool,
    refresh: bool,
    statuses: Sequence[str],
    sizes: bool,
    extra: Sequence[str],
    as_json: bool,
) -> None:
    """List the folders and jobs in PATH (default: the current folder).

    PATH may also be any JobSpec (an id, a range, a glob); then only jobs are
    listed. Folders show how many jobs in them and below them are in each
    status. Times are local.
    """
    from kong import ui
    from kong.model.job import JobList

    state = obj.state
    if refresh:
        with ui.spinner("Refreshing job status"):
            folders, jobs = state.ls(path, refresh=True, recursive=recursive)
    else:
        folders, jobs = state.ls(path, recursive=recursive)
    rows = jobs.rows if isinstance(jobs, JobList) else [_row(j) for j in jobs]
    if statuses:
        wanted = {s.upper() for s in statuses}
        rows = [r for r in rows if r.status.name in wanted]
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
        paths = _folder_paths({r.folder_id for r in rows}, at_least=1) or {}
        ui.print_json({
            "folders": [
                {"name": f.name, "path": f.path,
                 "counts": {s.name: n for s, n in counts[f.folder_id].items()}}
                for f in folders
            ],
            "jobs": [
                {**ui.row_dict(r), "folder": paths.get(r.folder_id),
                 **({"size": job_sizes.get(r.job_id)} if job_sizes is not None else {}),
                 **((extra_data or {}).get(r.job_id, {}))}
                for r in rows
            ],
        })
        return
    ui.render_listing(folders, counts, rows, sizes=job_sizes, extra=extra_data,
                      folder_paths=_folder_paths({r.folder_id for r in rows}))


def _folder_paths(folder_ids: set[int], at_least: int = 2) -> dict[int, str] | None:
    """Paths of the folders of a listing; a table shows them only when the listing
    spans several folders (ls -R, ranges, globs)."""
    if len(folder_ids) < at_least:
        return None
    from kong import db
    from kong.model.folder import Folder

    session = db.session()
    paths = {}
    for folder_id in folder_ids:
        folder = session.get(Folder, folder_id)
        paths[folder_id] = folder.path if folder is not None else "?"
    return paths


def _row(job: Any) -> Any:
    from kong.model.job import JobRow

    return JobRow(job.job_id, job.batch_job_id, job.driver, job.profile, job.folder_id,
                  job.command, job.status, job.created_at.timestamp(),
                  job.updated_at.timestamp(), job.cores, job.memory)


@cli.command("mkdir")
@click.argument("paths", nargs=-1, required=True, type=FOLDER)
@click.option("-p", "--parents", is_flag=True,
              help="Create missing parent folders; no error if the folder exists.")
@pass_context
def mkdir_command(obj: Context, paths: Sequence[str], parents: bool) -> None:
    """Create the folders PATHS (relative to the current folder, or absolute)."""
    for path in paths:
        obj.state.mkdir(path, exist_ok=parents, create_parent=parents)


@cli.command("mv")
@click.argument("source", type=JOBSPEC)
@click.argument("dest", type=FOLDER)
@pass_context
def mv_command(obj: Context, source: str, dest: str) -> None:
    """Move jobs or folders SOURCE into folder DEST, or rename a folder when DEST does not
    exist."""
    moved = obj.state.mv(source, dest)
    click.echo(f"moved {len(moved)} item(s)")


@cli.command("rm")
@click.argument("spec", type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Remove folders and everything in them.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def rm_command(obj: Context, spec: str, recursive: bool, yes: bool) -> None:
    """Remove jobs (killing them if they run, deleting their files) or folders.

    Asks before removing anything unless -y is given; without a terminal to
    ask on, it refuses instead.
    """
    from kong import ui

    with ui.spinner("Removing"):
        removed = obj.state.rm(spec, recursive=recursive, confirm=_confirm(yes))
    click.echo("removed" if removed else "nothing removed")


@cli.command("cd")
@click.argument("path", default="/", required=False, type=FOLDER)
@pass_context
def cd_command(obj: Context, path: str) -> None:
    """Change the current folder to PATH (default: /); meant for the interactive shell."""
    obj.state.cd(path)


@cli.command("pwd")
@pass_context
def pwd_command(obj: Context) -> None:
    """Print the current folder."""
    click.echo(obj.state.cwd.path)


# -- jobs -------------------------------------------------------------------------------


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        out[key] = value
    return out


def _option_value(value: str) -> Any:
    """Driver options from the command line: numbers and booleans as such."""
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) else value


@cli.command("create-job", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--profile", metavar="NAME",
              help="Profile (cluster) to run on; default: the current profile.")
@click.option("-f", "--folder", metavar="PATH", type=FOLDER,
              help="Folder for the job (default: current).")
@click.option("-c", "--cores", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cores for the job (KONG_JOB_NPROC).")
@click.option("-m", "--memory", type=click.IntRange(min=1), metavar="MB",
              help="Memory for the job in MB.")
@click.option("-a", "--arg", "args", multiple=True, metavar="KEY=VALUE",
              help="Driver option for this job, e.g. partition=short, walltime=1:00:00.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the job (repeatable).")
@click.option("--cwd", metavar="DIR", help="Working dir of the job on its host.")
@click.option("-s", "--submit", is_flag=True, help="Submit the job right away.")
@pass_context
def create_job_command(
    obj: Context,
    command: Sequence[str],
    profile: str | None,
    folder: str | None,
    cores: int,
    memory: int | None,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str | None,
    submit: bool,
) -> None:
    """Create a job that runs COMMAND (put it after --, e.g. kong create-job -- ./run.sh 3).

    The command runs under /bin/sh on the job's host; a single argument is
    used as is (so it may hold pipes and redirections), several are quoted.
    """
    import shlex

    text = command[0] if len(command) == 1 else shlex.join(command)
    options = {k: _option_value(v) for k, v in _parse_pairs(args, "--arg").items()}
    job = obj.state.create_job(
        command=text,
        profile=profile,
        folder=folder,
        cores=cores,
        memory=memory,
        cwd=cwd,
        env=_parse_pairs(env, "--env") or None,
        **options,
    )
    if submit:
        from kong import ui

        with ui.spinner("Submitting"):
            obj.state.submit_job(job)
    click.echo(f"created job {job.job_id}" + (" (submitted)" if submit else ""))


def _bulk_progress(bar: Any) -> Callable[[int, int], None]:
    task = bar.task_ids[0]

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return progress


@cli.command("submit")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("--force", is_flag=True,
              help="Submit again jobs whose earlier submission kong cannot settle "
                   "(it may be on the cluster: check first).")
@pass_context
def submit_command(obj: Context, specs: Sequence[str], recursive: bool, force: bool) -> None:
    """Submit the selected jobs that have not been submitted yet (status CREATED)."""
    from kong import ui

    jobs = [j for j in obj.state.select_jobs(list(specs), recursive) if j.status.name == "CREATED"]
    if not jobs:
        click.echo("no jobs to submit (all selected jobs were submitted before)")
        return
    with ui.progress_bar("Submitting", len(jobs)) as bar:
        submitted = obj.state.submit_job(jobs, progress=_bulk_progress(bar), force=force)
        bar.update(bar.task_ids[0], completed=len(submitted))
    click.echo(f"submitted {len(submitted)} job(s)")


@cli.command("kill")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def kill_command(obj: Context, specs: Sequence[str], recursive: bool, yes: bool) -> None:
    """Kill the selected jobs that are queued or running; they end FAILED."""
    from kong import ui

    with ui.spinner("Killing"):
        killed = obj.state.kill_job(list(specs), recursive=recursive, confirm=_confirm(yes))
    click.echo(f"killed {len(killed)} job(s)")


@cli.command("resubmit")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-F", "--failed", "failed_only", is_flag=True, help="Only jobs that FAILED.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def resubmit_command(
    obj: Context, specs: Sequence[str], recursive: bool, failed_only: bool, yes: bool
) -> None:
    """Run the selected jobs again from scratch (earlier batch ids kept in their history)."""
    from kong import ui

    state = obj.state
    jobs = state.select_jobs(list(specs), recursive)
    if failed_only:
        jobs = [j for j in jobs if j.status.name == "FAILED"]
    if not jobs:
        click.echo("no jobs to resubmit")
        return
    # Ask before the progress bar takes over the terminal.
    if not _confirm(yes)(f"Resubmit {len(jobs)} job(s)?"):
        click.echo("resubmitted 0 job(s)")
        return
    with ui.progress_bar("Resubmitting", len(jobs)) as bar:
        done = state.resubmit_job(jobs, progress=_bulk_progress(bar))
        bar.update(bar.task_ids[0], completed=len(done))
    click.echo(f"resubmitted {len(done)} job(s)")


@cli.command("wait")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-n", "--notify", is_flag=True,
              help="When done (or timed out), send one notification to the targets under "
                   "`notify:` in the config.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Give up after this long (exit code 3).")
@click.option("-i", "--poll-interval", type=click.FloatRange(min=0.05), metavar="SECONDS",
              help="Seconds between status queries (default: the driver's).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, only the final line.")
@pass_context
def wait_command(
    obj: Context,
    specs: Sequence[str],
    recursive: bool,
    notify: bool,
    timeout: float | None,
    poll_interval: float | None,
    quiet: bool,
) -> None:
    """Wait until the selected jobs have finished, showing progress.

    Exit code 0 when all COMPLETED, 1 when any did not, 3 on timeout.
    """
    from kong import ui
    from kong.notify import summary

    state = obj.state
    if notify and not state.config.notify:
        click.echo("kong: warning: --notify, but the config has no `notify:` targets", err=True)
    it = state.wait(list(specs), recursive=recursive, notify=notify, timeout=timeout,
                    poll_interval=poll_interval, progress=True)
    jobs: Sequence[Any] = []
    with ui.progress_bar("Waiting", None, disable=quiet) as bar:
        task = bar.task_ids[0]
        for jobs in it:
            done = sum(1 for j in jobs if j.status.finished)
            bar.update(task, total=len(jobs), completed=done,
                       description=f"Waiting ({summary(jobs)})")
    click.echo(f"done: {summary(jobs) or 'no jobs'}")
    if any(j.status.name != "COMPLETED" for j in jobs):
        raise SystemExit(1)


@cli.command("update")
@click.argument("specs", nargs=-1, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@pass_context
def update_command(obj: Context, specs: Sequence[str], recursive: bool) -> None:
    """Refresh the status of the selected jobs (default: all below the current folder).

    One status query per profile, however many jobs. Alias: refresh.
    """
    from kong import ui
    from kong.notify import summary

    state = obj.state
    jobs = state.select_jobs(list(specs) or ["."], recursive or not specs)
    with ui.spinner(f"Refreshing {len(jobs)} job(s)"):
        state.refresh_jobs(jobs)
    click.echo(summary(jobs) or "no jobs")


@cli.command("info")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_context
def info_command(obj: Context, specs: Sequence[str], recursive: bool, as_json: bool) -> None:
    """Show everything kong knows about the selected jobs."""
    from kong import ui

    jobs = obj.state.select_jobs(list(specs), recursive)
    if as_json:
        ui.print_json([ui.job_dict(j) for j in jobs])
        return
    ui.render_info(jobs)


# -- logs -------------------------------------------------------------------------------


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


# -- profiles ---------------------------------------------------------------------------


@cli.group("profile", invoke_without_command=True, context_settings=CONTEXT_SETTINGS)
@click.pass_context
def profile_group(ctx: click.Context) -> None:
    """Profiles (clusters): list them, show or switch the default, test a connection.

    Without a subcommand: list.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(profile_list_command)


@profile_group.command("list")
@pass_context
def profile_list_command(obj: Context) -> None:
    """List the profiles of the config with driver and host; * marks the current one."""
    from kong import ui

    state = obj.state
    rows = []
    for name, prof in state.config.profiles.items():
        host = prof.host or "(this machine)"
        if prof.user:
            host = f"{prof.user}@{host}"
        if prof.port:
            host = f"{host}:{prof.port}"
        rows.append(["*" if name == state.profile else " ", name, prof.driver, host,
                     prof.remote_dir or "-"])
    ui.render_table(["", "profile", "driver", "host", "remote dir"], rows)


@profile_group.command("show")
@pass_context
def profile_show_command(obj: Context) -> None:
    """Print the current profile (where create-job puts new jobs)."""
    click.echo(obj.state.profile)


@profile_group.command("use")
@click.argument("name")
@pass_context
def profile_use_command(obj: Context, name: str) -> None:
    """Make NAME the profile new jobs go to, for the rest of this shell session.

    (From a terminal, use kong --profile NAME, or default_profile in config.yml.)
    """
    state = obj.state
    state.profile = state.config.profile(name).name
    click.echo(f"profile: {state.profile}")


@profile_group.command("test")
@click.argument("name", required=False)
@click.option("-c", "--count", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many round trips to time after connecting.")
@pass_context
def profile_test_command(obj: Context, name: str | None, count: int) -> None:
    """Run `true` on the host of profile NAME (default: current) and time the round trip."""
    import time

    from kong import ui
    from kong.remote import transport_for

    state = obj.state
    prof = state.config.profile(name or state.profile)
    with ui.spinner(f"Connecting ({prof.name})"):
        transport = transport_for(prof)
        t0 = time.perf_counter()
        transport.run_checked(["true"])
        first = time.perf_counter() - t0
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            transport.run_checked(["true"])
            times.append(time.perf_counter() - t0)
    best = min(times) * 1000
    mean = sum(times) / len(times) * 1000
    click.echo(f"{prof.name}: ok via {transport.label}: first command {first * 1000:.1f} ms "
               f"(with connecting), round trip {best:.1f} ms best, {mean:.1f} ms mean "
               f"of {count}")


# -- the shell --------------------------------------------------------------------------


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """Show the list of commands, or the help of COMMAND."""
    root = ctx.find_root()
    if command is None:
        click.echo(root.get_help())
        return
    cmd = cli.get_command(root, command)
    if cmd is None:
        raise click.UsageError(f"no such command: {command}")
    with click.Context(cmd, info_name=cmd.name, parent=root) as sub:
        click.echo(cmd.get_help(sub))


@cli.command("exit")
@pass_context
def exit_command(obj: Context) -> None:
    """Leave the interactive shell (as does Ctrl-D). Alias: quit."""
    obj.exit_requested = True


# -- entry point ------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"kong: error: {message}", err=True)
    raise SystemExit(code)


def run(args: Sequence[str] | None, obj: Context | None = None) -> int:
    """Run one command line; user errors become one line on stderr and an exit code."""
    try:
        cli.main(args=list(args) if args is not None else None, prog_name="kong",
                 standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see: kong {exc.ctx.command_path.partition(' ')[2]} --help)".replace(
            "kong  ", "kong ") if exc.ctx else ""
        click.echo(f"kong: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"kong: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KongError as exc:
        click.echo(f"kong: error: {exc}", err=True)
        return 1
    except TimeoutError as exc:
        click.echo(f"kong: timeout: {exc}", err=True)
        return 3
    except (click.Abort, KeyboardInterrupt):
        click.echo("kong: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def main() -> None:
    sys.exit(run(None))


from kong.agent_cli import COMMANDS as _AGENT_COMMANDS  # noqa: E402 - agent, connect, disconnect

for _command in _AGENT_COMMANDS:
    cli.add_command(_command)
