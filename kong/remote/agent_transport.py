"""``AgentTransport``: the SSH transport with its connections in the kong agent.

Like ``SSHTransport`` it is a ``CommandTransport``: its one primitive, running a
command line, goes to the agent (``kong.remote.agent``) instead of an in-process
pool, and every command-building helper (upload, read_range, sizes,
remove_trees) is shared with the in-process transport. Drivers see no
difference, and a process that uses the agent never imports asyncssh.

Where the agent cannot run (no Unix sockets, no fork, it fails to start), the
transport falls back to the in-process pool and says so once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kong.errors import ConnectionLost, TransportError
from kong.remote import agent
from kong.remote.base import CommandResult, LocalFile, TransportStats, Upload
from kong.remote.commands import CommandTransport, command_line
from kong.remote.statusview import Verdict, ViewAnswer
from kong.remote.target import SSHTarget
from kong.remote.transfer import upload_in_pieces

if TYPE_CHECKING:
    from kong.remote.ssh import SSHTransport

log = logging.getLogger(__name__)

_warned = False
#: seconds a listing waits for the agent's view of a cluster before it shows the database
LISTING_WAIT = 5.0
_warn_lock = threading.Lock()


def say_once(message: str, level: int = logging.WARNING) -> None:
    """Log the fallback to in-process SSH once per process, not once per profile."""
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    log.log(level, "%s", message)


class AgentTransport(CommandTransport):
    """Runs commands on one SSH target through the per-user kong agent."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        profile: str | None = None,
        options: dict[str, Any] | None = None,
        idle_timeout: float = agent.DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.target = target
        self.label = target.label
        self.stats = TransportStats()
        self.profile = profile
        self.options = dict(options or {})
        self.umask = str(self.options.pop("umask", None) or self.umask)
        self.idle_timeout = idle_timeout
        self._home: str | None = None
        self._home_lock = threading.Lock()
        self._fallback: SSHTransport | None = None
        self._fallback_lock = threading.Lock()

    def _where(self) -> dict[str, Any]:
        return {"target": agent.target_to_json(self.target), "options": self.options,
                "profile": self.profile}

    def _in_process(self, why: BaseException) -> SSHTransport:
        from kong.remote.ssh import ssh_transport

        with self._fallback_lock:
            if self._fallback is None:
                say_once(f"kong agent unavailable ({why}); using in-process SSH connections")
                t = self.target
                extra: dict[str, Any] = {
                    k: v for k, v in self.options.items() if k != "max_sessions"}
                extra["umask"] = self.umask
                if t.config is not None:
                    extra["config"] = list(t.config)
                self._fallback = ssh_transport(
                    t.host, port=t.port, user=t.user, identity_file=t.identity_file,
                    known_hosts=t.known_hosts, jump_host=t.jump_host,
                    connect_timeout=t.connect_timeout, **extra,
                )
                self._fallback.stats = self.stats
            return self._fallback

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        return agent.call({**request, **self._where()}, idle_timeout=self.idle_timeout)

    # -- Transport ----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        if self._fallback is not None:
            return self._fallback.run(argv, stdin=stdin, timeout=timeout)
        line = command_line(argv, self.umask)
        if stdin is not None and len(stdin) > agent.MAX_STDIN:
            raise TransportError(
                f"{len(stdin)} bytes of stdin for `{line[:60]}` is over the kong agent's "
                f"limit of {agent.MAX_STDIN} bytes per command")
        try:
            reply = self._call({"op": "run", "command": line, "stdin": agent.b64(stdin),
                                "timeout": timeout})
        except agent.AgentUnavailable as exc:
            # Raised only before the agent took the request: nothing ran.
            return self._in_process(exc).run(argv, stdin=stdin, timeout=timeout)
        out, err = agent.unb64(reply.get("stdout")), agent.unb64(reply.get("stderr"))
        self.stats.add(round_trips=1, sent=len(line) + len(stdin or b""),
                       received=len(out) + len(err))
        return CommandResult(tuple(argv), int(reply["exit_code"]), out, err)

    def shared_query(
        self,
        argv: Sequence[str],
        ids: Sequence[str],
        verdict: Verdict,
        *,
        floor: float,
        cap: float | None = None,
        force: bool = False,
        timeout: float | None = None,
        prompt: bool = True,
        submitted: bool = False,
    ) -> ViewAnswer | None:
        """Run a status query (``argv``, reading ``ids`` one a line on stdin) through the
        agent's shared view of this target (``kong.remote.statusview``): the output of
        the view's last run for the union of every client's ids when that covers
        ``ids`` and is younger than the view's interval, else of a new run. None when
        the agent is not in use: the caller runs the query itself."""
        if self._fallback is not None:
            return None
        line = command_line(argv, self.umask)
        request = {
            "op": "poll", "command": line, "ids": [str(i) for i in ids],
            "floor": floor, "cap": cap, "force": force, "timeout": timeout,
            "submitted": submitted, "done_line": verdict.done_line,
            "error_prefix": verdict.error_prefix,
            "throttle_words": list(verdict.throttle_words)}
        try:
            reply = self._call(request) if prompt else self._listing_call(request)
        except agent.AgentUnavailable:
            return None  # nothing ran: the caller asks the scheduler itself
        out, err = agent.unb64(reply.get("stdout")), agent.unb64(reply.get("stderr"))
        self.stats.add(round_trips=1, sent=len(line), received=len(out) + len(err))
        failure = reply.get("failure")
        return ViewAnswer(int(reply["exit_code"]), out, err, float(reply["age"]),
                          float(reply["interval"]), None if failure is None else str(failure),
                          bool(reply.get("failed")))

    def _listing_call(self, request: dict[str, Any]) -> dict[str, Any]:
        """A view request for a listing: no prompt, and no waiting beyond LISTING_WAIT
        for a cluster that does not answer (the agent goes on; the next ls has it)."""
        with agent.Exchange({**request, **self._where(), "tty": False},
                            idle_timeout=self.idle_timeout) as ex:
            ex.open()
            assert ex.sock is not None
            ex.sock.settimeout(LISTING_WAIT)
            try:
                frame = ex.next()
            except TimeoutError:
                raise TransportError(
                    f"{self.label} did not answer within {LISTING_WAIT:.0f} s") from None
        if frame is None:
            raise agent.AgentUnavailable("the kong agent closed the connection")
        agent.raise_error(frame)
        return frame

    def upload(self, files: Mapping[str, Upload], *, mode: int = 0o600) -> None:
        """As ``CommandTransport.upload``, in as many commands as the agent's frame limit
        needs (one for any usual bulk submit: scripts are small). A job input too big
        for one command goes in pieces of its own; a file several paths share still
        goes once (the later paths link to it)."""
        limit = agent.MAX_STDIN - (64 << 10)
        sent: dict[str, str] = {}
        batch: dict[str, Upload] = {}
        in_batch: set[str] = set()  # laptop files the pending batch carries
        size = 0
        for path, content in files.items():
            cost = 2048 + len(path)  # a tar member's headers
            key = None
            if isinstance(content, LocalFile):
                key = os.path.realpath(content.source)
                if key not in sent and content.size > limit:
                    remote = self.expand(path)
                    upload_in_pieces(self, remote, content, limit)
                    sent[key] = remote.lstrip("/")
                    continue
                if key not in sent and key not in in_batch:
                    cost += content.size
            else:
                cost += len(content)
            if batch and size + cost > limit:
                self.upload_tar(batch, mode=mode, sent=sent)
                batch, size, in_batch = {}, 0, set()
            batch[path] = content
            size += cost
            if key is not None:
                in_batch.add(key)
        if batch:
            self.upload_tar(batch, mode=mode, sent=sent)

    def stream(self, path: str, offset: int = 0, poll_interval: float = 0.5) -> Iterator[bytes]:
        """Follow ``path`` with ``tail -F`` in the agent; reopened from the last byte
        received when the connection (or the agent) drops, as reading is idempotent."""
        if self._fallback is not None:
            yield from self._fallback.stream(path, offset, poll_interval)
            return
        remote = self.expand(path)
        while True:
            frame: dict[str, Any] | None = None
            line = command_line(["tail", "-c", f"+{offset + 1}", "-F", "--", remote])
            ex = agent.Exchange({"op": "stream", "command": line, **self._where()},
                                idle_timeout=self.idle_timeout)
            try:
                try:
                    ex.open()
                except agent.AgentUnavailable as exc:
                    yield from self._in_process(exc).stream(path, offset, poll_interval)
                    return
                self.stats.add(round_trips=1, sent=len(line))
                while True:
                    frame = ex.next()
                    if frame is None or frame.get("type") != "data":
                        break
                    chunk = agent.unb64(frame.get("data"))
                    self.stats.add(received=len(chunk))
                    offset += len(chunk)
                    yield chunk
            finally:
                ex.close()
            if frame is not None and frame.get("type") == "error":
                with contextlib.suppress(ConnectionLost):  # starting tail again is harmless
                    agent.raise_error(frame)
            time.sleep(poll_interval)

    def home(self) -> str:
        if self._fallback is not None:
            return self._fallback.home()
        with self._home_lock:
            if self._home is None:
                out = self.run_checked(["sh", "-c", 'printf "%s" "$HOME"']).text()
                if not out.startswith("/"):
                    raise TransportError(f"{self.label} reports no usable $HOME ({out!r})")
                self._home = out
            return self._home

    def close(self) -> None:
        # The connections belong to every kong process: `kong disconnect` closes them.
        if self._fallback is not None:
            self._fallback.close()

    # -- the agent's view of this target ---------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """Open a connection now (asking for a code on this terminal if needed)."""
        return self._call({"op": "connect"})

    def disconnect(self) -> int:
        """Close the agent's connections to this target; how many were open."""
        try:
            reply = self._call_no_spawn({"op": "disconnect"})
        except agent.AgentNotRunning:
            return 0
        return int(reply.get("closed") or 0)

    def _call_no_spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        return agent.call({**request, **self._where()}, spawn=False)

    def host_status(self) -> dict[str, Any] | None:
        """This target's row of ``kong agent status`` (None if the agent has not seen it)."""
        st = agent.status()
        if st is None:
            return None
        mine = agent.target_to_json(self.target)
        for row in st["hosts"]:
            if row["target"] == mine:
                return dict(row)
        return None

    def connection_count(self) -> int:
        row = self.host_status()
        return int(row["connections"]) if row else 0


_transports: dict[tuple[Any, ...], AgentTransport] = {}
_lock = threading.Lock()


def agent_transport(
    target: SSHTarget,
    *,
    profile: str | None = None,
    options: dict[str, Any] | None = None,
    idle_timeout: float = agent.DEFAULT_IDLE_TIMEOUT,
) -> AgentTransport:
    """The one ``AgentTransport`` of these settings in this process (shared counters).

    As with ``ssh_transport``, profiles that reach the same host with the same
    settings share one transport; messages name the first such profile.
    """
    reason = agent.available()
    if reason is not None:
        raise agent.AgentUnavailable(reason)
    opts = dict(options or {})
    key = (target, tuple(sorted(opts.items())), idle_timeout)
    with _lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = AgentTransport(
                target, profile=profile, options=opts, idle_timeout=idle_timeout)
        return transport


__all__ = ["AgentTransport", "agent_transport", "say_once"]
