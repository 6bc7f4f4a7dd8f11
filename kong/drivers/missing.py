"""The stand-in driver of jobs whose profile is no longer in the config.

A profile removed or renamed in ``config.yml`` leaves its jobs in the database.
They must still list, show their ``info`` and be removable, so each such job gets
this driver: it never talks to a host, removes only the database rows (warning
that the files on the cluster were left where they are), and refuses what needs
the cluster (submit, kill, resubmit) in one line naming the missing profile.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, NoReturn

from kong import db
from kong.drivers.base import DriverBase, ProgressCallback
from kong.errors import ConfigError, KongWarning

if TYPE_CHECKING:
    from kong.config import Config
    from kong.model.job import Job


class MissingProfileDriver(DriverBase):
    name = "missing"

    def __init__(self, config: Config, profile_name: str, driver_name: str) -> None:
        from kong.config import Profile

        # No transport: there is no host to reach (DriverBase.__init__ would make one).
        self.config = config
        self.profile = Profile(name=profile_name, driver=driver_name)
        self.driver_name = driver_name

    def _missing(self) -> str:
        where = f" ({self.config.path})" if self.config.path else ""
        return (f"profile {self.profile.name!r} is no longer in the config{where}; "
                f"profiles: {', '.join(self.config.profiles)}")

    def _refuse(self, what: str, jobs: Sequence[Job]) -> NoReturn:
        ids = ", ".join(str(j.job_id) for j in jobs[:5]) + (" ..." if len(jobs) > 5 else "")
        raise ConfigError(f"cannot {what} job(s) {ids}: {self._missing()}")

    @cached_property
    def base_dir(self) -> str:
        # Where the files were put, as far as the database can tell without the profile.
        root = (str(self.config.data_dir / "jobs") if self.driver_name == "local"
                else "<remote_dir of the profile, default ~/.kong>")
        return f"{root}/{db.install_id()}"

    def submit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        self._refuse("submit", jobs)

    def resubmit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        self._refuse("resubmit", jobs)

    def kill(self, jobs: Sequence[Job]) -> None:
        self._refuse("kill", jobs)

    def sync_status(self, jobs: Sequence[Job]) -> None:
        """Nobody to ask: the jobs keep the status they were last seen in."""

    def sizes(self, jobs: Sequence[Job]) -> dict[int, int]:
        return {}

    def remove(self, jobs: Sequence[Job]) -> None:
        """Remove the rows; the files stay on the host, and a warning says where."""
        if not jobs:
            return
        self.forget_logs(jobs)
        with db.write() as s:
            for job in jobs:
                s.delete(job)
        first = self.job_paths(jobs[0]).job_dir
        more = f" (and the dirs of {len(jobs) - 1} more beside it)" if len(jobs) > 1 else ""
        warnings.warn(KongWarning(
            f"the files of {len(jobs)} removed job(s) of profile {self.profile.name!r} (no "
            f"longer in the config) could not be cleaned on its {self.driver_name} host; "
            f"they are in {first}{more}"
        ), stacklevel=2)
