# shellcheck shell=sh
while IFS='	' read -r kong_key kong_cmd; do
    kong_out=$(eval "$kong_cmd" 2>&1 </dev/null)
    kong_rc=$?
    printf 'KONG\t%s\t%s\t%s\n' "$kong_key" "$kong_rc" "$(printf '%s' "$kong_out" | tr '\n\t' '  ')"
done
