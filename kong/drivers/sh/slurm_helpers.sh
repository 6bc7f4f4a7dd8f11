# shellcheck shell=sh
keep() {
    awk -F'|' -v p="$1" 'FILENAME == ARGV[1] { w[$1] = 1; next } ($1 in w) { print p $0 }' "$2" "$3"
}
drop() { awk -F'|' 'FILENAME == ARGV[1] { s[$1] = 1; next } !($1 in s)' "$1" "$2"; }
t=$(mktemp -d "${TMPDIR:-/tmp}/kong-slurm.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
