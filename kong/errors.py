"""Errors a user can act on.

Every error kong expects (bad input, bad config, unreachable host) is a
``KongError``: the CLI and the REPL print its message as one line and change
nothing. Anything else is a bug and keeps its traceback.
"""


class KongError(Exception):
    """An error with a message meant for the person using kong."""


class ConfigError(KongError):
    """The config file is malformed or refers to something that does not exist."""


class JobSpecError(KongError):
    """A JobSpec (id, range, path, glob) selects nothing or cannot be parsed."""


class FolderError(KongError):
    """A folder operation (mkdir, mv, rm, cd) cannot be carried out."""


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
