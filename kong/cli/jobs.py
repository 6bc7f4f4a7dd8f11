"""Job commands: create-job, submit, kill, resubmit, wait, update, info."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from kong.cli.group import (
    FOLDER,
    JOBSPEC,
    Confirmation,
    Context,
    cli,
    complete_profile,
    pass_context,
)
from kong.cli.render import bulk_progress


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        out[key] = value
    return out


#: create_job's own arguments: `-a` cannot pass them a second time
_CREATE_JOB_PARAMETERS = {"command", "profile", "folder", "cores", "memory", "cwd", "env",
                          "inputs"}


def _option_value(value: str) -> Any:
    """Driver options from the command line: numbers and booleans as such."""
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) else value


def _policy(text: str) -> Any:
    """A retry policy from the command line: a YAML mapping (checked by kong.retry)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise click.BadParameter(f"not a YAML mapping: {text!r}", param_hint="--retry"
                                 ) from None


def _input_pair(text: str) -> tuple[str, str] | str:
    """``PATH`` or ``PATH=NAME`` (a path that itself holds ``=`` and exists stays whole)."""
    import os

    path, sep, name = text.rpartition("=")
    if not sep or not path or os.path.exists(text):
        return text
    return (path, name)


@cli.command("create-job", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--from-file", "from_file", metavar="FILE",
              help="Create one job per line of FILE (- for stdin) instead of COMMAND, all "
                   "in one transaction; blank lines and # comments are skipped.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new job ids, one a line.")
@click.option("--profile", metavar="NAME", shell_complete=complete_profile,
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
@click.option("-i", "--input", "inputs", multiple=True, metavar="PATH[=NAME]",
              help="File or dir copied into the job's output dir at submit, under its "
                   "own name or NAME (repeatable).")
@click.option("-s", "--submit", is_flag=True, help="Submit the job right away.")
@click.option("--retry", "retry_policy", metavar="POLICY",
              help="Retry policy of the job, e.g. '{on: [TIMEOUT], max: 2, walltime: x2}'.")
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
    inputs: Sequence[str],
    submit: bool,
    from_file: str | None,
    quiet: bool,
    retry_policy: str | None,
) -> None:
    """Create a job that runs COMMAND (put it after --, e.g. kong create-job -- ./run.sh 3).

    The command runs under /bin/sh on the job's host; a single argument is
    used as is (so it may hold pipes and redirections), several are quoted.
    With --from-file, each line of the file is one such command (see also: sweep).
    """
    import shlex

    from kong.cli.sweep import create_from_file, driver_options, env_pairs

    options = driver_options(args)
    if retry_policy is not None:
        options["retry"] = _policy(retry_policy)
    if from_file is not None:
        if command:
            raise click.UsageError("give COMMAND or --from-file, not both")
        if inputs:
            raise click.UsageError("--input is for one job; give the inputs of many "
                                   "jobs from Python (create_job(inputs=...))")
        create_from_file(obj, from_file, profile, folder,
                         {"cores": cores, "memory": memory, "cwd": cwd,
                          "env": env_pairs(env), **options}, submit, quiet)
        return
    if not command:
        raise click.UsageError("missing COMMAND (or --from-file FILE)")
    text = command[0] if len(command) == 1 else shlex.join(command)
    job = obj.state.create_job(
        command=text,
        profile=profile,
        folder=folder,
        cores=cores,
        memory=memory,
        cwd=cwd,
        env=_parse_pairs(env, "--env") or None,
        **({"inputs": [_input_pair(i) for i in inputs]} if inputs else {}),
        **options,
    )
    if submit:
        from kong import ui

        with ui.spinner("Submitting"):
            obj.state.submit_job(job)
    if quiet:
        click.echo(job.job_id)
        return
    click.echo(f"created job {job.job_id}" + (" (submitted)" if submit else ""))


@cli.command("submit")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("--force", is_flag=True,
              help="Submit again jobs whose earlier submission kong cannot settle "
                   "(it may be on the cluster: check first).")
