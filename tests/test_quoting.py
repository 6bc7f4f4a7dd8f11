"""User words survive the trip to the remote shell unchanged (hypothesis, real sshd)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong.remote.pool import SSHPool
from kong.remote.ssh import SSHTransport, ssh_transport
from tests.test_ssh_transport import HostSshd, host_sshd, pytestmark  # noqa: F401

NASTY = " \t\n'\"$;`\\|&<>(){}[]*?~!#%^=-+,.:@"

# Shell metacharacters in bulk, plus any Unicode (argv cannot hold NUL or lone surrogates).
words = st.one_of(
    st.text(alphabet=NASTY + "ab", min_size=0, max_size=20),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.sampled_from(["$(touch pwned)", "`touch pwned`", "'; rm -rf x; '", "-n", "--", "$HOME"]),
)


@pytest.fixture(scope="module")
def quoting_transport(host_sshd: HostSshd) -> Iterator[SSHTransport]:  # noqa: F811
    pool = SSHPool()
    yield ssh_transport(
        host_sshd.host,
        port=host_sshd.port,
        user=host_sshd.user,
        identity_file=host_sshd.identity_file,
        known_hosts=host_sshd.known_hosts,
        config=[os.devnull],
        pool=pool,
    )
    pool.shutdown()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(words, min_size=1, max_size=6))
def test_argv_round_trips(quoting_transport: SSHTransport, argv: list[str]) -> None:
    out = quoting_transport.run_checked(["printf", "%s\\0", *argv]).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in argv]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(words, min_size=0, max_size=6))
def test_sh_c_with_user_words_as_args(quoting_transport: SSHTransport, argv: list[str]) -> None:
    # The form the base docstring prescribes: script fixed, user words as "$@".
    script = 'for a; do printf "%s\\0" "$a"; done'
    out = quoting_transport.run_checked(["sh", "-c", script, "sh", *argv]).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in argv]


names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=30,
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, content=st.binary(max_size=200))
def test_paths_round_trip(
    quoting_transport: SSHTransport, tmp_path_factory: pytest.TempPathFactory, name: str,
    content: bytes,
) -> None:
    base = tmp_path_factory.mktemp("q")
    path = f"{base}/{name} dir/{name}"
    t = quoting_transport
    t.upload({path: content})
    assert Path(path).read_bytes() == content
    assert t.sizes([path]) == {path: len(content)}
    assert t.read_range(path) == content
    t.remove_trees([f"{base}/{name} dir"])
    assert not Path(path).exists()
    assert not (base / "pwned").exists()
