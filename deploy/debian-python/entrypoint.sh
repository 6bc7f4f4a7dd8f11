#!/bin/sh
# A stock Debian bookworm with only the distribution's Python 3 and pipx (what kong's
# README says to apt-install). Nothing runs at start: the caller gives the command
# (tests/test_install.py runs the README's install command); without one, a shell.
[ "$#" -gt 0 ] || set -- /bin/bash
exec "$@"
