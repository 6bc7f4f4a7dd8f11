# shellcheck shell=sh
while IFS='	' read -r kong_limit kong_since kong_rm kong_c; do
    echo KONG-QUEUE
    condor_q -json -attributes "$2" -constraint "$kong_c" </dev/null || exit 3
    echo KONG-HISTORY
    if [ "$kong_since" != - ]; then
        condor_history -json -attributes "$2" -constraint "$kong_c" -limit "$kong_limit" \
            -since "$kong_since" </dev/null || exit 4
    else
        condor_history -json -attributes "$2" -constraint "$kong_c" -limit "$kong_limit" \
            </dev/null || exit 4
    fi
    if [ "$kong_rm" = 1 ]; then
        condor_rm -constraint "($kong_c) && JobStatus == 5" </dev/null >/dev/null 2>&1
    fi
done
echo KONG-END
