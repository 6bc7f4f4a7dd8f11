"""``kong report``: requested against used, per folder (kong.report)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from kong.cli.group import JOBSPEC, Context, cli, pass_context


@cli.command("report")
@click.argument("specs", nargs=-1, type=JOBSPEC)
@click.option("-r", "--recursive", is_flag=True, help="Include the jobs of folders below.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--no-query", is_flag=True,
              help="Use only what kong stored; do not ask the clusters for missing usage.")
@pass_context
def report_command(obj: Context, specs: Sequence[str], recursive: bool, as_json: bool,
                   no_query: bool) -> None:
    """What the jobs in SPECS (default: the current folder) asked for and used.

    Per folder: jobs by status and end reason (TIMEOUT, OUT_OF_MEMORY, CANCELLED,
    NODE_FAIL, PREEMPTED, EXIT(n), SIGNAL(n)); memory requested and used (median,
    max); CPU efficiency (CPU time / (run time x cores)); core-hours used and
    wasted (allocated minus used); a histogram of memory used / requested.

    Peak memory on Slurm is the largest MaxRSS of the job's steps, as seff reports
    it: sacct has one row for the job script (the "batch" step), one for the
    allocation's own processes ("extern") and one per srun ("0", "1", ...). A
    scheduler that recorded no figure is shown as n/a, never as 0. Finished jobs
    without stored usage are asked for it once per cluster.
    """
    from kong import report, ui

    with ui.spinner("Collecting usage"):
        reports = obj.state.report(list(specs) or ["."], recursive, query=not no_query)
    if as_json:
        ui.print_json([r.as_dict() for r in reports])
        return
    if not reports:
        click.echo("no jobs")
        return
    report.render(reports, sys.stdout)
