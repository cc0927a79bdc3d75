#!/usr/bin/env bash
# A Slurm 22.05 cluster on this machine (munged + mariadbd + slurmdbd + slurmctld + slurmd), for the
# test suite and for trying the SLURM path on a workstation. Run as root.
#
#   slurm/local-cluster.sh up [--nodes N]  start whatever is not running, wait until usable (idempotent)
#   slurm/local-cluster.sh down     cancel jobs, stop exactly what `up` started (idempotent)
#   slurm/local-cluster.sh status   one line per daemon; exit 0 only if all are running
#   slurm/local-cluster.sh env      print `export SLURM_CONF=...` (eval "$(slurm/local-cluster.sh env)")
#
# Everything (configs, munge key and socket, mariadb datadir, spool/state dirs, logs, PID files)
# lives under $CONVBENCH_CLUSTER_DIR (default /tmp/convbench-cluster); nothing under /etc is
# touched. Clients (sbatch, srun, squeue, sacct, scontrol) find this cluster only through
# SLURM_CONF, which also carries the path of our private munge socket.
#
# Plain `up` is one node, `localhost`, on loopback. `up --nodes N` (N >= 2) runs N slurmd nodes,
# node1..nodeN, each in its own network namespace (its own address in a private /24, its own
# hostname in a UTS namespace, its own /etc/hosts bind-mounted in a mount namespace), all bridged
# to the controller: slurmctld, slurmdbd and munged stay in this (root) network namespace, where
# the bridge holds the controller's address, so clients (sbatch, squeue, convbench sweep) work
# from the shell that ran `up`. The namespaces, veths and bridge are named after a tag derived
# from the state dir (`status` prints it) and recorded in $STATE_DIR/net; `down` removes exactly those.
#
# Environment knobs (defaults in brackets):
#   CONVBENCH_CLUSTER_DIR [/tmp/convbench-cluster]  CONVBENCH_CLUSTER_NAME [convbench]
#   CONVBENCH_CLUSTER_TIMEOUT [60] seconds per readiness wait
#   CONVBENCH_CLUSTER_DB_PORT [3316]  (not 3306, so a system MariaDB/MySQL does not clash)
#   CONVBENCH_SLURMCTLD_PORT [6817] CONVBENCH_SLURMD_PORT [6818] CONVBENCH_SLURMDBD_PORT [6819]
#   CONVBENCH_CLUSTER_SUBNET [10.2xx.yyy, from the state dir] the /24 of the N-node cluster (3 octets)
#   CONVBENCH_CLUSTER_MAX_ARRAY_SIZE [1001] slurm.conf's MaxArraySize (Slurm's default): array indices < it
#   CONVBENCH_CLUSTER_MAX_JOB_COUNT [20000] slurm.conf's MaxJobCount: every array task is a job record,
#     so Slurm's default 10000 cannot queue a 10,000-run sweep (tests/benchmarks/test_sweep_scale.py)
set -euo pipefail

# Daemons live in /usr/sbin, which is not on every user's PATH.
export PATH="/usr/sbin:/sbin:${PATH}"

STATE_DIR="$(realpath -m "${CONVBENCH_CLUSTER_DIR:-/tmp/convbench-cluster}")"
CLUSTER_NAME="${CONVBENCH_CLUSTER_NAME:-convbench}"
TIMEOUT="${CONVBENCH_CLUSTER_TIMEOUT:-60}"
DB_PORT="${CONVBENCH_CLUSTER_DB_PORT:-3316}"
SLURMCTLD_PORT="${CONVBENCH_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${CONVBENCH_SLURMD_PORT:-6818}"
SLURMDBD_PORT="${CONVBENCH_SLURMDBD_PORT:-6819}"
MAX_ARRAY_SIZE="${CONVBENCH_CLUSTER_MAX_ARRAY_SIZE:-1001}"
MAX_JOB_COUNT="${CONVBENCH_CLUSTER_MAX_JOB_COUNT:-20000}"

ETC_DIR="${STATE_DIR}/etc"
RUN_DIR="${STATE_DIR}/run"
LOG_DIR="${STATE_DIR}/log"
MUNGE_DIR="${STATE_DIR}/munge"       # owned by the munge user: munged refuses insecure dirs
DB_DIR="${STATE_DIR}/mariadb"
MUNGE_SOCKET="${MUNGE_DIR}/munge.socket"
DB_SOCKET="${RUN_DIR}/mariadb.sock"
SLURM_CONF_FILE="${ETC_DIR}/slurm.conf"

