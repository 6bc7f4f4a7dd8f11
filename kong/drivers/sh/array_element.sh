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
# What the scheduler writes of this element (its open file, e.g. a time-limit notice)
# moves beside the job's own logs: a hard link there, the array dir's name unlinked.
kong_own="${kong_map%/*}/$kong_index.txt"
if [ -f "$kong_own" ] && ln -f "$kong_own" "${kong_stdout%/*}/scheduler.txt" 2>/dev/null; then
    rm -f "$kong_own"
fi
exec /bin/sh "$kong_script" > "$kong_stdout" 2> "$kong_stderr"
