# shellcheck shell=sh
# One element of a kong job array: find this element's own kong job in the map
# (lines "<index>	<script>	<stdout>	<stderr>" in the file $kong_map) by the
# scheduler's element index ($kong_index), then run that job's own script with its
# own logs, as the scheduler runs a plain job's script.
# shellcheck disable=SC2154 # kong_map and kong_index: set by the lines above this
kong_line=$(awk -F'\t' -v i="$kong_index" '$1 == i { print; exit }' "$kong_map")
if [ -z "$kong_index" ] || [ -z "$kong_line" ]; then
    echo "kong: no job for element '$kong_index' of this array in $kong_map" >&2
    exit 1
fi
IFS='	' read -r _ kong_script kong_stdout kong_stderr <<KONG_EOF
$kong_line
KONG_EOF
mkdir -p "${kong_stdout%/*}" "${kong_stderr%/*}"
exec /bin/sh "$kong_script" > "$kong_stdout" 2> "$kong_stderr"
