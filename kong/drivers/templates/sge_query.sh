# shellcheck shell=sh
# Grid Engine status in one round trip (kong/drivers/sge.py runs it with sh -c).
#   "$1"  submit lock of this kong (only waited for in jobname mode)
#   "$2"  jobnumber: stdin holds batch ids; jobname: stdin holds kong tokens
#   "$3"  qacct job name pattern of this kong's jobs, e.g. kong-<install>-*
# Prints the user's live jobs as `qstat -xml` between QSTAT and ENDQSTAT, then the
# `qacct -j` records (as qacct prints them) of the wanted jobs that are not live,
# between QACCT and ENDQACCT (NOACCT|<why> when qacct cannot read the accounting),
# ERR|<why> when qstat fails, and END last: an answer without END is cut short.
mode="$2"
pattern="$3"
t=$(mktemp -d 2>/dev/null) || { echo 'ERR|mktemp failed'; echo END; exit 0; }
trap 'rm -rf "$t"' EXIT
cat > "$t/wanted"
me=$(id -un)
if ! qstat -xml -u "$me" > "$t/q" 2> "$t/err"; then
    printf 'ERR|qstat: %s\n' "$(tr '\n' ' ' < "$t/err")"
    echo END
    exit 0
fi
echo QSTAT
cat "$t/q"
echo ENDQSTAT
if [ "$mode" = jobnumber ]; then
    # Jobs in qstat need no accounting record.
    sed -n 's:.*<JB_job_number>\([0-9][0-9]*\)</JB_job_number>.*:\1:p' "$t/q" > "$t/live"
    awk 'FILENAME == ARGV[1] { l[$1] = 1; next } !($1 in l)' "$t/live" "$t/wanted" > "$t/rest"
else
    cp "$t/wanted" "$t/rest"
    # A job that ended a moment ago has left qstat, and its accounting record is
    # written only after accounting_flush_time (15 s by default): it is in neither.
    # qmaster keeps the last finished_jobs (100) ended jobs as zombies; and after
    # waiting out the flush, qacct has every job that had ended before the qstat
    # above (this look-up runs after the submit loop is over, so each job kong
    # submitted was in that qstat, or had ended).
    echo ZOMBIE
    qstat -s z -xml -u "$me" 2>/dev/null
    echo ENDZOMBIE
    flush=$(qconf -sconf global 2>/dev/null | awk '
        { if (sub(/\\$/, "")) { line = line $0; next } line = line $0 }
        line ~ /^reporting_params/ {
            n = split(line, w, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                split(w[i], kv, "=")
                if (kv[1] == "accounting_flush_time") a = kv[2]
                if (kv[1] == "flush_time") f = kv[2]
            }
        }
        { line = "" }
        END {
            v = (a != "") ? a : ((f != "") ? f : "00:00:15")
            m = split(v, p, ":"); s = 0
            for (i = 1; i <= m; i++) s = s * 60 + p[i]
            if (s > 60) s = 60
            print s + 1
        }')
    sleep "${flush:-16}"
fi
if [ -s "$t/rest" ]; then
    if qacct -o "$me" -j "$pattern" > "$t/a" 2> "$t/err"; then
        echo QACCT
        # Keep the records (from one ===== line to the next) whose $mode is wanted.
        awk -v key="$mode" '
            FILENAME == ARGV[1] { w[$1] = 1; next }
            /^=+$/ { if (keep) printf "%s", rec; rec = $0 "\n"; keep = 0; next }
            { rec = rec $0 "\n"; if ($1 == key && ($2 in w)) keep = 1 }
            END { if (keep) printf "%s", rec }' "$t/rest" "$t/a"
        echo ENDQACCT
    elif grep -q 'not found' "$t/err" && ! grep -qi 'accounting' "$t/err"; then
        # "error: job name kong-... not found": no record of this kong yet.
        echo QACCT
        echo ENDQACCT
    else
        printf 'NOACCT|%s\n' "$(tr '\n' ' ' < "$t/err")"
    fi
fi
echo END
