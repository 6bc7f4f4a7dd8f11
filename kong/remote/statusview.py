"""One status view per cluster: the kong agent's shared answer to "how are my jobs?".

Every kong process of a user (a REPL, several ``kong wait``s, scripts calling
``refresh_jobs``) used to run its own squeue/sacct. With the agent, a driver that
can put its status query into one command reading batch ids on stdin (Slurm's
``slurm_query.sh``) sends that command and its ids to the agent instead
(``AgentTransport.shared_query``). The agent keeps one ``StatusView`` per
(target, command): the union of the ids its clients asked about recently, the
output of the last run for that union, and the interval. A client whose ids the
last run covered gets that output while it is younger than the interval; else
the view runs the command once more, for the union, and every client waiting
meanwhile shares that run. Clients parse the whole output and pick their own
jobs: the agent never parses scheduler output (drivers stay the only parsers).

The interval adapts (as snakemake's Slurm executor does): the profile's
``poll_interval`` after new jobs (a submit) or a changed answer, growing by
``GROWTH`` per unchanged answer up to the cap (``poll_max_interval``).
The view cannot see a submit; the client says when its jobs are fresh ones. A failed
query is not "no jobs": it is never served as an answer while an older good one
covers the ids (that one is served, marked stale), and the view backs off
(doubling; straight to the cap when the scheduler says it is rate limiting or
overloaded) before it asks again.

No asyncssh (nor asyncio, until the agent uses it) here: the view runs commands
through the coroutine it is given.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

#: factor of the interval after each unchanged answer
GROWTH = 1.5
#: the interval's cap when the profile sets none (seconds)
DEFAULT_CAP = 120.0
#: ids nobody asked about for this many caps (at least a minute) leave the union
FORGET_AFTER_CAPS = 3.0
#: a batch id is one short line of stdin
MAX_ID = 200


@dataclass(frozen=True)
class Verdict:
    """How to tell a failed run from an answer, given by the driver with its command."""

    #: the last line of a complete answer (a query cut short is no answer)
    done_line: str | None = None
    #: a line starting with this is the scheduler's error
    error_prefix: str | None = None
    #: lower-case words of an error meaning "too many requests, ask later"
    throttle_words: tuple[str, ...] = ()

    def failure(self, exit_code: int, stdout: bytes, stderr: bytes) -> str | None:
        """Why this run is no answer, or None if it is one."""
        lines = stdout.decode(errors="replace").splitlines()
        if self.error_prefix:
            for line in lines:
                if line.startswith(self.error_prefix):
                    return line[len(self.error_prefix):].strip() or "scheduler error"
        if exit_code != 0:
            err = stderr.decode(errors="replace").strip().splitlines()
            return err[-1] if err else f"exit code {exit_code}"
        if self.done_line is not None and (not lines or lines[-1] != self.done_line):
            err = stderr.decode(errors="replace").strip().splitlines()
            return err[-1] if err else "the query stopped before its end"
        return None

    def throttled(self, why: str) -> bool:
        lower = why.lower()
        return any(word in lower for word in self.throttle_words)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Run:
    """One execution of the view's command."""

    ids: frozenset[str]
    started: float  # the view's clock; the data is as of then
    outcome: Outcome
    failure: str | None


@dataclass(frozen=True)
class Answer:
    """What a client gets: a run's output, how old it is, and whether it is the latest."""

    outcome: Outcome
    #: seconds since the run whose output this is started
    age: float
    #: the view's interval now (what "current" means)
    interval: float
    #: why the latest run failed, when this answer is an older one (or the failure)
    failure: str | None
    #: the output is a failure (no good run covered the ids)
    failed: bool

    def to_json(self) -> dict[str, Any]:
        return {"exit_code": self.outcome.exit_code, "age": self.age,
                "interval": self.interval, "failure": self.failure, "failed": self.failed}


RunCommand = Callable[[bytes], Awaitable[Outcome]]


