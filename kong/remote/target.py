"""Where to connect and how to ask the person: the parts of SSH that need no asyncssh.

Kept apart from ``kong.remote.pool`` so that a kong process that reaches its
hosts through the kong agent never imports asyncssh (a tenth of a second of
start-up for every command).
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kong.errors import TransportError

#: (host label, instructions, [(prompt, echo), ...]) -> one answer per prompt
PromptCallback = Callable[[str, str, Sequence[tuple[str, bool]]], Sequence[str]]


class PromptUnavailable(TransportError):
    """The server asked for a password or one-time code and nobody can answer."""


_terminal_lock = threading.Lock()


def terminal_prompt(
    label: str, instructions: str, prompts: Sequence[tuple[str, bool]]
) -> list[str]:
    """Ask on the terminal; without one, fail at once rather than hang a script or cron job."""
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # closed or replaced stdin
        interactive = False
    if not interactive:
        raise PromptUnavailable(
            f"{label} asks for a password or one-time code and this process has no terminal "
            f"to ask on: run it from a terminal (a password can also be stored with "
            f"`keyring set kong USER@HOST`)"
        )
    # Two connections opening at once must not interleave their questions.
    with _terminal_lock:
        if instructions:
            print(instructions, file=sys.stderr)
        answers = []
        for text, echo in prompts:
            question = text or "Response: "
            answers.append(input(question) if echo else getpass.getpass(question))
        return answers


def keyring_secret(user: str | None, host: str) -> str | None:
    """The password or key passphrase stored under service ``kong``, key ``user@host``."""
    try:
        import keyring

        return keyring.get_password("kong", f"{user or getpass.getuser()}@{host}")
    except Exception:  # no backend, locked store, D-Bus down: behave as if nothing is stored
        return None


def store_keyring_secret(user: str, host: str, secret: str) -> None:
    """Store a password or key passphrase where ``keyring_secret`` finds it."""
    import keyring

    keyring.set_password("kong", f"{user}@{host}", secret)


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to connect. ``None`` means: take it from ssh config or the defaults."""

    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    jump_host: str | None = None
    #: ssh client config files; None reads ``~/.ssh/config`` as ``ssh`` does
    config: tuple[str, ...] | None = None
    connect_timeout: float = 30.0
    keepalive_interval: float = 30.0

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"

    def accept_hint(self) -> str:
        port = f"-p {self.port} " if self.port else ""
        user = f"{self.user}@" if self.user else ""
        kh = self.known_hosts or "~/.ssh/known_hosts"
        opt = f"-o UserKnownHostsFile={self.known_hosts} " if self.known_hosts else ""
        return (
            f"check the key, then accept it by running `ssh {opt}{port}{user}{self.host}` once "
            f"(or `ssh-keyscan {port}{self.host} >> {kh}`; after a key change "
            f"`ssh-keygen -R {self.host}` first)"
        )

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
        }
        if self.port is not None:
            kwargs["port"] = self.port
        if self.user is not None:
            kwargs["username"] = self.user
        if self.identity_file is not None:
            kwargs["client_keys"] = [os.path.expanduser(self.identity_file)]
        if self.known_hosts is not None:
            # Never None: asyncssh reads None as "do not check host keys".
            kwargs["known_hosts"] = os.path.expanduser(self.known_hosts)
        if self.config is not None:
            kwargs["config"] = [os.path.expanduser(c) for c in self.config]
        return kwargs
