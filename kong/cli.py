"""The ``kong`` command line: one click command per operation, each a thin call
into ``State``. The REPL (``kong/repl``) runs these same commands on its own,
long-lived State, so every command has exactly one implementation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from kong import __version__
from kong.errors import KongError


class Context:
    """What commands share: the State (created on first use) and how to talk to people."""

    def __init__(self, profile: str | None = None, state: Any = None, interactive: bool = False):
        self._profile = profile
        self._state = state
        self.interactive = interactive

    @property
    def state(self) -> Any:
        if self._state is None:
            from kong.state import State

            self._state = State.get_instance(profile=self._profile)
        return self._state


pass_context = click.make_pass_decorator(Context)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _confirm(yes: bool) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise KongError(f"{question} Refusing without a terminal to ask; pass -y to confirm")
        return click.confirm(question, default=False)

    return ask


@click.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
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
    """
    if ctx.obj is None:
        ctx.obj = Context(profile=profile)
    if ctx.invoked_subcommand is None:
        from kong.repl import run_repl

        run_repl(ctx.obj)


# -- folders ----------------------------------------------------------------------------


@cli.command("ls")
@click.argument("path", default=".", required=False)
@click.option("-R", "--recursive", is_flag=True, help="List the jobs of all folders below PATH.")
@click.option("-u", "--refresh", is_flag=True,
              help="Ask the clusters for the current status first (one query per profile).")
@click.option("-s", "--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(["UNKNOWN", "CREATED", "SUBMITTED", "RUNNING", "FAILED",
                                 "COMPLETED"], case_sensitive=False),
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

    Folders show their job counts per status (C created, S submitted, R
    running, F failed, C completed, U unknown) over everything below them.
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
        ui.print_json({
            "folders": [
                {"name": f.name, "path": f.path,
                 "counts": {s.name: n for s, n in counts[f.folder_id].items()}}
                for f in folders
            ],
            "jobs": [
                {**ui.row_dict(r),
                 **({"size": job_sizes.get(r.job_id)} if job_sizes is not None else {}),
                 **((extra_data or {}).get(r.job_id, {}))}
                for r in rows
            ],
        })
        return
    ui.render_listing(folders, counts, rows, sizes=job_sizes, extra=extra_data)


def _row(job: Any) -> Any:
    from kong.model.job import JobRow

    return JobRow(job.job_id, job.batch_job_id, job.driver, job.profile, job.folder_id,
                  job.command, job.status, job.created_at.timestamp(),
                  job.updated_at.timestamp(), job.cores, job.memory)


@cli.command("mkdir")
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "--parents", is_flag=True,
              help="Create missing parent folders; no error if the folder exists.")
@pass_context
def mkdir_command(obj: Context, paths: Sequence[str], parents: bool) -> None:
    """Create folders."""
    for path in paths:
        obj.state.mkdir(path, exist_ok=parents, create_parent=parents)


@cli.command("mv")
@click.argument("source")
@click.argument("dest")
@pass_context
def mv_command(obj: Context, source: str, dest: str) -> None:
    """Move jobs or folders into folder DEST, or rename a folder when DEST does not exist."""
    moved = obj.state.mv(source, dest)
    click.echo(f"moved {len(moved)} item(s)")


