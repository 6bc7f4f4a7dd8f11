# shellcheck shell=sh
if command -v flock >/dev/null 2>&1 && [ -w "${1%/*}" ]; then exec 9>>"$1"; flock 9; fi
kong_nl='
'
kong_us=$(printf '\037')
while IFS='	' read -r kong_id kong_cmd; do
    kong_out=$(eval "$kong_cmd" 2>&1 </dev/null 9>&-)
    kong_rc=$?
    # Newlines to the unit separator (the parser gets its lines back) with builtins
    # only: a fork per job would cost as much as the scheduler's own submit command
    # on some clusters.
    set -f; IFS=$kong_nl
    # shellcheck disable=SC2086 # split into lines on purpose
    set -- $kong_out
    IFS=$kong_us; kong_out="$*"; unset IFS; set +f
    printf 'KONG\t%s\t%s\t%s\n' "$kong_id" "$kong_rc" "$kong_out"
done
