"""``kong agent start|stop|status``, ``kong connect`` and ``kong disconnect``.

The agent (``kong.remote.agent``) holds the SSH connections of every kong process
of this user; these commands start and stop it, show what it holds, and open or
close a profile's connections on purpose (``kong connect`` from a terminal is how
a script or cron job gets past a one-time-code login).
"""

from __future__ import annotations

from typing import Any

import click

from kong.errors import KongError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _config(ctx: click.Context) -> Any:
    obj = ctx.obj
    if obj is not None and getattr(obj, "state_ready", False):
        return obj.state.config
    from kong.config import Config

    return Config()


def _profile_name(ctx: click.Context, name: str | None) -> str:
    if name:
        return name
    obj = ctx.obj
    if obj is not None and getattr(obj, "state_ready", False):
        return str(obj.state.profile)
    return str(_config(ctx).default_profile)


def _agent_transport(ctx: click.Context, name: str | None) -> Any:
    from kong.remote import agent_enabled, transport_for
    from kong.remote.agent_transport import AgentTransport

    config = _config(ctx)
    profile = config.profile(_profile_name(ctx, name))
    if profile.host is None:
        raise KongError(f"profile {profile.name} runs on this machine: nothing to connect to")
    if not agent_enabled(config):
        raise KongError("connections are per process while the kong agent is off "
                        "(agent: false in the config, or KONG_AGENT=0)")
    transport = transport_for(profile, config)
    if not isinstance(transport, AgentTransport) or transport._fallback is not None:
        raise KongError("the kong agent cannot run here: connections are per process")
    return profile, transport


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


@click.group("agent", context_settings=CONTEXT_SETTINGS)
def agent_group() -> None:
    """The kong agent: one per user, holding the SSH connections of all kong processes.

    kong starts it on demand and it stops after `agent_idle_timeout` seconds
    without requests (config; default 1800). `agent: false` in the config keeps
    connections in each process instead.
    """


@agent_group.command("start")
@click.option("--idle-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop after this long without requests (default: the config's).")
@click.option("--foreground", is_flag=True, help="Run in this process, logging to stderr.")
@click.pass_context
def agent_start_command(ctx: click.Context, idle_timeout: float | None, foreground: bool) -> None:
    """Start the agent (if it is not running yet)."""
    from kong.remote import agent

    idle = idle_timeout or float(_config(ctx).agent_idle_timeout)
    if foreground:
        raise SystemExit(agent.main(["serve", "--idle-timeout", str(idle)]))
    before = agent.status()
    if before is not None:
        click.echo(f"kong agent already running (pid {before['pid']}, {before['socket']})")
        return
    agent.start(idle)
    now = agent.status()
    if now is None:
        raise KongError("the kong agent started but does not answer")
    click.echo(f"kong agent started (pid {now['pid']}, {now['socket']})")


@agent_group.command("stop")
def agent_stop_command() -> None:
    """Stop the agent, closing every connection it holds."""
    from kong.remote import agent

    pid = agent.stop_agent()
    click.echo("kong agent is not running" if pid is None else f"kong agent stopped (pid {pid})")


@agent_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def agent_status_command(as_json: bool) -> None:
    """Per host: connections open, channels in use, connections opened since start,
    commands run, bytes moved; per shared status view: jobs followed, scheduler
    queries run, answers given, the interval now and the age of the last answer."""
    from kong import ui
    from kong.remote import agent

    st = agent.status()
    if as_json:
        ui.print_json(st if st is not None else {"running": False})
        return
    if st is None:
        click.echo(f"kong agent is not running ({agent.socket_path()})")
        return
    click.echo(f"kong agent pid {st['pid']}, up {st['uptime']:.0f} s, stops after "
               f"{st['idle_timeout']:.0f} s idle; {st['socket']}")
    turned_away = {"refused (another uid)": st.get("refused") or 0,
                   "dropped (bad or silent)": st.get("dropped") or 0}
    if any(turned_away.values()):
        # Someone else knocking, or a broken client: worth a look at agent.log.
        click.echo("clients " + ", ".join(f"{what}: {n}" for what, n in turned_away.items())
                   + f"; see {agent.agent_dir() / 'agent.log'}")
    rows = [[h["host"], str(h["connections"]), str(h["channels_in_use"]),
             str(h["connections_opened"]), str(h["commands"]),
             _size(h["bytes_sent"]), _size(h["bytes_received"])] for h in st["hosts"]]
    if rows:
        ui.render_table(["host", "connections", "channels", "opened", "commands", "sent",
                         "received"], rows)
        for h in st["hosts"]:
            if h.get("ciphers"):  # what a pull's speed hangs on
                click.echo(f"{h['host']}: cipher {', '.join(h['ciphers'])}")
    else:
        click.echo("no hosts yet")
    # The shared status views (one per cluster and query): what every client's
    # refresh was answered from, and how often the scheduler was really asked.
    views = [[v["host"], str(v["jobs"]), str(v["runs"]), str(v["served"]),
              f"{v['interval']:g} s", "-" if v["age"] is None else f"{v['age']:.0f} s",
              str(v["failure"] or "")[:60]] for v in st.get("views") or []]
    if views:
        ui.render_table(["status view", "jobs", "queries", "answers", "interval", "age",
                         "last failure"], views)


@click.command("connect", context_settings=CONTEXT_SETTINGS)
@click.argument("profile", required=False)
@click.pass_context
def connect_command(ctx: click.Context, profile: str | None) -> None:
    """Open a connection to PROFILE's host in the agent now, asking for a password or
    one-time code on this terminal; other kong processes (scripts, `kong wait`) then
    use it without asking."""
    prof, transport = _agent_transport(ctx, profile)
    reply = transport.connect()
    how = "opened" if reply.get("opened") else "already open"
    click.echo(f"{prof.name}: connected to {transport.label} ({how}; "
               f"{reply.get('connections')} connection(s) shared by all kong processes)")


@click.command("disconnect", context_settings=CONTEXT_SETTINGS)
@click.argument("profile", required=False)
@click.pass_context
def disconnect_command(ctx: click.Context, profile: str | None) -> None:
    """Close the agent's connections to PROFILE's host (the next command reconnects)."""
    prof, transport = _agent_transport(ctx, profile)
    closed = transport.disconnect()
    click.echo(f"{prof.name}: closed {closed} connection(s) to {transport.label}")


COMMANDS = (agent_group, connect_command, disconnect_command)

