# shellcheck shell=bash
# Small helpers shared by the ops scripts. Source it; it defines functions only.
#
# IMAGECACHE_ROOT is the repository root, found from this file's own location so
# the scripts work from any current directory and from a fresh clone.

if [[ -z "${IMAGECACHE_ROOT:-}" ]]; then
    IMAGECACHE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fi

# The name shown in messages: the script that was run, e.g. "ops/services/mongo".
_ops_name() {
    local script="${0#"$IMAGECACHE_ROOT"/}"
    printf '%s' "${OPS_NAME:-$script}"
}

# Print a message to stderr, prefixed with the script name.
info() { printf '%s: %s\n' "$(_ops_name)" "$*" >&2; }

# Print an error (what went wrong, then what to do) and exit 1.
die() {
    printf '%s: error: %s\n' "$(_ops_name)" "$1" >&2
    shift
    local line
    for line in "$@"; do printf '  %s\n' "$line" >&2; done
    exit 1
}

# Seconds since the epoch with microseconds.
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }

# Seconds elapsed since START (a value from `now`), with one decimal.
elapsed_since() {
    local start="$1" end
    end="$(now)"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}

# Print COUNT distinct free TCP ports on 127.0.0.1, space separated. All sockets are
# held open together so the ports differ; a small race remains until the service binds.
free_ports() {
    local count="$1" py
    py="$(pick_python)"
    "$py" - "$count" <<'PY'
import socket
import sys

socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# Succeed if nothing listens on 127.0.0.1:PORT (so a service can bind it).
port_is_free() {
    local port="$1" py
    py="$(pick_python)"
    "$py" - "$port" <<'PY'
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# A python for small helper snippets: the project venv if present, else python3.
pick_python() {
    if [[ -x "$IMAGECACHE_ROOT/.venv/bin/python" ]]; then
        printf '%s' "$IMAGECACHE_ROOT/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        command -v python3
    else
        die "python3 was not found on PATH." "Install it, e.g. apt-get install -y python3 python3-venv"
    fi
}

# Print the value of KEY from a KEY=VALUE file (without sourcing it), empty if absent.
env_get() {
    local file="$1" key="$2"
    [[ -f "$file" ]] || return 0
    sed -n "s/^${key}=//p" "$file" | tail -n 1
}

# Succeed if PID is a live (non-zombie) process.
pid_alive() {
    local pid="$1" state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A zombie still answers kill -0; treat it as gone.
    state="$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# Wait until PID has exited, at most SECONDS; succeed if it did.
wait_pid_gone() {
    local pid="$1" seconds="$2" deadline
    deadline=$((SECONDS + seconds))
    while pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Print PIDs whose environment holds the exact entry NAME=VALUE (Linux /proc only).
pids_with_env() {
    local entry="$1" dir pid
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        [[ "$pid" == "$$" ]] && continue
        if grep -qzxF -- "$entry" "$dir/environ" 2>/dev/null; then
            printf '%s\n' "$pid"
        fi
    done
}

# Print the last LINES lines of FILE to stderr, framed, if the file exists.
show_log_tail() {
    local file="$1" lines="${2:-40}"
    if [[ -s "$file" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf '(no log at %s)\n' "$file" >&2
    fi
}
