# shellcheck shell=sh
if command -v flock >/dev/null 2>&1 && [ -f "$1" ]; then
    flock -w 20 "$1" true || echo KONG-BUSY
fi
