# shellcheck shell=sh
# KONG_LOCK_WAIT: seconds to wait for the lock (the profile's submit_lock_wait)
if command -v flock >/dev/null 2>&1 && [ -f "$1" ]; then
    flock -w "${KONG_LOCK_WAIT:-20}" "$1" true || echo KONG-BUSY
fi
