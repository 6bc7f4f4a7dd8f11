# shellcheck shell=sh
# shellcheck disable=SC2154 # $t: the temp dir of slurm_helpers.sh, which comes first
cat > "$t/ids"
# -r: one line per array element, pending ones too (123_4, not 123_[4-9])
if ! squeue -h -r -u "$(id -un)" -o "$1" > "$t/q" 2> "$t/err"; then
    printf 'ERR|squeue: %s\nEND\n' "$(tr '\n' ' ' < "$t/err")"
    exit 0
fi
keep 'Q|' "$t/ids" "$t/q"
drop "$t/q" "$t/ids" > "$t/rest"
# shellcheck disable=SC2016 # $0 and $* are sh -c's own
if [ -s "$t/rest" ]; then
    if ! command -v sacct >/dev/null 2>&1; then
        echo 'NOACCT|sacct: command not found'
        cp "$t/rest" "$t/rest2"
    elif xargs -n 2000 sh -c 'IFS=,; exec sacct -X -n -P --format="$0" -j "$*"' "$2" \
            < "$t/rest" > "$t/a" 2> "$t/err"; then
        keep 'A|' "$t/rest" "$t/a"
        # usage of the finished ones: every allocation and step row (no -X), as U|...
        if [ -n "$3" ]; then
            xargs -n 2000 sh -c 'IFS=,; exec sacct -n -P --format="$0" -j "$*"' "$3" \
                < "$t/rest" 2>/dev/null | sed 's/^/U|/'
        fi
        drop "$t/a" "$t/rest" > "$t/rest2"
    else
        printf 'NOACCT|%s\n' "$(tr '\n' ' ' < "$t/err")"
        cp "$t/rest" "$t/rest2"
    fi
    if [ -s "$t/rest2" ]; then
        scontrol show job -o 2>/dev/null | awk '
            FILENAME == ARGV[1] { w[$1] = 1; next }
            { id = substr($1, 7) }
            # an array element: known as <ArrayJobId>_<ArrayTaskId>
            match($0, / ArrayJobId=[0-9]+ ArrayTaskId=[0-9]+ /) {
                split(substr($0, RSTART + 1, RLENGTH - 2), f, /[= ]/); id = f[2] "_" f[4]
            }
            (id in w) { print "C|" $0 }' "$t/rest2" -
    fi
fi
echo END