NODES_FILE="${STATE_DIR}/nodes"   # the node count of the last `up`
NET_FILE="${STATE_DIR}/net"       # the namespaces and links that `up` made, one per line

# The network of an N-node cluster: names and the /24 derive from the state dir, so clusters in
# different dirs never share a namespace, a link or an address. Link names stay within 15 chars.
HASH="$(printf '%s' "${STATE_DIR}" | cksum | cut -d' ' -f1)"
TAG="cb$(printf '%06x' $((HASH % 16777216)))"
SUBNET="${CONVBENCH_CLUSTER_SUBNET:-10.$((200 + HASH % 50)).$((HASH / 50 % 256))}"
BRIDGE="${TAG}br"
CONTROLLER_ADDR="${SUBNET}.1"
HOSTS_FILE="${ETC_DIR}/hosts"

node_count() { if [[ -s "${NODES_FILE}" ]]; then tr -dc '0-9' <"${NODES_FILE}"; else echo 1; fi; }
NODES="$(node_count)"

# node_names: the slurmd nodes of this cluster.
node_names() {
    local i
    if ((NODES == 1)); then echo localhost; else for ((i = 1; i <= NODES; i++)); do echo "node$i"; done; fi
}
netns_of() { echo "${TAG}-$1"; }                  # node1 -> cb1a2b3c-node1 (/run/netns/...)
veth_of() { echo "${TAG}v${1#node}"; }             # node1 -> cb1a2b3cv1 (bridge side)
addr_of() { echo "${SUBNET}.$((${1#node} + 1))"; } # node1 -> SUBNET.2

# daemons: start order; `down` walks it backwards. slurmd-NODE is the slurmd of NODE.
daemons() {
    local n
    echo munged mariadbd slurmdbd slurmctld
    if ((NODES == 1)); then echo slurmd; else for n in $(node_names); do echo "slurmd-$n"; done; fi
}

# Every client call below, and every daemon, must see our config rather than /etc/slurm.
export SLURM_CONF="${SLURM_CONF_FILE}"

log() { printf '%s\n' "$*" >&2; }

# die MESSAGE [LOGFILE]: print the message and the tail of the log that explains it.
die() {
    log "local-cluster: ERROR: $1"
    if [[ -n "${2:-}" && -f "$2" ]]; then
        log "--- last lines of $2 ---"
        tail -n 25 "$2" >&2 || true
    fi
    exit 1
}

pid_file() {
    # munged runs as the munge user and can only write inside its own directory.
    if [[ "$1" == munged ]]; then echo "${MUNGE_DIR}/munged.pid"; else echo "${RUN_DIR}/$1.pid"; fi
}

log_file() { echo "${LOG_DIR}/$1.log"; }

comm_of() { echo "${1%%-*}"; }  # slurmd-node1 is a slurmd

# alive PID: the process exists and is not a zombie. Daemons are reparented to PID 1, which may
# reap late (in this sandbox about once a second), and `kill -0` succeeds on zombies.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"   # drop "pid (comm) ", comm may contain spaces
    [[ -n "$stat" && "${stat:0:1}" != Z ]]
}

# read_pid NAME: the PID recorded for NAME, if that process is alive and is really NAME
# (checking /proc/PID/comm guards against a stale PID file whose PID was reused).
read_pid() {
    local f pid
    f="$(pid_file "$1")"
    [[ -r "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] || return 1
    [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == "$(comm_of "$1")" ]] && alive "$pid" || return 1
    echo "$pid"
}

is_running() { read_pid "$1" >/dev/null; }

# wait_until NAME DESCRIPTION CMD...: poll CMD until it succeeds; fail early if daemon NAME died
# (after a grace period, since daemons write their PID file only after forking, and mariadbd only
# after InnoDB's start-up, which a busy machine stretches to seconds; docs/measurements.md).
wait_until() {
    local name="$1" what="$2" start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - start >= TIMEOUT)); then
            die "${what}: not ready after ${TIMEOUT}s" "$(log_file "$name")"
        fi
        if ((SECONDS - start >= 20)) && ! is_running "$name"; then
            die "${name} exited during startup (${what})" "$(log_file "$name")"
        fi
        sleep 0.2
    done
}

