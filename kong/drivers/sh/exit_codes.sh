# shellcheck shell=sh
while IFS= read -r kong_f; do
    if [ -f "$kong_f" ]; then printf '%s\t%s\n' "$kong_f" "$(cat "$kong_f")"; fi
done
