#!/bin/bash
# An HTCondor personal pool (master, collector, negotiator, schedd, startd) and
# an OpenSSH server, configured at start from the environment:
#   KONG_CONDOR_PORT   the pool's shared port on 127.0.0.1 (required); the
#                      collector is reached through it
#   KONG_CPUS          slots of the startd (default: 8)
# plus the sshd variables of ../common/kong-sshd.sh.
. /opt/kong/common/kong-sshd.sh

: "${KONG_CONDOR_PORT:?}"
CPUS="${KONG_CPUS:-8}"

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local secs="$1" what="$2"
    shift 2
    local i
    for i in $(seq 1 $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    kong_fail "$what not ready after ${secs}s"
}

dump_logs() {
    tail -n 30 /var/log/condor/*Log 2>/dev/null || true
}
trap 'dump_logs' EXIT

kong_setup_user
kong_setup_hostkey

cat > /etc/condor/config.d/99-kong.config <<EOF
use ROLE : Personal
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
USE_SHARED_PORT = True
SHARED_PORT_PORT = $KONG_CONDOR_PORT
COLLECTOR_HOST = 127.0.0.1:$KONG_CONDOR_PORT
COLLECTOR_ADDRESS_FILE =
UID_DOMAIN = kong
FILESYSTEM_DOMAIN = kong
TRUST_UID_DOMAIN = True
NUM_CPUS = $CPUS
START = True
SUSPEND = False
PREEMPT = False
KILL = False
WANT_SUSPEND = False
WANT_VACATE = False
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 0
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
STARTD_CLAIM_IDLE_TIME = 30
SHADOW_QUEUE_UPDATE_INTERVAL = 2
# kong's walltime is a periodic_hold, seen within this many seconds (default 60)
PERIODIC_EXPR_INTERVAL = 5
JOB_START_DELAY = 0
JOB_START_COUNT = 100
CLAIM_WORKLIFE = 600
BASE_CGROUP =
USE_PID_NAMESPACES = False
# Without cgroups the job's CPU time and peak memory come from procd's snapshots of
# its processes (60 s apart by default: a short test job would show none)
PROCD_MAX_SNAPSHOT_INTERVAL = 1
DISCARD_SESSION_KEYRING_ON_STARTUP = False
SEC_DEFAULT_AUTHENTICATION_METHODS = FS
ALLOW_WRITE = \$(ALLOW_WRITE) 127.0.0.1
ALLOW_DAEMON = \$(ALLOW_DAEMON) 127.0.0.1
ENABLE_IPV6 = False
EOF

mkdir -p /var/log/condor /var/lib/condor/spool /var/lib/condor/execute /run/condor /var/lock/condor
chown -R condor:condor /var/log/condor /var/lib/condor /run/condor /var/lock/condor
/usr/sbin/condor_master
wait_for 60 "condor startd" sh -c "condor_status -af Name | grep -q ."
wait_for 60 "condor schedd" sh -c "condor_q -totals >/dev/null"

kong_start_sshd

# Ready means: the schedd accepts a job from the SSH user, runs it, and the job
# is in condor_history.
home="$(getent passwd "$KONG_SSH_USER" | cut -d: -f6)"
mkdir -p "$home/.kong-ready"
cat > "$home/.kong-ready/ready.sub" <<EOF
executable = /bin/true
log = $home/.kong-ready/ready.log
queue
EOF
chown -R "$KONG_SSH_USER" "$home/.kong-ready"
cd "$home/.kong-ready"
out="$(runuser -u "$KONG_SSH_USER" -- condor_submit -terse ready.sub 2>&1)" || kong_fail "test job: $out"
cluster="${out%%.*}"
runuser -u "$KONG_SSH_USER" -- condor_wait -wait 120 ready.log >/dev/null || kong_fail "test job $cluster did not finish"
wait_for 60 "history of test job $cluster" \
    sh -c "condor_history $cluster -limit 1 -af ExitCode | grep -q '^0$'"
cd /
rm -rf "$home/.kong-ready"
trap - EXIT
echo "KONG-READY port=$KONG_CONDOR_PORT"
kong_wait_forever
