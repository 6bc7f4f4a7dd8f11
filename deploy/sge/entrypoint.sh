#!/bin/bash
# A one-host Son of Grid Engine 8.1.9 cluster (Debian's gridengine-master, -exec,
# -client): this host is master, admin, submit and exec host, with queue all.q,
# a parallel environment and accounting (qacct), plus an OpenSSH server.
# Configured at start from the environment:
#   KONG_SGE_QMASTER_PORT, KONG_SGE_EXECD_PORT   (required)
#   KONG_CPUS      slots of all.q and of the parallel environment (default: 8)
#   KONG_SGE_PE    name of the parallel environment (default: smp)
#   KONG_SGE_ACCOUNTING_FLUSH   reporting_params accounting_flush_time, the delay of
#                  a finished job's qacct record (default 00:00:01; Grid Engine's
#                  own default is the flush_time, 00:00:15)
# plus the sshd variables of ../common/kong-sshd.sh. deploy/README.md lists the
# traps of Grid Engine in a container that this script works around.
. /opt/kong/common/kong-sshd.sh

: "${KONG_SGE_QMASTER_PORT:?}" "${KONG_SGE_EXECD_PORT:?}"
CPUS="${KONG_CPUS:-8}"
PE="${KONG_SGE_PE:-smp}"
FLUSH="${KONG_SGE_ACCOUNTING_FLUSH:-00:00:01}"
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON="$SGE_ROOT/$SGE_CELL/common"
SPOOL=/var/spool/gridengine
HOST="$(hostname)"
CONF=/run/kong-sge
mkdir -p "$CONF"

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local secs="$1" what="$2"
    shift 2
    local _
    for _ in $(seq 1 $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    kong_fail "$what not ready after ${secs}s"
}

dump_logs() {
    tail -n 30 "$SPOOL"/qmaster/messages "$SPOOL"/execd/*/messages /tmp/*_messages.* \
        2>/dev/null || true
}
trap 'dump_logs' EXIT

kong_setup_user
kong_setup_hostkey

# The host's name must resolve to one address and that address back to the same
# name. Under host networking the container has the machine's hostname and a copy
# of its /etc/hosts (this file is the container's own). Our name first, so that
# the reverse look-up of 127.0.0.1 is the name and not "localhost".
printf '127.0.0.1 %s\n127.0.0.1 localhost\n' "$HOST" > /etc/hosts

# Every client finds the ports here (qsub over ssh reads no profile, so
# SGE_QMASTER_PORT in an environment would not reach it); minbase has no
# /etc/services at all.
touch /etc/services
sed -i -e '/^sge_qmaster[[:space:]]/d' -e '/^sge_execd[[:space:]]/d' /etc/services
printf 'sge_qmaster\t%s/tcp\nsge_execd\t%s/tcp\n' \
    "$KONG_SGE_QMASTER_PORT" "$KONG_SGE_EXECD_PORT" >> /etc/services

# The cell's bootstrap file comes with the package, the master host is this
# container's. The package's postinst made the spool without /etc/services, and
# spooldefaults then fails silently (exit 1, no message): the spool has no global
# configuration and sge_qmaster stops with "global configuration not defined".
# Make it again, now that the ports are known.
# The global configuration it loads, with: accounting records reaching qacct
# after accounting_flush_time (short here: tests wait for them), load reports every
# 2 s (the first one brings the host's queue out of state "au"), any uid.
sed -i -e "s/^reporting_params .*/reporting_params accounting=true reporting=false \
flush_time=00:00:15 joblog=false sharelog=00:00:00 accounting_flush_time=$FLUSH/" \
    -e 's/^load_report_time .*/load_report_time 00:00:02/' \
    -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' \
    /usr/share/gridengine/default-configuration
echo "$HOST" > "$COMMON/act_qmaster"
rm -rf "$SPOOL/spooldb" "$SPOOL/qmaster"
mkdir -p "$SPOOL/spooldb" "$SPOOL/qmaster/job_scripts"
chown -R sgeadmin:sgeadmin "$SPOOL/spooldb" "$SPOOL/qmaster"
runuser -u sgeadmin -- /usr/share/gridengine/scripts/init_cluster \
    "$SGE_ROOT" "$SGE_CELL" "$SPOOL/spooldb" sgeadmin > "$CONF/init_cluster.log" 2>&1 \
    || kong_fail "init_cluster: $(tail -n 5 "$CONF/init_cluster.log")"
mkdir -p /run/gridengine "$SPOOL/execd"
chown sgeadmin:sgeadmin /run/gridengine "$SPOOL/execd" "$COMMON/act_qmaster"

SGE_MASTER_PIDFILE=/run/gridengine/qmaster.pid /usr/sbin/sge_qmaster
wait_for 60 sge_qmaster qconf -sh

# Schedule every second, not every 15 s.
qconf -ssconf > "$CONF/sched"
sed -i -e 's/^schedule_interval .*/schedule_interval 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec 1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec 1/' "$CONF/sched"
qconf -Msconf "$CONF/sched" >/dev/null

qconf -as "$HOST" >/dev/null
cat > "$CONF/exechost" <<CONFEOF
hostname              $HOST
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
CONFEOF
qconf -Ae "$CONF/exechost" >/dev/null

cat > "$CONF/pe" <<CONFEOF
pe_name            $PE
slots              $CPUS
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
CONFEOF
qconf -Ap "$CONF/pe" >/dev/null

# all.q from Grid Engine's own queue template, with this host and its slots; the
# queue's shell for scripts without -S is /bin/sh (the template says csh). No load
# thresholds: on a busy machine (load above 1.75 per CPU) the queue would be in
# alarm state "a" and start nothing.
qconf -sq > "$CONF/queue"
sed -i -e 's/^qname .*/qname all.q/' -e "s/^hostlist .*/hostlist $HOST/" \
    -e 's/^load_thresholds .*/load_thresholds NONE/' \
    -e "s/^slots .*/slots $CPUS/" -e "s/^pe_list .*/pe_list $PE/" \
    -e 's|^shell .*|shell /bin/sh|' "$CONF/queue"
qconf -Aq "$CONF/queue" >/dev/null

/usr/sbin/sge_execd
wait_for 60 "sge_execd (all.q@$HOST up)" \
    sh -c "qstat -f -q all.q 2>/dev/null | grep -E '^all\.q@' | grep -qvE '[[:space:]](a|u|E|d)+\$'"
wait_for 60 "sge_execd load report" sh -c "qhost -h '$HOST' | grep -q '^$HOST .*[0-9]'"

kong_start_sshd

# Ready means: the scheduler takes a job from the SSH user, runs it, and qacct has it.
out="$(runuser -u "$KONG_SSH_USER" -- qsub -terse -sync y -b y -o /dev/null -e /dev/null \
    -N kong-ready true 2>&1)" || kong_fail "test job: $out"
jobid="$(echo "$out" | head -n 1)"
wait_for 60 "accounting of test job $jobid" sh -c "qacct -j $jobid | grep -q '^exit_status *0'"
trap - EXIT
echo "KONG-READY host=$HOST queue=all.q pe=$PE slots=$CPUS"
kong_wait_forever
