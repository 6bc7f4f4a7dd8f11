"""kong: a batch-job manager. The job database lives here; jobs run here or on clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from kong.state import State


def get_instance(profile: str | None = None) -> State:
    """A ``State`` on the default config and database, in the root folder.

    ``profile`` picks the profile new jobs go to (default: the config's
    ``default_profile``).
    """
    from kong.state import State

    return State.get_instance(profile=profile)


__all__ = ["__version__", "get_instance"]
