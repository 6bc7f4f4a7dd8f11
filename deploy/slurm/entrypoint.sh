#!/bin/bash
# A one-node Slurm cluster with accounting (munge, MariaDB, slurmdbd, slurmctld,
# slurmd) and an OpenSSH server, configured at start from the environment:
#   KONG_SLURMCTLD_PORT, KONG_SLURMD_PORT, KONG_SLURMDBD_PORT   (required)
#   KONG_CLUSTER_NAME   Slurm ClusterName (default: kong)
#   KONG_CPUS           CPUs of the node (default: 8); up to 4 jobs share a CPU
#   KONG_PARTITION      partition name (default: debug)
#   KONG_SHORT_PARTITION  a second partition with limits (default: short): at most
#                       2 minutes and 1024 MB per job, for tests of retries with more
#   KONG_ACCOUNT        accounting account of the SSH user (default: kong)
# plus the sshd variables of ../common/kong-sshd.sh. MariaDB listens on a Unix
# socket only; every TCP daemon binds 127.0.0.1 on its own port.
. /opt/kong/common/kong-sshd.sh

: "${KONG_SLURMCTLD_PORT:?}" "${KONG_SLURMD_PORT:?}" "${KONG_SLURMDBD_PORT:?}"
CLUSTER="${KONG_CLUSTER_NAME:-kong}"
CLUSTER="$(echo "$CLUSTER" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '_')"
CPUS="${KONG_CPUS:-8}"
PARTITION="${KONG_PARTITION:-debug}"
SHORT_PARTITION="${KONG_SHORT_PARTITION:-short}"
ACCOUNT="${KONG_ACCOUNT:-kong}"
NODE="$(hostname -s)"

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
    tail -n 30 /var/log/slurm/*.log /var/log/munge/*.log 2>/dev/null || true
}
trap 'dump_logs' EXIT

kong_setup_user
kong_setup_hostkey

# munge: a fresh key for every container.
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
rm -f /etc/munge/munge.key
mungekey --create --keyfile=/etc/munge/munge.key
chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged
wait_for 20 munge munge -n

# MariaDB on its Unix socket only.
mkdir -p /run/mysqld /var/log/mysql
chown mysql:mysql /run/mysqld /var/log/mysql
/usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
    --skip-log-bin --innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=0 \
    --log-error=/var/log/mysql/error.log &
wait_for 60 mariadb mariadb-admin --socket=/run/mysqld/mysqld.sock ping
mariadb --socket=/run/mysqld/mysqld.sock <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

mkdir -p /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/slurm
chown slurm:slurm /var/log/slurm /var/spool/slurmctld /run/slurm

cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$KONG_SLURMDBD_PORT
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 0600 /etc/slurm/slurmdbd.conf

# Memory is a consumable resource (CR_CPU_Memory) so that a job's --mem is its limit,
# enforced by polling (jobacct_gather/linux every second, OverMemoryKill: the
# container's cgroup fs is read-only). RealMemory is far above the machine's so that
# memory never limits how many jobs run at once (DefMemPerNode for jobs without
# --mem); the partition $SHORT_PARTITION has limits for retries to run into.
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$KONG_SLURMCTLD_PORT
SlurmdPort=$KONG_SLURMD_PORT
CommunicationParameters=NoInAddrAny
SlurmdParameters=config_overrides
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
LaunchParameters=use_interactive_step
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MaxJobCount=100000
MaxArraySize=10001
MinJobAge=2
DefMemPerNode=2048
KillWait=2
InactiveLimit=0
Waittime=0
MessageTimeout=20
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$KONG_SLURMDBD_PORT
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=1000000 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=$SHORT_PARTITION Nodes=$NODE MaxTime=2 MaxMemPerNode=1024 DefMemPerNode=256 State=UP OverSubscribe=FORCE:4
EOF

runuser -u slurm -- /usr/sbin/slurmdbd
wait_for 60 slurmdbd sacctmgr -n show cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="kong tests" Organization=kong >/dev/null
sacctmgr -i add user "$KONG_SSH_USER" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null

/usr/sbin/slurmctld
wait_for 60 slurmctld scontrol ping
/usr/sbin/slurmd
wait_for 60 "slurmd (node idle)" sh -c "sinfo -h -N -o '%T' | grep -q '^idle'"

kong_start_sshd

# Ready means: the scheduler accepts a job from the SSH user, runs it, and the
# job is in the accounting database.
out="$(runuser -u "$KONG_SSH_USER" -- sbatch --parsable --wait -o /dev/null -J kong-ready --wrap true)" \
    || kong_fail "test job: $out"
jobid="${out%%;*}"
wait_for 60 "accounting of test job $jobid" \
    sh -c "sacct -n -X -j $jobid -o State | grep -q COMPLETED"
trap - EXIT
echo "KONG-READY cluster=$CLUSTER partition=$PARTITION account=$ACCOUNT"
kong_wait_forever
