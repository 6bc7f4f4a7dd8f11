# shellcheck shell=sh
# Stderr logs on stdin, one path a line: print each whose tail carries slurmstepd's
# "exceeded memory limit" (JobAcctGatherParams=OverMemoryKill: the job was killed for
# its memory, and sacct shows only a signal 9).
while IFS= read -r log; do
    if tail -c 65536 -- "$log" 2>/dev/null | grep -qi 'exceeded .*memory limit'; then
        printf '%s\n' "$log"
    fi
done
