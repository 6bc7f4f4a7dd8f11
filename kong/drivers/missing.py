"""The stand-in driver of jobs whose profile is no longer in the config.

A profile removed or renamed in ``config.yml`` leaves its jobs in the database.
They must still list, show their ``info`` and be removable, so each such job gets
this driver: it never talks to a host (``reachable`` is False, so removing a job
deletes only its row), warns that the files on the cluster were left where they
are, and refuses what needs the cluster (submit, kill, resubmit) in one line naming
the missing profile.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, NoReturn

from kong.drivers.base import (
    DriverBase,
    KillResult,
    ProgressCallback,
    StatusResult,
    SubmitRequest,
    SubmitResult,
    TokenLookup,
)
from kong.errors import ConfigError, KongWarning

if TYPE_CHECKING:
    from kong.config import Config
    from kong.model.job import Job


class MissingProfileDriver(DriverBase):
    name = "missing"
    reachable: ClassVar[bool] = False

    def __init__(self, config: Config, profile_name: str, driver_name: str,
                 install_id: str) -> None:
        from kong.config import Profile

        # No transport: there is no host to reach (DriverBase.__init__ would make one).
        self.config = config
        self.profile = Profile(name=profile_name, driver=driver_name)
        self.driver_name = driver_name
        self.install_id = install_id

    def _missing(self) -> str:
        where = f" ({self.config.path})" if self.config.path else ""
        return (f"profile {self.profile.name!r} is no longer in the config{where}; "
                f"profiles: {', '.join(self.config.profiles)}")

    def _refuse(self, what: str, ids: Sequence[int | str]) -> NoReturn:
        shown = ", ".join(str(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise ConfigError(f"cannot {what} job(s) {shown}: {self._missing()}")

    @cached_property
    def base_dir(self) -> str:
        # Where the files were put, as far as the database can tell without the profile.
        root = (str(self.config.data_dir / "jobs") if self.driver_name == "local"
                else "<remote_dir of the profile, default ~/.kong>")
        return f"{root}/{self.install_id}"

    def submit(
        self, requests: Sequence[SubmitRequest], progress: ProgressCallback | None = None
    ) -> dict[int, SubmitResult]:
        self._refuse("submit", [r.job.job_id for r in requests])

    def status(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        """Nobody to ask: the jobs keep the status they were last seen in."""
        return {}

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        # Nobody to ask: a submission in flight stays so.
        return TokenLookup({}, busy=self._missing())

    def kill(self, jobs: Sequence[Job]) -> dict[int, KillResult]:
        if not jobs:
            return {}
        self._refuse("kill", [j.job_id for j in jobs])

    def kill_tokens(self, tokens: Sequence[str]) -> dict[str, KillResult]:
        if not tokens:
            return {}
        self._refuse("kill", list(tokens))

    def sizes(self, jobs: Sequence[Job]) -> dict[int, int]:
        return {}

    def remove_files(self, jobs: Sequence[Job], arrays: Sequence[str] = ()) -> None:
        """The files stay on the host, and a warning says where."""
        if not jobs:
            return
        first = self.job_paths(jobs[0]).job_dir
        more = f" (and the dirs of {len(jobs) - 1} more beside it)" if len(jobs) > 1 else ""
        warnings.warn(KongWarning(
            f"the files of {len(jobs)} removed job(s) of profile {self.profile.name!r} (no "
            f"longer in the config) could not be cleaned on its {self.driver_name} host; "
            f"they are in {first}{more}"
        ), stacklevel=2)
