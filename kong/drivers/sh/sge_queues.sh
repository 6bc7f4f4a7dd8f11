# shellcheck shell=sh
# Every cluster queue's configuration, each after a line "KONG-QUEUE <name>".
for kong_q in $(qconf -sql); do
    printf 'KONG-QUEUE %s\n' "$kong_q"
    qconf -sq "$kong_q"
done
