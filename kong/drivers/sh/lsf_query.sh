# shellcheck shell=sh
# ids are job ids (123) and array elements' (123[4]), one a line: they are split into
# words on purpose, with globbing off ("123[4]" would be a pattern)
# shellcheck disable=SC2086
set -f
ids=$(cat)
fmt=$1; delim=$2; mode=$3
# An element is asked for as its array: bjobs lists every element of an array's id
# (JOBID 123, JOBINDEX 4). Each id once.
jobs=$(printf '%s\n' $ids | sed 's/\[.*//' | awk '!seen[$0]++')
out=""
if [ "$mode" != plain ]; then
    out=$(bjobs -a -o "$fmt" -json $jobs 2>/dev/null)
    # "Cannot connect to LSF. Please wait ..." may come before the document
    case $out in '{'*) ;; *) out=$(printf '%s\n' "$out" | sed -n '/^{/,$p') ;; esac
fi
case $out in
    '{'*) printf 'KONG-JSON\n%s\n' "$out"
          # the ids answered for: with white space out a record reads
          # "JOBID":"1","JOBINDEX":"4","STAT":... (the order of $fmt), that is 1[4],
          # or 1 for index 0 or none (no array's); unknown ids carry an ERROR
          found=$(printf '%s' "$out" | tr -d ' \t\r\n' |
                  grep -oE '"JOBID":"[0-9]+",("JOBINDEX":"[0-9]+",)?"STAT"' |
                  sed -E 's/"JOBID":"([0-9]+)",("JOBINDEX":"([0-9]+)",)?.*/\1[\3]/
                          s/\[0?\]$//') ;;
    *) out=$(bjobs -a -noheader -o "$fmt delimiter='$delim'" $jobs 2>&1)
       # what is not a record nor "Job <n> is not found" means LSF did not answer
       bad=$(printf '%s\n' "$out" | grep -v -e "^[0-9][0-9]*$delim" -e 'is not found' \
             -e '^$' | head -n 3 | tr '\n' ' ')
       if [ -n "$bad" ]; then printf 'ERR|%s\n' "$bad"; exit 0; fi
       printf 'KONG-PLAIN\n%s\n' "$out"
       found=$(printf '%s\n' "$out" | grep "^[0-9][0-9]*$delim" |
               awk -F "$delim" '{ print ($2 == "0" || $2 == "") ? $1 : $1 "[" $2 "]" }') ;;
esac
# One pass over both lists (not a scan of the answer per id): linear in the jobs.
missing=$({ printf '%s\n' "$found"; echo KONG-SEP; printf '%s\n' $ids; } |
          awk '$0 == "KONG-SEP" { p = 1; next } !p { s[$0] = 1; next } $0 != "" && !($0 in s)' |
          sed 's/\[.*//' | awk '!seen[$0]++' | tr '\n' ' ')
if [ -n "$missing" ]; then
    # Aged out of mbatchd's memory (CLEAN_PERIOD): the event log still has them,
    # unless it was rotated since (then the job's exit_code file is the fallback).
    # An element's history is asked for as its array's (every element's).
    printf 'KONG-BHIST\n'
    bhist -l $missing 2>&1
fi
printf 'KONG-END\n'