require_root() {
    [[ ${EUID} -eq 0 ]] || die "must run as root (it runs munged as user munge, the other daemons as root)"
}

# write_if_changed FILE MODE: content from stdin; keep the file (and its mtime) when unchanged so
# running daemons never see a config that differs from the one they loaded.
write_if_changed() {
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f "$1" ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

generate_configs() {
    local cpus mem_mb real_mem db_pass
    cpus="$(nproc)"
    mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    # slurmd drains a node whose RealMemory exceeds what it finds, so stay below 90 % of RAM.
    real_mem=$((mem_mb * 9 / 10))
    if ((real_mem > 20000)); then real_mem=20000; fi

    # The DB password is made once and kept, as mariadb's user table keeps it too.
    if [[ ! -s "${ETC_DIR}/db.pass" ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"${ETC_DIR}/db.pass")
    fi
    db_pass="$(cat "${ETC_DIR}/db.pass")"

    local controller=localhost spool="${STATE_DIR}/slurmd" slurmd_pid slurmd_log nodes n
    slurmd_pid="$(pid_file slurmd)" slurmd_log="$(log_file slurmd)"
    nodes="NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mem} State=UNKNOWN"
    if ((NODES > 1)); then
        # The nodes reach the controller at its bridge address; each slurmd has its own spool, PID
        # file and log (%n: the node name). The CPUs are shared: each node offers all of them.
        controller="localhost(${CONTROLLER_ADDR})" spool="${STATE_DIR}/slurmd/%n"
        slurmd_pid="$(pid_file slurmd-%n)" slurmd_log="$(log_file slurmd-%n)" nodes=""
        for n in $(node_names); do
            nodes+="NodeName=$n NodeAddr=$(addr_of "$n") CPUs=${cpus} RealMemory=$((real_mem / NODES)) State=UNKNOWN"$'\n'
        done
    fi
    write_if_changed "${SLURM_CONF_FILE}" 0644 <<EOF
# Generated by slurm/local-cluster.sh; edits are overwritten by the next \`up\`.
ClusterName=${CLUSTER_NAME}
# "localhost" is accepted as the controller name whatever the hostname is (with N nodes, at its
# bridge address). Slurm 22.05 has no listen-address setting: slurmctld/slurmd/slurmdbd listen on
# all interfaces, mariadbd on 127.0.0.1.
SlurmctldHost=${controller}
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SLURMCTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
# Our own munged: both auth/munge and cred/munge read the socket from here. cred_expire also
# sets how long a requeued job waits before it may start again (BeginTime = now + cred_expire + 1;
# default 120 s, too slow for requeue tests); 10 s is ample for step launches on localhost.
AuthInfo=socket=${MUNGE_SOCKET},cred_expire=10
StateSaveLocation=${STATE_DIR}/slurmctld
SlurmdSpoolDir=${spool}
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=${slurmd_pid}
SlurmctldLogFile=$(log_file slurmctld)
SlurmdLogFile=${slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
# Keep the system's SPANK plugins (/etc/slurm/plugstack.conf) out of this cluster.
PlugStackConfig=${ETC_DIR}/plugstack.conf
MailProg=/bin/true
# No cgroups in containers/sandboxes, so no proctrack/cgroup nor task binding. proctrack/pgid
# rather than proctrack/linuxproc: linuxproc follows parent links, and a child whose parent dies
# first (scancel right after launch) is reparented to PID 1 and escapes (seen with linuxproc,
# never with pgid: docs/measurements.md). pgid loses only processes that leave the process group
# themselves (setsid), which torch/Lightning workers do not.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# A node that was DOWN (e.g. slurmd killed) comes back as soon as slurmd registers again.
ReturnToService=2
JobRequeue=1
MaxArraySize=${MAX_ARRAY_SIZE}
MaxJobCount=${MAX_JOB_COUNT}
# Fast turnaround for tests: completed jobs leave squeue after 30 s (sacct keeps them), the
# scheduler runs on every submit. KillWait: the time from the SIGTERM of a requeue, cancel or time
# limit to the SIGKILL; convbench checkpoints in it, so it must outlast the save of the tests' small nets.
KillWait=10
MinJobAge=30
InactiveLimit=0
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SlurmdTimeout=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=${SLURMDBD_PORT}
# Connections to slurmdbd take their munge socket from here, not from AuthInfo (default would be
# /run/munge/munge.socket.2).
AccountingStoragePass=${MUNGE_SOCKET}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
${nodes}
PartitionName=debug Nodes=$(node_names | paste -sd,) Default=YES MaxTime=INFINITE State=UP
EOF

    if ((NODES > 1)); then
        # Every node's /etc/hosts: all nodes, both ways (gloo binds to the address of the hostname,
        # and reverse lookups of ::ffff: peers must find a name too).
        {
            echo "127.0.0.1 localhost"
            echo "${CONTROLLER_ADDR} controller"
            for n in $(node_names); do echo "$(addr_of "$n") $n"; done
            for n in $(node_names); do echo "::ffff:$(addr_of "$n") $n"; done
        } | write_if_changed "${HOSTS_FILE}" 0644
    fi

    write_if_changed "${ETC_DIR}/plugstack.conf" 0644 </dev/null

    # slurmdbd finds slurmdbd.conf next to $SLURM_CONF and insists on mode 0600 (it holds the password).
    write_if_changed "${ETC_DIR}/slurmdbd.conf" 0600 <<EOF
# Generated by slurm/local-cluster.sh.
AuthType=auth/munge
AuthInfo=socket=${MUNGE_SOCKET}
DbdHost=localhost
DbdPort=${SLURMDBD_PORT}
SlurmUser=root
PidFile=$(pid_file slurmdbd)
LogFile=$(log_file slurmdbd)
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=${DB_PORT}
StorageUser=slurm
StoragePass=${db_pass}
StorageLoc=slurm_acct_db
EOF
}

# spawn LOGFILE CMD...: start a daemon with stdio on its log and without fd 9 (our lock), so it
# holds neither the caller's pipes (a test's subprocess.run would hang) nor the state-dir lock.
spawn() {
    local logf="$1"
    shift
    "$@" </dev/null >>"$logf" 2>&1 9>&-
}

munge_works() { munge --socket="${MUNGE_SOCKET}" -n | unmunge --socket="${MUNGE_SOCKET}"; }

start_munged() {
    is_running munged && return 0
    local user=munge key="${MUNGE_DIR}/munge.key" logf
    logf="$(log_file munged)"
    mkdir -p "${MUNGE_DIR}"
    # Run as the unprivileged munge user when it exists and can reach the state dir;
    # otherwise as root, which munged only accepts with --force.
    if ! id munge >/dev/null 2>&1 || ! runuser -u munge -- test -x "${STATE_DIR}"; then
        user=root
    fi
    # A private key: this munged only serves this cluster, so /etc/munge/munge.key is not needed.
    [[ -s "$key" ]] || mungekey --create --keyfile="$key" >/dev/null
    touch "$logf"
    chown "${user}:" "${MUNGE_DIR}" "$key" "$logf"
    chmod 0755 "${MUNGE_DIR}"   # clients must reach the socket
    chmod 0600 "$key"
    rm -f "${MUNGE_SOCKET}" "${MUNGE_SOCKET}.lock" "$(pid_file munged)"
    local -a args=(munged --socket="${MUNGE_SOCKET}" --key-file="$key" --pid-file="$(pid_file munged)"
        --log-file="$logf" --seed-file="${MUNGE_DIR}/munged.seed")
    if [[ "$user" == munge ]]; then
        spawn "$logf" runuser -u munge -- "${args[@]}" || die "munged failed to start" "$logf"
    else
        spawn "$logf" "${args[@]}" --force || die "munged failed to start" "$logf"
    fi
    wait_until munged "munged (${MUNGE_SOCKET})" munge_works
}

db_ping() { mariadb-admin --no-defaults --socket="${DB_SOCKET}" -u root ping; }

start_mariadbd() {
    is_running mariadbd && return 0
    local logf
    logf="$(log_file mariadbd)"
    if [[ ! -d "${DB_DIR}/mysql" ]]; then
        mkdir -p "${DB_DIR}"
        mariadb-install-db --no-defaults --datadir="${DB_DIR}" --user=root \
            --auth-root-authentication-method=socket --skip-test-db >>"${LOG_DIR}/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed" "${LOG_DIR}/mariadb-install.log"
    fi
    # --no-defaults: ignore /etc/mysql; TCP only on 127.0.0.1 and a private socket; small buffers.
    # mariadbd does not daemonize itself: setsid --fork detaches it and returns at once.
    spawn "$logf" setsid --fork mariadbd --no-defaults --user=root --datadir="${DB_DIR}" --socket="${DB_SOCKET}" \
        --pid-file="$(pid_file mariadbd)" --bind-address=127.0.0.1 --port="${DB_PORT}" \
        --skip-name-resolve --log-error="$logf" --innodb-buffer-pool-size=64M \
        --innodb-flush-log-at-trx-commit=2 --innodb-log-file-size=16M
    wait_until mariadbd "mariadbd (${DB_SOCKET})" db_ping
    # slurmdbd connects over TCP; root is socket-auth only, so give it its own user.
    local pass
    pass="$(cat "${ETC_DIR}/db.pass")"
    mariadb --no-defaults --socket="${DB_SOCKET}" -u root <<EOF || die "creating the slurm DB user failed" "$logf"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '${pass}';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '${pass}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

cluster_registered() { sacctmgr -n -P list cluster format=cluster | grep -qx "${CLUSTER_NAME}"; }
dbd_answers() { sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
    if ! is_running slurmdbd; then
        spawn "$(log_file slurmdbd)" slurmdbd || die "slurmdbd failed to start" "$(log_file slurmdbd)"
        wait_until slurmdbd "slurmdbd (port ${SLURMDBD_PORT})" dbd_answers
    fi
    # slurmctld only sends accounting for clusters that slurmdbd knows.
    cluster_registered || sacctmgr -i add cluster "${CLUSTER_NAME}" >/dev/null ||
        die "sacctmgr add cluster ${CLUSTER_NAME} failed" "$(log_file slurmdbd)"
}

ctld_up() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
    is_running slurmctld && return 0
    # No -c: keep job state (and the job ID counter, so IDs never collide with sacct history).
    spawn "$(log_file slurmctld)" slurmctld -f "${SLURM_CONF_FILE}" ||
        die "slurmctld failed to start" "$(log_file slurmctld)"
    wait_until slurmctld "slurmctld (port ${SLURMCTLD_PORT})" ctld_up
}

node_state() { sinfo -h -N -n "$1" -o %T 2>/dev/null | head -n 1; }

node_usable() { [[ "$(node_state "$1")" =~ ^(idle|mixed|allocated|completing)$ ]]; }

# ensure_network: the bridge (holding the controller's address) and, per node, a network namespace
# with a veth into the bridge. Each piece is made only if missing, so `up` after a crash reuses
# what survived (the names derive from the state dir: whatever carries them is this cluster's).
# All of them are recorded in NET_FILE first, so `down` removes them even if `up` fails halfway.
ensure_network() {
    local n ns veth
    if ip route show "${SUBNET}.0/24" | grep -q . && ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
        die "${SUBNET}.0/24 is already routed here ($(ip route show "${SUBNET}.0/24")): set CONVBENCH_CLUSTER_SUBNET to a free 10.x.y"
    fi
    {
        echo "link ${BRIDGE}"
        for n in $(node_names); do printf 'netns %s\nlink %s\n' "$(netns_of "$n")" "$(veth_of "$n")"; done
    } >"${NET_FILE}"
    ip link show "${BRIDGE}" >/dev/null 2>&1 || ip link add "${BRIDGE}" type bridge
    ip addr show dev "${BRIDGE}" | grep -q "inet ${CONTROLLER_ADDR}/24" || ip addr add "${CONTROLLER_ADDR}/24" dev "${BRIDGE}"
    ip link set "${BRIDGE}" up
    for n in $(node_names); do
        ns="$(netns_of "$n")" veth="$(veth_of "$n")"
        [[ -e "/run/netns/${ns}" ]] || ip netns add "${ns}"
        if ! ip link show "${veth}" >/dev/null 2>&1; then
            ip -n "${ns}" link del eth0 2>/dev/null || true  # a peer whose bridge side was lost
            ip link add "${veth}" type veth peer name eth0 netns "${ns}"
        fi
        ip link set "${veth}" master "${BRIDGE}" up
        ip -n "${ns}" addr show dev eth0 | grep -q "inet $(addr_of "$n")/24" || ip -n "${ns}" addr add "$(addr_of "$n")/24" dev eth0
        ip -n "${ns}" link set eth0 up
        ip -n "${ns}" link set lo up
    done
}

# remove_network: exactly the namespaces and links recorded in NET_FILE (a veth goes with its peer).
remove_network() {
    [[ -f "${NET_FILE}" ]] || return 0
    local kind name
    while read -r kind name; do
        case "$kind" in
            link) ! ip link show "$name" >/dev/null 2>&1 || ip link del "$name" ;;
            netns) [[ ! -e "/run/netns/$name" ]] || ip netns del "$name" ;;
        esac
    done < <(tac "${NET_FILE}")
    rm -f "${NET_FILE}"
    log "local-cluster: removed the network (${TAG}: ${BRIDGE}, ${SUBNET}.0/24)"
}

# start_node_slurmd NODE: slurmd for NODE, in NODE's network namespace (nsenter, not `ip netns
# exec`, which remounts /sys and hides the cgroup tree slurmd checks), with its own hostname and
# hosts file (new UTS and mount namespaces).
start_node_slurmd() {
    local n="$1"
    if ((NODES == 1)); then
        # The hostname is not `localhost`: -N names the node this slurmd serves.
        spawn "$(log_file slurmd)" slurmd -N localhost -f "${SLURM_CONF_FILE}"
    else
        mkdir -p "${STATE_DIR}/slurmd/$n"
        spawn "$(log_file "slurmd-$n")" nsenter --net="/run/netns/$(netns_of "$n")" \
            unshare --uts --mount --propagation private \
            sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmd -N "$1" -f "$3"' \
            sh "$n" "${HOSTS_FILE}" "${SLURM_CONF_FILE}"
    fi
}

start_slurmd() {
    local n d
    for n in $(node_names); do
        d="$( ((NODES == 1)) && echo slurmd || echo "slurmd-$n")"
        if ! is_running "$d"; then
            start_node_slurmd "$n" || die "$d failed to start" "$(log_file "$d")"
        fi
    done
    for n in $(node_names); do
        d="$( ((NODES == 1)) && echo slurmd || echo "slurmd-$n")"
        local start=$SECONDS state resumed=0
        until node_usable "$n"; do
            state="$(node_state "$n")"
            # ReturnToService=2 revives DOWN nodes, not DRAINED ones (drain survives restarts in the
            # saved state, e.g. after a "Kill task failed"). This is a throwaway cluster: resume once.
            if [[ "$state" == drain* && $resumed -eq 0 ]]; then
                log "local-cluster: node $n was ${state} ($(sinfo -h -R -n "$n" -o %E)); resuming it"
                scontrol update nodename="$n" state=resume || true
                resumed=1
            fi
            if ((SECONDS - start >= TIMEOUT)); then
                die "node $n is '${state:-unknown}' after ${TIMEOUT}s, not idle ($(sinfo -h -R -o %E))" "$(log_file "$d")"
            fi
            if ((SECONDS - start >= 3)) && ! is_running "$d"; then
                die "$d exited during startup" "$(log_file "$d")"
            fi
            sleep 0.2
        done
    done
}

print_env() { echo "export SLURM_CONF=${SLURM_CONF_FILE}"; }

lock_state_dir() {
    # Two `up`s at once (e.g. parallel test sessions) must not both start daemons.
    exec 9>"${STATE_DIR}/.lock"
    flock -w 120 9 || die "could not lock ${STATE_DIR}/.lock"
}

any_running() {
    local d
    for d in $(daemons); do is_running "$d" && return 0; done
    return 1
}

cmd_up() {
    local want=1
    while (($# > 0)); do
        case "$1" in
            --nodes)
                [[ "${2:-}" =~ ^[1-9][0-9]?$ ]] || die "--nodes ${2:-}: expected a node count from 1 to 99"
                want="$2"
                shift 2
                ;;
            *) die "up: unknown option $1 (accepted: --nodes N)" ;;
        esac
    done
    require_root
    mkdir -p "${STATE_DIR}" "${ETC_DIR}" "${RUN_DIR}" "${LOG_DIR}" "${STATE_DIR}/slurmctld" "${STATE_DIR}/slurmd"
    chmod 0755 "${STATE_DIR}"
    lock_state_dir
    if ((want != NODES)) && any_running; then
        die "${STATE_DIR} runs a ${NODES}-node cluster: \`down\` it before \`up --nodes ${want}\`"
    fi
    NODES="${want}"
    local d all=1
    for d in $(daemons); do is_running "$d" || all=0; done
    if ((all)); then
        log "local-cluster: already running (${STATE_DIR})"
        print_env
        return 0
    fi
    local t0=$SECONDS
    echo "${NODES}" >"${NODES_FILE}"
    if ((NODES > 1)); then ensure_network; else remove_network; fi  # (the leftovers of an N-node run)
    generate_configs
    start_munged
    start_mariadbd
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_until slurmdbd "sacct" sacct -n -X -S now-1minutes
    log "local-cluster: up with ${NODES} node(s) in $((SECONDS - t0))s (state ${STATE_DIR}, logs ${LOG_DIR})"
    print_env
}

# descendants PID: all PIDs below PID in the process tree, deepest last.
descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        echo "$child"
        descendants "$child"
    done
}

