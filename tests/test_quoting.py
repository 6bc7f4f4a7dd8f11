"""User words survive the trip to the remote shell unchanged (hypothesis, real sshd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong.remote.pool import SSHPool
from kong.remote.ssh import SSHTransport
from tests.clusters import Cluster
from tests.test_ssh_transport import remote_tmpdir, transport_for

NASTY = " \t\n'\"$;`\\|&<>(){}[]*?~!#%^=-+,.:@"

# Shell metacharacters in bulk, plus any Unicode (argv cannot hold NUL or lone surrogates).
words = st.one_of(
    st.text(alphabet=NASTY + "ab", min_size=0, max_size=20),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.sampled_from(["$(touch pwned)", "`touch pwned`", "'; rm -rf x; '", "-n", "--", "$HOME"]),
)


@pytest.fixture(scope="module")
def quoting_transport(sshd_server: Cluster) -> Iterator[SSHTransport]:
    pool = SSHPool()
    yield transport_for(sshd_server, pool)
    pool.shutdown()


@pytest.fixture(scope="module")
def base(quoting_transport: SSHTransport) -> str:
    return remote_tmpdir(quoting_transport)


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
    quoting_transport: SSHTransport, base: str, name: str, content: bytes
) -> None:
    t = quoting_transport
    path = f"{base}/{name} dir/{name}"
    t.upload({path: content})
    assert t.sizes([path]) == {path: len(content)}
    assert t.read_range(path) == content
    listing = t.run_checked(["find", base, "-mindepth", "1", "-print0"]).stdout
    assert set(listing.split(b"\0")[:-1]) == {
        f"{base}/{name} dir".encode(), path.encode()
    }
    t.remove_trees([f"{base}/{name} dir"])
    assert t.sizes([path]) == {path: None}
    assert t.run_checked(["ls", "-A", base]).stdout == b""
