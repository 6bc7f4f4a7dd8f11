"""Profile commands: profile list, show, use, test."""

from __future__ import annotations

import click

from kong.cli.group import CONTEXT_SETTINGS, Context, cli, complete_profile, pass_context


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
@click.argument("name", shell_complete=complete_profile)
@pass_context
def profile_use_command(obj: Context, name: str) -> None:
    """Make NAME the profile new jobs go to, for the rest of this shell session.

    (From a terminal, use kong --profile NAME, or default_profile in config.yml.)
    """
    state = obj.state
    profile = state.config.profile(name).name  # an unknown name is reported either way
    if not obj.interactive:
        from kong.errors import KongError

        raise KongError("profile use changes the profile of kong's interactive shell (start "
                        f"it with `kong`); from a terminal, use kong -p {profile} COMMAND, or "
                        "default_profile in config.yml")
    state.profile = profile
    click.echo(f"profile: {state.profile}")


@profile_group.command("test")
@click.argument("name", required=False, shell_complete=complete_profile)
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

