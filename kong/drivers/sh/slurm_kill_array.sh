# shellcheck shell=sh
# Kill elements of one job array ("$@": their ids, 123_4 ...) in one scancel. scancel
# says nothing of an element that has already ended (it exits 0, as for a kill), so
# the ended ones are named first, in scancel's own words for a plain job, and only
# the others are cancelled. One line of code: kill commands go one per line to each.sh.
# shellcheck disable=SC2046,SC2086 # ids are words on purpose
kong_ended=$(squeue -h -r -t all -j "$(echo "$@" | tr ' ' ',')" -o '%i %T' 2>/dev/null | awk '$2 !~ /^(PENDING|RUNNING|SUSPENDED|COMPLETING|CONFIGURING|REQUEUED|RESIZING|SIGNALING|STAGE_OUT|STOPPED|REQUEUE_HOLD|REQUEUE_FED|RESV_DEL_HOLD)$/ { print $1 }' | tr '\n' ' '); kong_live=; for kong_i in "$@"; do case " $kong_ended " in *" $kong_i "*) echo "scancel: error: Kill job error on job id $kong_i: Job/step already completing or completed" ;; *) kong_live="$kong_live $kong_i" ;; esac; done; [ -z "$kong_live" ] || exec scancel $kong_live
