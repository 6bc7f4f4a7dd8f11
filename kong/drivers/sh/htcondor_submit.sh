# shellcheck shell=sh
if command -v flock >/dev/null 2>&1 && [ -w "${1%/*}" ]; then exec 9>>"$1"; flock 9; fi
kong_tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$kong_tmp"' EXIT
awk -v d="$kong_tmp" '
    $0 == "KONG-EXEC" { f = d "/exec"; next }
    $0 == "KONG-SUBMIT" { if (f) close(f); n++; f = sprintf("%s/%06d.sub", d, n); next }
    { print > f }' || exit 1
tr '\n' '\0' < "$kong_tmp/exec" | xargs -0 -r chmod u+x -- || exit 1
for kong_f in "$kong_tmp"/*.sub; do
    [ -f "$kong_f" ] || continue
    kong_n=${kong_f##*/}
    kong_out=$(condor_submit -terse "$kong_f" 2>"$kong_tmp/err" </dev/null 9>&-)
    kong_rc=$?
    printf 'KONG-GROUP\t%s\t%s\t%s\t%s\n' "${kong_n%.sub}" "$kong_rc" \
        "$(printf '%s' "$kong_out" | tr '\n\t' '  ')" "$(tr '\n\t' '  ' < "$kong_tmp/err")"
done