# Job steps of *this* cluster: slurmstepd inherits slurmd's environment, which has our SLURM_CONF.
our_stepds() {
    local pid
    for pid in $(pgrep -x slurmstepd || true); do
        if tr '\0' '\n' 2>/dev/null <"/proc/${pid}/environ" | grep -qx "SLURM_CONF=${SLURM_CONF_FILE}"; then
            echo "$pid"
        fi
    done
}

# stop_pids GRACE PID...: TERM, wait up to GRACE seconds, then KILL what is left.
stop_pids() {
    local grace="$1" pid deadline
    shift
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    for pid in "$@"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if alive "$pid"; then
            log "local-cluster: pid ${pid} ignored SIGTERM for ${grace}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # A process in uninterruptible sleep may still need a moment after SIGKILL.
    for pid in "$@"; do
        deadline=$((SECONDS + 5))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    done
}

stop_daemon() {
    local name="$1" grace="$2" pid
    if pid="$(read_pid "$name")"; then
        stop_pids "$grace" "$pid"
        log "local-cluster: stopped ${name} (pid ${pid})"
    fi
    rm -f "$(pid_file "$name")"
}

cmd_down() {
    require_root
    if [[ ! -d "${STATE_DIR}" ]]; then
        log "local-cluster: nothing to stop (${STATE_DIR} does not exist)"
        return 0
    fi
    lock_state_dir
    local d nodes_up=1
    for d in $(daemons); do [[ "$d" != slurmd* ]] || is_running "$d" || nodes_up=0; done
    # Cancel jobs first so slurmstepd kills their processes; stopping slurmd alone would orphan them.
    if is_running slurmctld && ((nodes_up)); then
        local jobs
        jobs="$(squeue -h -o %A 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086  # one word per job id
            scancel $jobs 2>/dev/null || true
            # Until the steps are gone and slurmctld has seen every job end: a job still COMPLETING
            # when slurmctld stops is saved as such and holds its node's CPUs after the next `up`.
            local deadline=$((SECONDS + 20))
            while [[ -n "$(our_stepds)" || -n "$(squeue -h -o %A 2>/dev/null)" ]] && ((SECONDS < deadline)); do sleep 0.2; done
        fi
    fi
    for d in $(daemons); do [[ "$d" != slurmd* ]] || stop_daemon "$d" 10; done
    stop_daemon slurmctld 10
    # Whatever job steps survived: kill them together with their process trees.
    local pid stray=()
    for pid in $(our_stepds); do
        mapfile -t -O "${#stray[@]}" stray < <(echo "$pid"; descendants "$pid")
    done
    if ((${#stray[@]} > 0)); then
        log "local-cluster: killing leftover job processes: ${stray[*]}"
        stop_pids 3 "${stray[@]}"
    fi
    stop_daemon slurmdbd 10
    stop_daemon mariadbd 30
    stop_daemon munged 10
    remove_network
    log "local-cluster: down"
}

cmd_status() {
    local d pid rc=0
    for d in $(daemons); do
        if pid="$(read_pid "$d")"; then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"
            rc=3
        fi
    done
    echo "state dir: ${STATE_DIR}   logs: ${LOG_DIR}"
    if ((NODES > 1)); then
        echo "nodes: $(node_names | while read -r n; do printf '%s=%s (netns %s) ' "$n" "$(addr_of "$n")" "$(netns_of "$n")"; done)controller ${CONTROLLER_ADDR} on ${BRIDGE}"
    fi
    print_env
    return "$rc"
}

main() {
    local action="${1:-}"
    (($# == 0)) || shift
    case "$action" in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) print_env ;;
        *)
            echo "usage: $0 up [--nodes N]|down|status|env" >&2
            exit 2
            ;;
    esac
}

main "$@"
