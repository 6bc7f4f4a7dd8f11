"""What a batch driver needs for the kong agent's shared status view
(``kong.remote.statusview``): its status query as one command reading batch ids on
stdin, the verdict that tells a failed run from an answer, and the parser of that
command's output. ``BatchDriver`` mixes this in; Slurm and LSF fill it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from kong.drivers.base import SchedulerInfo, StatusResult
from kong.model.job import Job
from kong.remote.base import CommandResult
from kong.remote.statusview import Verdict, ViewAnswer

if TYPE_CHECKING:
    from kong.config import Profile
    from kong.remote import Transport


#: a job submitted this many seconds ago is new to the agent's view: it polls at the
#: floor again (its first changes, pending to running, come soon)
JUST_SUBMITTED = 30.0


def just_submitted(job: Job) -> bool:
    when = (job.data or {}).get("submitted_at")
    if not isinstance(when, str):
        return False
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(when)).total_seconds()
    except ValueError:
        return False
    return age < JUST_SUBMITTED


class SharedStatus:
    """The shared-view half of ``BatchDriver`` (its ``transport``, ``profile`` and
    ``poll_interval`` come from there)."""

    transport: Transport
    profile: Profile

    @property
    def poll_interval(self) -> float:
        raise NotImplementedError

    #: how the agent tells a failed status query from an answer; None: no shared view
    STATUS_VERDICT: ClassVar[Verdict | None] = None

    def status_command(self) -> list[str] | None:
        """The status query as one command reading batch ids on stdin, one a line, for a
        driver whose ``query`` is that (``parse_status`` reads its output): the kong
        agent then runs it once per interval for every kong process's jobs."""
        return None

    def parse_status(self, result: CommandResult) -> dict[str, SchedulerInfo]:
        """Scheduler info by batch id from ``status_command``'s output (every job in
        it: the agent's run covers other processes' jobs too)."""
        raise NotImplementedError

    def own_infos(
        self, infos: dict[str, SchedulerInfo], jobs: Sequence[Job]
    ) -> dict[str, SchedulerInfo]:
        """The entries of ``infos`` that are about these jobs (a scheduler that hands
        ids out again drops the ones whose job name is not the job's token)."""
        return infos

    @property
    def poll_cap(self) -> float | None:
        value = self.profile.options.get("poll_max_interval")
        return float(value) if value is not None else None

    def _shared_status(
        self, ids: Sequence[str], force: bool, prompt: bool = True, submitted: bool = False
    ) -> tuple[ViewAnswer, CommandResult] | None:
        argv = self.status_command()
        if argv is None or self.STATUS_VERDICT is None:
            return None
        answer = self.transport.shared_query(argv, ids, self.STATUS_VERDICT,
                                             floor=self.poll_interval, cap=self.poll_cap,
                                             force=force, prompt=prompt,
                                             submitted=submitted)
        if answer is None:
            return None
        return answer, CommandResult(tuple(argv), answer.exit_code, answer.stdout,
                                     answer.stderr)

    def status_view(
        self, batch_ids: Mapping[int, str]
    ) -> tuple[dict[int, StatusResult], ViewAnswer] | None:
        """What the agent's shared view says of the jobs (job id -> batch id), for a
        listing: only the jobs
        the scheduler answered for with all it takes (no exit-code lookups, no
        "absent"); None without an agent. A failed query answers for no job (its
        ``failure`` says why); a login it would need is not asked for here."""
        shared = self._shared_status(list(batch_ids.values()), force=False, prompt=False)
        if shared is None:
            return None
        answer, result = shared
        if answer.failed:
            return {}, answer
        infos = self.parse_status(result)
        results: dict[int, StatusResult] = {}
        for job_id, batch_id in batch_ids.items():
            info = infos.get(batch_id)
            if info is not None and not (info.status.finished and info.exit_code is None):
                results[job_id] = info
        return results, answer
