"""``kong pull``: bring the jobs' output dirs to the laptop (see ``kong.staging``)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from kong.cli.group import JOBSPEC, Context, cli, pass_context


@cli.command("pull")
@click.argument("spec", type=JOBSPEC)
@click.argument("dest", required=False, type=click.Path(file_okay=False))
@click.option("-r", "--recursive", is_flag=True, help="Include jobs in folders below.")
@click.option("--include", "include", multiple=True, metavar="GLOB",
              help="Only files matching GLOB (a GLOB without / matches the base name; "
                   "repeatable).")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="No files matching GLOB (repeatable).")
@click.option("-n", "--dry-run", is_flag=True,
              help="Show what would come and its size, per job and in total; move nothing.")
@click.option("--remove-remote", is_flag=True,
              help="Then delete the cluster's copy of each finished job's output dir that "
                   "came over whole.")
@click.option("-c", "--checksum", is_flag=True,
              help="A file of the same size is unchanged only if its SHA-256 is "
                   "(the cluster reads every byte); default: size and mtime.")
@pass_context
def pull_command(
    obj: Context,
    spec: str,
    dest: str | None,
    recursive: bool,
    include: Sequence[str],
    exclude: Sequence[str],
    dry_run: bool,
    remove_remote: bool,
    checksum: bool,
) -> None:
    """Copy the output dirs of the jobs in SPEC to DEST/<folder path>/<job id>/.

    DEST defaults to pulled/ under kong's data dir. Only files that are new or
    changed (size or mtime) since the last pull come over, in one listing and one
    stream per cluster; a pull cut short continues where it stopped.
    """
    from kong import ui
    from kong.cli.render import bulk_progress

    state = obj.state
    if dry_run:
        plan = state.pull(spec, dest, recursive=recursive, include=include, exclude=exclude,
                          dry_run=True, remove_remote=remove_remote, checksum=checksum)
        rows = [[str(j.job_id), str(len(j.items)), ui.human_size(j.bytes), str(j.unchanged),
                 "no output dir yet" if j.missing else ""] for j in plan.jobs]
        ui.render_table(["job", "files", "size", "unchanged", ""], rows)
        click.echo(f"would pull {plan.files_planned} file(s), {ui.human_size(plan.bytes_planned)}"
                   f" ({plan.bytes_planned} bytes) into {plan.dest}")
        return
    with ui.bytes_progress("Pulling", None) as bar:  # the total comes with the plan
        result = state.pull(spec, dest, recursive=recursive, include=include, exclude=exclude,
                            remove_remote=remove_remote, progress=bulk_progress(bar),
                            checksum=checksum)
    unchanged = sum(j.unchanged for j in result.jobs)
    click.echo(f"pulled {result.files_moved} file(s), {ui.human_size(result.bytes_moved)} "
               f"into {result.dest} ({unchanged} unchanged)")
    for job_id, path in result.changed:
        click.echo(f"job {job_id}: {path} changed while it was read; pull again to get it",
                   err=True)
    for job_id, path, why in result.failed:
        click.echo(f"job {job_id}: cannot read {path}: {why}", err=True)
    if result.removed_remote:
        click.echo(f"removed the cluster copy of {len(result.removed_remote)} job(s)")
    if result.changed or result.failed:
        raise SystemExit(1)
