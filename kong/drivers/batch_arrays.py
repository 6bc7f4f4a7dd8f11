"""What the batch drivers that submit job arrays share (``kong.drivers.arrays``): the
cluster's array size limit, asked once per profile and kept in the data dir; element
batch ids (Slurm ``123_4``, LSF ``123[4]``); element tokens in a reconcile. (A kill
of many elements is BatchDriver's, as of many plain jobs: one command for all ids.)
``SlurmArrays`` and ``LSFDriver`` are this and their scheduler's words.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from kong.drivers.arrays import parse_element_token
from kong.drivers.batch import BatchDriver
from kong.model.job import Job


class ArrayBatchDriver(BatchDriver):
    """A batch driver with ``ARRAYS`` (abstract: a scheduler's driver fills it in)."""

    ARRAYS = True
    #: the cluster's array size limit when it says none
    DEFAULT_MAX_ARRAY_SIZE: ClassVar[int] = 1000
    #: an element's batch id; groups: the array's id, the element's index
    ELEMENT_ID: ClassVar[re.Pattern[str]] = re.compile(r"^(\d+)_(\d+)$")

    _max_array_size: int | None = None

    # -- what each scheduler provides ---------------------------------------------------

    @abstractmethod
    def max_array_size_script(self) -> str:
        """A shell line that prints the cluster's array size limit (a number), if any."""

    # -- element ids --------------------------------------------------------------------

    def split_element_id(self, batch_id: str) -> tuple[str, int] | None:
        """(array id, index) of an element's batch id; None for a plain job's."""
        match = self.ELEMENT_ID.match(batch_id)
        return None if match is None else (match.group(1), int(match.group(2)))

    # -- the array size limit -----------------------------------------------------------

    def prepare_submit(self, jobs: Sequence[Job]) -> None:
        if self._max_array_size is None and self.profile.options.get("arrays") is not False:
            self._max_array_size = self._ask_max_array_size()

    def array_limit(self) -> int:
        return self._max_array_size or self.DEFAULT_MAX_ARRAY_SIZE

    @property
    def _array_size_cache(self) -> Path:
        return self.config.data_dir / "arrays" / f"{self.profile.name}.max-array-size"

    def array_refused(self, message: str) -> None:
        # e.g. "Invalid job array specification", "Job array index too large": the
        # site may have lowered its limit
        if "array" in message.lower():
            self._max_array_size = None
            self._array_size_cache.unlink(missing_ok=True)

    def _ask_max_array_size(self) -> int:
        """The cluster's limit, asked once per profile (kept in the data dir for the
        next kong)."""
        cache = self._array_size_cache
        try:
            value = int(cache.read_text().strip())
        except (OSError, ValueError):
            value = 0
        if value > 0:
            return value
        words = self.run_script(self.max_array_size_script()).split()
        value = int(words[0]) if words and words[0].isdigit() else self.DEFAULT_MAX_ARRAY_SIZE
        if value > 0:
            from kong.paths import make_private_dir

            make_private_dir(cache.parent)
            cache.write_text(f"{value}\n")
        return max(value, 1)

    # -- tokens -------------------------------------------------------------------------

    def _elements(self, tokens: Sequence[str], found: dict[str, str]) -> dict[str, str]:
        """``found`` (name -> id) per token: a plain token is a name; an element's
        token is found when its array is (one submit took all of the array or none),
        as the element's batch id."""
        result: dict[str, str] = {}
        for token in tokens:
            element = parse_element_token(token)
            if element is None:
                if token in found:
                    result[token] = found[token]
            elif element[0] in found:
                result[token] = self.element_batch_id(found[element[0]], element[1])
        return result

    def _names(self, tokens: Sequence[str]) -> list[str]:
        """The job names to look for: plain tokens and the arrays of elements'."""
        names = dict.fromkeys(t if (e := parse_element_token(t)) is None else e[0]
                              for t in tokens)
        return list(names)
