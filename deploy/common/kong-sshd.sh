# Shared start-up helpers for every kong test image; sourced by the entrypoints.
# Configured from the environment at container start (never at build time), so
# one image can run many containers side by side under host networking:
#   KONG_SSH_PORT          port of sshd on 127.0.0.1 (required)
#   KONG_AUTHORIZED_KEY    public key allowed to log in as the SSH user (required)
#   KONG_SSH_USER          login user (default: kong)
#   KONG_SSH_MAX_SESSIONS  sshd MaxSessions (default: 10, OpenSSH's default)
#   KONG_SSH_MAX_STARTUPS  sshd MaxStartups (default: 100:30:200)

set -eu

KONG_SSH_USER="${KONG_SSH_USER:-kong}"
KONG_SSH_MAX_SESSIONS="${KONG_SSH_MAX_SESSIONS:-10}"
KONG_SSH_MAX_STARTUPS="${KONG_SSH_MAX_STARTUPS:-100:30:200}"

kong_log() {
    echo "kong-entrypoint: $*"
}

kong_fail() {
    echo "kong-entrypoint: FAILED: $*"
    exit 1
}

# The SSH user: key-only login (the password field '*' is "no password", not
# "locked": a locked account is refused by sshd without PAM).
kong_setup_user() {
    : "${KONG_SSH_PORT:?KONG_SSH_PORT is required}"
    : "${KONG_AUTHORIZED_KEY:?KONG_AUTHORIZED_KEY is required}"
    if ! id "$KONG_SSH_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash --uid 2000 "$KONG_SSH_USER"
    fi
    usermod -p '*' "$KONG_SSH_USER"
    mkdir -p /etc/ssh/authorized_keys
    chmod 755 /etc/ssh/authorized_keys
    printf '%s\n' "$KONG_AUTHORIZED_KEY" > "/etc/ssh/authorized_keys/$KONG_SSH_USER"
    chmod 644 "/etc/ssh/authorized_keys/$KONG_SSH_USER"
}

# A host key of its own for every container (the image carries none).
kong_setup_hostkey() {
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    echo "KONG-HOSTKEY $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
}

# sshd in the background, logging VERBOSE to stderr (the container log) so that
# connections can be counted; its PID goes to /run/kong-sshd.pid.
kong_start_sshd() {
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    /usr/sbin/sshd -D -e \
        -p "$KONG_SSH_PORT" \
        -o ListenAddress=127.0.0.1 \
        -o HostKey=/etc/ssh/ssh_host_ed25519_key \
        -o PasswordAuthentication=no \
        -o KbdInteractiveAuthentication=no \
        -o PubkeyAuthentication=yes \
        -o UsePAM=no \
        -o PermitRootLogin=no \
        -o AuthorizedKeysFile=/etc/ssh/authorized_keys/%u \
        -o MaxSessions="$KONG_SSH_MAX_SESSIONS" \
        -o MaxStartups="$KONG_SSH_MAX_STARTUPS" \
        -o AllowTcpForwarding=yes \
        -o PermitOpen=any \
        -o LogLevel=VERBOSE \
        -o PidFile=/run/kong-sshd.pid &
    echo $! > /run/kong-sshd.pid
}

# Keep PID 1 alive while sshd runs; exit at once on docker stop.
kong_wait_forever() {
    trap 'kong_log "stopping"; exit 0' TERM INT
    while kill -0 "$(cat /run/kong-sshd.pid)" 2>/dev/null; do
        sleep 1 &
        wait $! || true
    done
    kong_fail "sshd exited"
}
