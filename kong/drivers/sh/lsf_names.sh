# shellcheck shell=sh
out=$(bjobs -a -o "jobid job_name" -json 2>/dev/null)
case $out in '{'*) ;; *) out=$(printf '%s\n' "$out" | sed -n '/^{/,$p') ;; esac
case $out in
    '{'*) printf 'KONG-JSON\n%s\n' "$out" ;;
    *) out=$(bjobs -a -noheader -o "jobid job_name delimiter='$2'" 2>&1)
       bad=$(printf '%s\n' "$out" | grep -v -e "^[0-9][0-9]*$2" -e '^No job found' \
             -e '^$' | head -n 3 | tr '\n' ' ')
       if [ -n "$bad" ]; then printf 'ERR|%s\n' "$bad"; exit 0; fi
       printf 'KONG-PLAIN\n%s\n' "$out" ;;
esac
printf 'KONG-END\n'
