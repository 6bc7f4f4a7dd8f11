"""Many jobs from one command: ``kong sweep`` and ``kong create-job --from-file``.

Both make all their jobs in one process and one transaction (``State.sweep``,
``State.create_jobs``): all of them, or, on any refusal, none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from kong.cli.group import FOLDER, Confirmation, Context, cli, complete_profile, pass_context
from kong.sweep import CONFIRM_ABOVE


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The per-job options of ``kong sweep``, as ``kong create-job`` spells them."""
    for option in reversed([
        click.option("--profile", metavar="NAME", shell_complete=complete_profile,
                     help="Profile (cluster) to run on; default: the current profile."),
        click.option("-f", "--folder", metavar="PATH", type=FOLDER,
                     help="Folder for the jobs (default: current); --folders go below it."),
        click.option("-c", "--cores", type=click.IntRange(min=1), default=1,
                     show_default=True, help="Cores for each job (KONG_JOB_NPROC)."),
        click.option("-m", "--memory", type=click.IntRange(min=1), metavar="MB",
                     help="Memory for each job in MB."),
        click.option("-a", "--arg", "args", multiple=True, metavar="KEY=VALUE",
                     help="Driver option for each job, e.g. partition=short."),
        click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
                     help="Environment variable for each job (repeatable; VALUE may hold "
                          "{name} placeholders, not quoted)."),
        click.option("--cwd", metavar="DIR", help="Working dir of the jobs on their host."),
        click.option("-s", "--submit", is_flag=True, help="Submit the jobs right away."),
        click.option("-q", "--quiet", is_flag=True,
                     help="Print only the new job ids, one per line (for pipes)."),
    ]):
        command = option(command)
    return command


def driver_options(args: Sequence[str]) -> dict[str, Any]:
    """``-a KEY=VALUE`` as driver options (numbers and booleans as such)."""
    from kong.cli.jobs import _CREATE_JOB_PARAMETERS, _option_value, _parse_pairs

    options = {k: _option_value(v) for k, v in _parse_pairs(args, "--arg").items()}
    if taken := sorted(set(options) & _CREATE_JOB_PARAMETERS):
        raise click.BadParameter(f"{taken[0]} has an option of its own (see --help), "
                                 f"not -a {taken[0]}=...", param_hint="--arg")
    return options


def env_pairs(env: Sequence[str]) -> dict[str, str] | None:
    from kong.cli.jobs import _parse_pairs

    return _parse_pairs(env, "--env") or None


def report(obj: Context, jobs: Sequence[Any], submit: bool, quiet: bool) -> None:
    """Submit the new jobs when asked (one bulk submit), then say what was made."""
    if submit and jobs:
        from kong import ui
        from kong.cli.render import bulk_progress

        with ui.progress_bar("Submitting", len(jobs), disable=quiet) as bar:
            obj.state.submit_job(list(jobs), progress=bulk_progress(bar))
    if quiet:
        sys.stdout.write("".join(f"{job.job_id}\n" for job in jobs))
        return
    click.echo(f"created {len(jobs)} job(s){id_span(jobs)}"
               + (" (submitted)" if submit and jobs else ""))


def id_span(jobs: Sequence[Any]) -> str:
    """``: 12..2011`` when the ids run without a gap, ``: 12, 15`` for a few others."""
    ids = [job.job_id for job in jobs]
    if not ids:
        return ""
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return f": {ids[0]}" if len(ids) == 1 else f": {ids[0]}..{ids[-1]}"
    shown = ", ".join(map(str, ids[:5]))
    return f": {shown}{', ...' if len(ids) > 5 else ''}"


@cli.command("sweep")
@click.argument("template")
@click.option("-p", "--param", "params", multiple=True, required=True, metavar="NAME=VALUES",
              help="A parameter and its values: x=0.1,0.2,0.5 or seed=1..100 (whole numbers, "
                   "both ends in) or lr=0..1:0.25 (START..STOP:STEP, STOP in when a step lands "
                   "on it); items may be mixed: n=1..3,10. Repeatable.")
@click.option("--zip", "zipped", is_flag=True,
              help="The n-th values of all parameters together (they need as many values) "
                   "instead of every combination.")
@click.option("--folders", metavar="TEMPLATE",
              help="Put each job in this folder below the target folder, made where "
                   "missing, e.g. '{x}' or 'x={x}/seed={seed}'.")
@click.option("-y", "--yes", is_flag=True, help=f"Do not ask before making more than "
              f"{CONFIRM_ABOVE:,} jobs.")
@job_options
@pass_context
def sweep_command(
    obj: Context,
    template: str,
    params: Sequence[str],
    zipped: bool,
    folders: str | None,
    yes: bool,
    profile: str | None,
    folder: str | None,
    cores: int,
    memory: int | None,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str | None,
    submit: bool,
    quiet: bool,
) -> None:
    """Create one job per combination of parameter values.

    TEMPLATE is the job's shell command with {name} placeholders, e.g. kong sweep
    'python sim.py --x {x} --seed {seed}' -p x=0.1,0.2 -p seed=1..100. Each
    placeholder becomes the value quoted for the shell (a value with a space or a
    quote stays one word); write {{ and }} for a literal brace (${{HOME}}). Each job
    keeps its values: kong ls -x x -x seed shows them, kong ls --where x=0.2 selects
    by them. All jobs are made in one transaction, or none.
    """
    jobs = obj.state.sweep(
        template, list(params), zip=zipped, folders=folders, folder=folder,
        profile=profile, confirm=Confirmation(yes), cores=cores, memory=memory, cwd=cwd,
        env=env_pairs(env), **driver_options(args),
    )
    if not jobs:
        click.echo("nothing created (not confirmed)")
        return
    report(obj, jobs, submit, quiet)


def create_from_file(
    obj: Context,
    source: str,
    profile: str | None,
    folder: str | None,
    options: dict[str, Any],
    submit: bool,
    quiet: bool,
) -> None:
    """``kong create-job --from-file FILE``: one job per line of FILE (``-``: stdin)."""
    from kong import sweep
    from kong.errors import ArgumentValueError

    if source == "-" and obj.interactive:
        raise ArgumentValueError("--from-file -: in kong's shell stdin is the shell's own "
                                 "input; give a file path")
    try:
        if source == "-":
            commands = sweep.read_commands(sys.stdin)
        else:
            with open(source, encoding="utf-8") as lines:
                commands = sweep.read_commands(lines)
    except FileNotFoundError:
        raise ArgumentValueError(f"--from-file: no such file: {source}") from None
    except UnicodeDecodeError as exc:
        raise ArgumentValueError(f"--from-file {source}: not UTF-8 text ({exc.reason} at "
                                 f"byte {exc.start})") from None
    if not commands:
        raise ArgumentValueError(f"--from-file {source}: no commands in it (one a line; "
                                 f"blank lines and # comments are skipped)")
    jobs = obj.state.create_jobs(commands, folder=folder, profile=profile, **options)
    report(obj, jobs, submit, quiet)