@dataclass(eq=False)
class StatusView:
    """The shared status of one (target, query command); see the module docstring."""

    command: str
    clock: Callable[[], float] = time.monotonic
    floor: float = 5.0
    cap: float = DEFAULT_CAP
    interval: float = 5.0
    #: id -> when a client last asked about it
    wanted: dict[str, float] = field(default_factory=dict)
    good: Run | None = None
    last_failure: Run | None = None
    failures_in_a_row: int = 0
    not_before: float = 0.0
    runs: int = 0
    failures: int = 0
    served: int = 0
    _inflight: asyncio.Task[Run] | None = None

    def _settings(self, floor: float, cap: float | None) -> None:
        # The latest client's settings win, as for the host pool's budget.
        self.floor = max(0.1, float(floor))
        self.cap = max(self.floor, float(cap) if cap is not None else max(DEFAULT_CAP,
                                                                           self.floor))
        self.interval = min(max(self.interval, self.floor), self.cap)

    def _expire(self, now: float) -> None:
        horizon = max(60.0, FORGET_AFTER_CAPS * self.cap)
        for key in [k for k, t in self.wanted.items() if now - t > horizon]:
            del self.wanted[key]

    async def ask(
        self,
        ids: Sequence[str],
        run: RunCommand,
        verdict: Verdict,
        *,
        floor: float,
        cap: float | None = None,
        force: bool = False,
        submitted: bool = False,
    ) -> Answer:
        """The answer for ``ids``: the last run's if it covers them and is young enough,
        else a new run for the union of every client's ids (shared with whoever asks
        meanwhile). ``force`` wants a run that started after this call (``ls -u``),
        unless the view is backing off from a failure. ``submitted``: some of ``ids``
        were just submitted; if the view has not seen them, the interval starts
        short again (a new waiter on old jobs does not reset it)."""
        import asyncio  # here: drivers import this module, and kong starts without asyncio
        for key in ids:
            if not key or len(key) > MAX_ID or "\n" in key or "\r" in key:
                raise ValueError(f"not a batch id: {key[:40]!r}")
        self._settings(floor, cap)
        arrived = self.clock()
        wanted = frozenset(ids)
        if submitted and any(key not in self.wanted for key in wanted):
            self.interval = self.floor  # new jobs: their first changes come soon
        for key in wanted:
            self.wanted[key] = arrived
        self._expire(arrived)
        while True:
            inflight = self._inflight
            if inflight is not None and not inflight.done():
                await asyncio.shield(inflight)
                continue  # judge again with that run's result
            now = self.clock()
            good = self.good
            covers = good is not None and wanted <= good.ids
            backing_off = now < self.not_before
            if good is not None and covers:
                young = now - good.started < self.interval
                if backing_off or (young and not force) or good.started > arrived:
                    return self._answer(good, now)
            elif backing_off and self.last_failure is not None:
                return self._answer(self.last_failure, now)
            task = self._inflight = asyncio.ensure_future(self._run(run, verdict))
            done = await asyncio.shield(task)
            if done.failure is None and not wanted <= done.ids:
                continue  # forgotten meanwhile (cannot happen within one horizon)
            if done.failure is not None and good is not None and covers:
                return self._answer(good, self.clock())  # the older answer, marked stale
            return self._answer(done, self.clock())

    async def _run(self, run: RunCommand, verdict: Verdict) -> Run:
        ids = frozenset(self.wanted)
        started = self.clock()
        stdin = "".join(f"{key}\n" for key in sorted(ids)).encode()
        outcome = await run(stdin)
        failure = verdict.failure(outcome.exit_code, outcome.stdout, outcome.stderr)
        done = Run(ids, started, outcome, failure)
        self.runs += 1
        if failure is not None:
            self.failures += 1
            self.failures_in_a_row += 1
            self.last_failure = done
            if verdict.throttled(failure):
                backoff = self.cap  # the controller asked for fewer requests
            else:
                backoff = min(self.cap, self.floor * 2 ** self.failures_in_a_row)
            self.interval = max(self.interval, backoff)
            self.not_before = started + backoff
            return done
        changed = self.good is None or self.good.outcome.stdout != outcome.stdout
        self.interval = self.floor if changed else min(self.cap, self.interval * GROWTH)
        self.good = done
        self.last_failure = None
        self.failures_in_a_row = 0
        self.not_before = 0.0
        return done

    def _answer(self, run: Run, now: float) -> Answer:
        self.served += 1
        failure = self.last_failure.failure if self.last_failure is not None else None
        return Answer(run.outcome, max(0.0, now - run.started), self.interval, failure,
                      failed=run.failure is not None)

    def summary(self) -> dict[str, Any]:
        """This view's row in ``kong agent status``."""
        now = self.clock()
        latest = self.last_failure or self.good
        return {
            "jobs": len(self.wanted), "runs": self.runs, "failures": self.failures,
            "served": self.served, "interval": round(self.interval, 2),
            "age": None if latest is None else round(now - latest.started, 2),
            "failure": self.last_failure.failure if self.last_failure else None,
        }


@dataclass(frozen=True)
class ViewAnswer:
    """A client's copy of an ``Answer`` (``AgentTransport.shared_query``)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    age: float
    interval: float
    failure: str | None
    failed: bool

    @property
    def stale(self) -> bool:
        """Older than the interval, or older than a failed run: not what "current" means."""
        return self.failure is not None or self.age > self.interval
