#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (Debian
# packages for the container engine and image builds, a virtualenv with kong and
# its test tools), then runs the linters and pytest. The test clusters are
# built and started by the pytest fixtures themselves (deploy/).
set -euo pipefail
cd "$(dirname "$0")"

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
command -v shellcheck >/dev/null 2>&1 || need_pkgs+=(shellcheck)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "run-tests: installing Debian packages: ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'

export TESTCONTAINERS_RYUK_DISABLED=true
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest -q --durations=30 "$@"
