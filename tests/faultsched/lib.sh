# FAULT-INJECTING STAND-IN for Slurm's commands, for tests only (tests/faultsched.py).
# Sourced by the fake sbatch, squeue, sacct, scancel and scontrol beside it. Jobs
# really run (in the background, under sh); their records live in $FAULTSCHED_DIR:
#   jobs/<id>/{name,script,out,err,pid,started,rc,cancelled}, submits (a counter),
#   control (key=value lines, read on every call: the faults to inject).
# shellcheck shell=sh
D=${FAULTSCHED_DIR:?FAULTSCHED_DIR is not set}
mkdir -p "$D/jobs"

# ctl KEY DEFAULT: the value of KEY in the control file (the last line wins).
ctl() {
    kong_v=$(sed -n "s/^$1=//p" "$D/control" 2>/dev/null | tail -n 1)
    printf '%s' "${kong_v:-$2}"
}

# state ID: the Slurm state word of a fake job.
state() {
    j="$D/jobs/$1"
    if [ -f "$j/cancelled" ]; then echo CANCELLED
    elif [ -f "$j/rc" ]; then
        if [ "$(cat "$j/rc")" = 0 ]; then echo COMPLETED; else echo FAILED; fi
    elif [ -f "$j/started" ]; then echo RUNNING
    else echo PENDING
    fi
}

# exitcode ID: sacct's ExitCode (rc:signal); exitcode_lag=1 answers 0:0, as a record
# that has the job's end but not yet its code does.
exitcode() {
    if [ -f "$D/jobs/$1/rc" ] && [ "$(ctl exitcode_lag 0)" != 1 ]; then echo "$(cat "$D/jobs/$1/rc"):0"; else echo "0:0"; fi
}

# start ID: run a pending job's script in the background, in its own session.
start() {
    j="$D/jobs/$1"
    [ -f "$j/started" ] && return 0
    : > "$j/started"
    # shellcheck disable=SC2016 # expanded by the inner sh
    # an array element learns its index as Slurm tells it
    setsid sh -c '[ -f "$1/index" ] && SLURM_ARRAY_TASK_ID=$(cat "$1/index") && export SLURM_ARRAY_TASK_ID
        sh "$1/script" > "$(cat "$1/out")" 2> "$(cat "$1/err")"; echo $? > "$1/rc"' \
        sh "$j" < /dev/null > /dev/null 2>&1 &
    echo $! > "$j/pid"
}

# schedule: start the pending jobs, unless the control file holds them (hold=1).
schedule() {
    [ "$(ctl hold 0)" = 1 ] && return 0
    for j in "$D/jobs"/*; do
        [ -d "$j" ] || continue
        id=${j##*/}
        [ "$(state "$id")" = PENDING ] && start "$id"
    done
    return 0
}

# live ID: whether the job is still in the queue (squeue shows finished jobs only
# until MinJobAge; forget=1 makes it forget them at once).
shown() {
    case $(state "$1") in
        PENDING|RUNNING) return 0 ;;
        *) [ "$(ctl forget 0)" != 1 ] ;;
    esac
}

# render FORMAT ID: a squeue/sacct line of job ID in FORMAT (%i %j %T %r %N %V %S, and
# %F %K: an array element's array id and index, N/A for a plain job's index).
render() {
    j="$D/jobs/$2"
    kong_k=N/A; [ -f "$j/index" ] && kong_k=$(cat "$j/index")
    printf '%s\n' "$1" | sed -e "s|%i|$2|g" -e "s|%j|$(cat "$j/name")|g" \
        -e "s|%F|${2%%_*}|g" -e "s|%K|$kong_k|g" \
        -e "s|%T|$(state "$2")|g" -e "s|%r|None|g" -e "s|%N|fakenode|g" \
        -e "s|%V|2026-01-01T00:00:00|g" -e "s|%S|2026-01-01T00:00:01|g"
}
