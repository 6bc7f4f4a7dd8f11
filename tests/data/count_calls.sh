#!/bin/sh
# COUNTING WRAPPER with a FAULT INJECTOR (tests only; tests/batchtests.py counted_calls
# installs it in a test cluster's container as /usr/local/bin/TOOL, ahead of the real
# one on PATH). Every call's arguments go to /tmp/kong-calls/TOOL.log, then the real
# TOOL (/tmp/kong-calls/real/TOOL, a link of the same name) runs.
# With an id in /tmp/kong-calls/TOOL.hide, a call that names more than one id runs
# without that one: the scheduler's answer then says nothing of it, as a scheduler
# that skipped it silently would.
tool=${0##*/}
d=/tmp/kong-calls
echo "$*" >> "$d/$tool.log"
hide=$(cat "$d/$tool.hide" 2>/dev/null)
if [ -n "$hide" ]; then
    n=0
    for a in "$@"; do
        case $a in -*) ;; *) n=$((n + 1)) ;; esac
    done
    if [ "$n" -gt 1 ]; then
        for a in "$@"; do
            shift
            [ "$a" = "$hide" ] || set -- "$@" "$a"
        done
    fi
fi
exec "$d/real/$tool" "$@"