@click.option("-w", "--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only jobs whose sweep parameter (or data) KEY is VALUE (KEY=A,B: either).")
@pass_context
def submit_command(obj: Context, specs: Sequence[str], recursive: bool, force: bool,
                   where: Sequence[str]) -> None:
    """Submit the selected jobs that have not been submitted yet (status CREATED)."""
    from kong import ui

    jobs = [j for j in obj.state.select_jobs(list(specs), recursive) if j.status.name == "CREATED"]
    if where:
        jobs = obj.state.jobs_where(jobs, list(where))
    if not jobs:
        click.echo("no jobs to submit (all selected jobs were submitted before)")
        return
    with ui.progress_bar("Submitting", len(jobs)) as bar:
        submitted = obj.state.submit_job(jobs, progress=bulk_progress(bar), force=force)
        bar.update(bar.task_ids[0], completed=len(submitted))
    click.echo(f"submitted {len(submitted)} job(s)")


@cli.command("kill")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-w", "--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only jobs whose sweep parameter (or data) KEY is VALUE (KEY=A,B: either).")
@pass_context
def kill_command(obj: Context, specs: Sequence[str], recursive: bool, yes: bool,
                 where: Sequence[str]) -> None:
    """Kill the selected jobs that are queued or running; they end FAILED."""
    selected: Any = list(specs)
    if where:
        selected = obj.state.jobs_where(obj.state.select_jobs(selected, recursive), list(where))
    with Confirmation(yes, spinning="Killing") as ask:
        killed = obj.state.kill_job(selected, recursive=recursive, confirm=ask)
    if ask.declined:
        click.echo("nothing killed (not confirmed)")
    elif not killed:
        click.echo("no jobs to kill (none of the selected jobs is queued or running)")
    else:
        click.echo(f"killed {len(killed)} job(s)")


@cli.command("resubmit")
@click.argument("specs", nargs=-1, required=True, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("-F", "--failed", "failed_only", is_flag=True, help="Only jobs that FAILED.")
@click.option("--reason", "reasons", multiple=True, metavar="REASON",
              help="Only jobs that ended for this reason: timeout, out_of_memory (oom), "
                   "node_fail, preempted, cancelled, exit, EXIT(n), signal (repeatable).")
@click.option("--walltime", metavar="CHANGE",
              help="New walltime: x2 (times), +1:00:00 (more by) or 4:00:00.")
@click.option("--memory", metavar="CHANGE", help="New memory: x1.5, +4G or 8G.")
@click.option("--cores", metavar="CHANGE", help="New cores: x2, +2 or 4.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def resubmit_command(
    obj: Context, specs: Sequence[str], recursive: bool, failed_only: bool,
    reasons: Sequence[str], walltime: str | None, memory: str | None, cores: str | None,
    yes: bool,
) -> None:
    """Run the selected jobs again from scratch (earlier batch ids kept in their history),
    with more walltime, memory or cores if asked, within the queue's limits."""
    from kong import ui

    state = obj.state
    changes = {"walltime": walltime, "memory": memory, "cores": cores}
    state.resubmit_changes(**changes)  # a bad change is refused before anything is asked
    jobs = state.resubmit_selection(list(specs), recursive, failed_only, list(reasons))
    if not jobs:
        click.echo("no jobs to resubmit")
        return
    # Ask before the progress bar takes over the terminal.
    if not Confirmation(yes)(f"Resubmit {len(jobs)} job(s)?"):
        click.echo("nothing resubmitted (not confirmed)")
        return
    with ui.progress_bar("Resubmitting", len(jobs)) as bar:
        done = state.resubmit_job(jobs, progress=bulk_progress(bar), **changes)
        bar.update(bar.task_ids[0], completed=len(done))
    for job in done:
        note = (job.data or {}).get("retry_note")
        if note:
            click.echo(f"kong: job {job.job_id}: {note}", err=True)
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
@click.option("-w", "--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Only jobs whose sweep parameter (or data) KEY is VALUE (KEY=A,B: either).")
@pass_context
def info_command(obj: Context, specs: Sequence[str], recursive: bool, as_json: bool,
                 where: Sequence[str]) -> None:
    """Show everything kong knows about the selected jobs."""
    from kong import ui

    jobs = obj.state.select_jobs(list(specs), recursive)
    if where:
        jobs = obj.state.jobs_where(jobs, list(where))
    obj.state.load_data(jobs)
    if as_json:
        ui.print_json([ui.job_dict(j) for j in jobs])
        return
    ui.render_info(jobs)