@cli.command("rm")
@click.argument("spec")
@click.option("-r", "--recursive", is_flag=True, help="Remove folders and everything in them.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def rm_command(obj: Context, spec: str, recursive: bool, yes: bool) -> None:
    """Remove jobs (killing them if they run, deleting their files) or folders."""
    from kong import ui

    with ui.spinner("Removing"):
        removed = obj.state.rm(spec, recursive=recursive, confirm=_confirm(yes))
    if not removed:
        click.echo("nothing removed")


@cli.command("cd")
@click.argument("path", default="/", required=False)
@pass_context
def cd_command(obj: Context, path: str) -> None:
    """Change the current folder (in the interactive shell)."""
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
@click.option("--profile", metavar="NAME", help="Profile (cluster) to run on.")
@click.option("-f", "--folder", metavar="PATH", help="Folder for the job (default: current).")
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
        obj.state.submit_job(job)
    click.echo(f"created job {job.job_id}" + (" (submitted)" if submit else ""))


@cli.command("submit")
@click.argument("specs", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.", default=True,
              hidden=True)
@pass_context
def submit_command(obj: Context, specs: Sequence[str], recursive: bool, yes: bool) -> None:
    """Submit the selected jobs that have not been submitted yet."""
    from kong import ui

    jobs = [j for j in obj.state.select_jobs(list(specs), recursive) if j.status.name == "CREATED"]
    if not jobs:
        click.echo("no jobs to submit (all selected jobs were submitted before)")
        return
    with ui.progress_bar("Submitting", len(jobs)) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(bar.task_ids[0], advance=done)

        submitted = obj.state.submit_job(jobs, progress=progress)
    click.echo(f"submitted {len(submitted)} job(s)")


@cli.command("kill")
@click.argument("specs", nargs=-1, required=True)
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
@click.argument("specs", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-F", "--failed", "failed_only", is_flag=True, help="Only jobs that FAILED.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def resubmit_command(
    obj: Context, specs: Sequence[str], recursive: bool, failed_only: bool, yes: bool
) -> None:
    """Run the selected jobs again from scratch (earlier batch ids kept in their history)."""
    from kong import ui

    with ui.spinner("Resubmitting"):
        jobs = obj.state.resubmit_job(list(specs), recursive=recursive, failed_only=failed_only,
                                      confirm=_confirm(yes))
    click.echo(f"resubmitted {len(jobs)} job(s)")


@cli.command("wait")
@click.argument("specs", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-n", "--notify", is_flag=True,
              help="When done, notify the targets under `notify:` in the config.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Give up after this long (exit code 3).")
@click.option("-i", "--poll-interval", type=click.FloatRange(min=0.05), metavar="SECONDS",
              help="Seconds between status queries (default: the driver's).")
@pass_context
def wait_command(
    obj: Context,
    specs: Sequence[str],
    recursive: bool,
    notify: bool,
    timeout: float | None,
    poll_interval: float | None,
) -> None:
    """Wait until the selected jobs have finished, showing progress.

    Exit code 0 when all COMPLETED, 1 when any FAILED, 3 on timeout.
    """
    from kong import ui
    from kong.notify import summary

    state = obj.state
    it = state.wait(list(specs), recursive=recursive, notify=notify, timeout=timeout,
                    poll_interval=poll_interval, progress=True)
    jobs: Sequence[Any] = []
    with ui.progress_bar("Waiting", 0) as bar:
        task = bar.task_ids[0]
        for jobs in it:
            done = sum(1 for j in jobs if j.status.finished)
            bar.update(task, total=len(jobs), completed=done,
                       description=f"Waiting ({summary(jobs)})")
    click.echo(f"done: {summary(jobs)}")
    if any(j.status.name != "COMPLETED" for j in jobs):
        raise SystemExit(1)


@cli.command("update")
@click.argument("specs", nargs=-1)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@pass_context
def update_command(obj: Context, specs: Sequence[str], recursive: bool) -> None:
    """Refresh the status of the selected jobs (default: all below the current folder)."""
    from kong import ui
    from kong.notify import summary

    state = obj.state
    jobs = state.select_jobs(list(specs) or ["."], recursive or not specs)
    with ui.spinner(f"Refreshing {len(jobs)} job(s)"):
        state.refresh_jobs(jobs)
    click.echo(summary(jobs) or "no jobs")


@cli.command("info")
@click.argument("specs", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_context
def info_command(obj: Context, specs: Sequence[str], recursive: bool, as_json: bool) -> None:
    """Show everything kong knows about the selected jobs."""
    from rich.table import Table

    from kong import ui

    jobs = obj.state.select_jobs(list(specs), recursive)
    if as_json:
        ui.print_json([ui.job_dict(j) for j in jobs])
        return
    for job in jobs:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        d = ui.job_dict(job, with_data=False)
        for key, value in d.items():
            if key == "status":
                value = f"[{ui.STATUS_STYLE[job.status]}]{value}[/]"
            elif key in ("created_at", "updated_at"):
                value = ui.local_time(getattr(job, key))
            table.add_row(key, "-" if value is None else str(value))
        table.add_row("log dir", job.log_dir)
        table.add_row("output dir", job.output_dir)
        for key, value in sorted((job.data or {}).items()):
            table.add_row(f"data.{key}", str(value))
        ui.console.print(table)
        ui.console.print()


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
