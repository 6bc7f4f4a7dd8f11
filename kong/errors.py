"""Errors a user can act on.

Every error kong expects (bad input, bad config, unreachable host) is a
``KongError``: the CLI and the REPL print its message as one line and change
nothing. Anything else is a bug and keeps its traceback.

kong-batch scripts catch the built-in exceptions kong-batch raised (``ValueError``
for a missing folder or a bad range, ``RuntimeError`` subclasses such as
``kong.state.DoesNotExist`` for an unknown job, ``TypeError`` for a wrong argument
type). Each of kong's errors also derives from the built-in one kong-batch raised in
the same situation, so those ``except`` clauses keep working; kong-batch's own class
names are kept below as well.
"""


class KongError(Exception):
    """An error with a message meant for the person using kong."""


class ArgumentTypeError(KongError, TypeError):
    """An argument of the wrong type (``state.cd(42)``, ``state.rm(4.5)``)."""


class ArgumentValueError(KongError, ValueError):
    """An argument of the right type with a value kong refuses (``cores=0``)."""


class ConfigError(KongError):
    """The config file is malformed or refers to something that does not exist."""


class DoesNotExist(KongError, LookupError, RuntimeError):
    """A job or folder named by the user does not exist (kong-batch:
    ``kong.state.DoesNotExist``, a ``RuntimeError``)."""


class JobSpecError(KongError, ValueError):
    """A JobSpec (id, range, path, glob) cannot be parsed or selects nothing that exists
    (kong-batch: ``ValueError``)."""


class NoSuchJobOrFolder(JobSpecError, DoesNotExist):
    """A JobSpec names a job or folder that does not exist."""


class JobDoesNotExist(NoSuchJobOrFolder):
    """No job has the id a JobSpec names (``Job.DoesNotExist``)."""


class FolderError(KongError):
    """A folder operation (mkdir, mv, rm, cd) cannot be carried out."""


class NoSuchFolder(FolderError, ValueError, DoesNotExist):
    """A folder path leads nowhere (kong-batch: ``ValueError`` from ``get_folders``,
    ``mv`` and ``create_job``)."""


class InvalidFolderName(FolderError, ValueError):
    """A folder name kong refuses (empty, ``.``, all digits, a glob or control character)."""


class CannotCreateError(FolderError, RuntimeError):
    """``mkdir`` cannot create the folder (it exists, or its parent does not)."""


class CannotRemoveRoot(FolderError, RuntimeError):
    """The root folder cannot be removed."""


class CannotRemoveIsFolder(FolderError, RuntimeError):
    """A folder can only be removed recursively."""


class MissingParentError(CannotCreateError):
    """``mkdir`` of a folder whose parent does not exist, without ``create_parent``; the
    hint says how to create it in the words of the surface that asked."""

    def __init__(self, parent: str, hint: str = "pass create_parent=True to create it") -> None:
        super().__init__(f"no such folder: {parent} ({hint})")
        self.parent = parent


class IsAFolderError(CannotRemoveIsFolder):
    """``rm`` of a folder without ``recursive``; the hint is the asking surface's."""

    def __init__(self, paths: str, hint: str = "pass recursive=True to remove it") -> None:
        super().__init__(f"{paths} is a folder: {hint}")
        self.paths = paths


class DriverError(KongError):
    """A driver could not carry out an operation on the scheduler."""


class TransportError(KongError):
    """A command could not be run on the target host."""


class ConnectionLost(TransportError):
    """The connection dropped while a command was running.

    The command may or may not have taken effect on the remote side: callers
    must reconcile before repeating anything that is not idempotent.
    """


class HostKeyError(TransportError):
    """The remote host key is unknown or has changed; it is never accepted silently."""


class KongWarning(UserWarning):
    """Something a person should know that did not stop the operation (e.g. files on a
    cluster that could not be cleaned); the CLI prints it as one ``kong: warning:`` line."""
