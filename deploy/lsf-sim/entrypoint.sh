#!/bin/bash
# A test cluster with the LSF SIMULATOR (not IBM Spectrum LSF; see README.md): an
# OpenSSH server (../common/kong-sshd.sh) whose login user finds simulated bsub,
# bjobs, bkill and bhist on its PATH. Ready once a job submitted as that user has
# run to DONE.
. /opt/kong/common/kong-sshd.sh
kong_setup_user

for cmd in bsub bjobs bkill bhist bparams; do
    ln -sf /opt/kong/lsf-sim/lsfsim.py "/usr/local/bin/$cmd"
done
cat > /etc/lsf-sim.conf <<CONF
CLUSTER=${KONG_CLUSTER_NAME:-kong-sim}
SLOTS=${KONG_CPUS:-8}
QUEUES=normal short long
CLEAN_PERIOD=${KONG_LSF_SIM_CLEAN_PERIOD:-3600}
JOB_TERMINATE_INTERVAL=${KONG_LSF_SIM_TERMINATE_INTERVAL:-10}
MINUTE=${KONG_LSF_SIM_MINUTE:-60}
MAX_JOB_ARRAY_SIZE=${KONG_LSF_SIM_MAX_ARRAY_SIZE:-1000}
CONF
chmod 644 /etc/lsf-sim.conf
# The simulator's "mbatchd" state; the login user runs every command, so it owns it.
mkdir -p /var/spool/lsf-sim
chown "$KONG_SSH_USER" /var/spool/lsf-sim

kong_setup_hostkey
kong_start_sshd
for _ in $(seq 1 100); do
    if ss -Hltn "sport = :$KONG_SSH_PORT" 2>/dev/null | grep -q .; then
        break
    fi
    sleep 0.05
done

# Self-test as the login user: submit, see it DONE in bjobs -a.
self_test=$(su - "$KONG_SSH_USER" -c 'printf "#BSUB -J kong-selftest\n#BSUB -o selftest.out\necho ok\n" | bsub' 2>&1) \
    || kong_fail "bsub self-test: $self_test"
kong_log "$self_test"
job_id=$(printf '%s' "$self_test" | sed -n 's/^Job <\([0-9]*\)>.*/\1/p')
[ -n "$job_id" ] || kong_fail "no job id in: $self_test"
for _ in $(seq 1 100); do
    stat=$(su - "$KONG_SSH_USER" -c "bjobs -a -noheader -o 'stat' $job_id" 2>&1 || true)
    [ "$stat" = "DONE" ] && break
    sleep 0.1
done
[ "$stat" = "DONE" ] || kong_fail "self-test job $job_id not DONE: $stat"
echo "KONG-READY"
kong_wait_forever
