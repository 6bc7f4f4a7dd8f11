#!/bin/sh
# Kill local-runner jobs in one round trip. "$1": the runner, "$2": seconds from TERM
# to KILL; job dirs on stdin.
# Prints the runner's status of every dir (JSON lines), then asks the runner to kill
# only the dirs whose job has not exited yet: a job that already ended keeps its
# exit code (the runner's kill marker would turn a success into a failure).
kong_t=$(mktemp "${TMPDIR:-/tmp}/kong-kill.XXXXXX") || exit 1
trap 'rm -f "$kong_t"' EXIT
cat > "$kong_t"
python3 "$1" status < "$kong_t" || exit 1
while IFS= read -r kong_d; do
    [ -f "$kong_d/exit_code" ] || printf '%s\n' "$kong_d"
done < "$kong_t" | python3 "$1" kill "${2:-10}"
