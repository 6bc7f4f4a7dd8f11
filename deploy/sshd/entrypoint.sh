#!/bin/bash
# A plain OpenSSH server for the SSH transport tests (see ../common/kong-sshd.sh
# for the environment it reads).
. /opt/kong/common/kong-sshd.sh
kong_setup_user
kong_setup_hostkey
kong_start_sshd
for _ in $(seq 1 100); do
    if ss -Hltn "sport = :$KONG_SSH_PORT" 2>/dev/null | grep -q .; then
        break
    fi
    sleep 0.05
done
echo "KONG-READY"
kong_wait_forever
