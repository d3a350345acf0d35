# shellcheck shell=bash
# ensure_env: create or update the project virtualenv .venv from uv.lock.
#
# Usage (from any ops script):
#     source "$(dirname "$0")/../lib/env.sh"   # path relative to the script
#     ensure_env
#
# Needs nothing but python3 >= 3.11 (with the venv module) and access to PyPI.
# Fast when current: the sync is skipped while .venv/.synced-<hash> exists, where
# <hash> is the sha256 of uv.lock + pyproject.toml + the recipe below. Everything is
# compiled to bytecode ahead, so no process pays to compile at start.

# shellcheck source=ops/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

IMAGECACHE_UV_VERSION="0.13.9"
# The recipe is part of the stamp, so changing it here forces a new sync.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (Docker images, this CI) Python never
# caches what it compiles, and every process (each command, worker, test run) compiled some
# 470 modules again: 0.9 s of a 2.2 s `imagecache folders list`.
IMAGECACHE_SYNC_ARGS=(sync --frozen --inexact --extra embedded --compile-bytecode)
# What each kind of set-up installs on top: `run` (./ops/up, the service scripts) only what
# running imagecache needs; `test` (./ops/test) also the dev group: pytest, ruff, mypy,
# Playwright, the benchmark peers. A venv set up for `test` serves `run` as well.
IMAGECACHE_RUN_ARGS=(--no-dev)
IMAGECACHE_TEST_ARGS=()
# The project's own packages, compiled at every ensure_env (only what changed: ~50 ms).
IMAGECACHE_PACKAGES=(domain actors projections web ops)

# Print the path of a python >= 3.11: $PYTHON if set (only it), else the first on PATH.
_find_python() {
    local candidate candidates=(python3 python3.13 python3.12 python3.11)
    [[ -z "${PYTHON:-}" ]] || candidates=("$PYTHON")
    for candidate in "${candidates[@]}"; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Succeed if the venv's own python runs and is >= 3.11.
_venv_python_ok() {
    local venv="$1"
    [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" -I -S -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Print the stamp hash for the current uv.lock, pyproject.toml and recipe (the base one:
# the stamp file's name says which kind, run or test, was installed).
_env_stamp() {
    local root="$IMAGECACHE_ROOT"
    {
        cat "$root/uv.lock" "$root/pyproject.toml"
        printf 'recipe: uv==%s %s\n' "$IMAGECACHE_UV_VERSION" "${IMAGECACHE_SYNC_ARGS[*]}"
    } | if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d' ' -f1
    else
        python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
    fi
}

# Create .venv if needed and sync it with uv.lock (extra `embedded`; with `test`, the dev
# group too). Usage: ensure_env [run|test] (default run).
ensure_env() {
    _sync_env "${1:-run}"
    # A file that does not compile is left to the tests and linters to report.
    (cd "$IMAGECACHE_ROOT" && .venv/bin/python -m compileall -q "${IMAGECACHE_PACKAGES[@]}") \
        >/dev/null 2>&1 || true
}

# Succeed when .venv holds what `kind` needs: a test set-up covers a run.
_synced() {
    local venv="$1" stamp="$2" kind="$3"
    [[ -f "$venv/.synced-test-$stamp" || ($kind == run && -f "$venv/.synced-run-$stamp") ]] &&
        _venv_python_ok "$venv"
}

_sync_env() {
    local kind="$1"
    local root="$IMAGECACHE_ROOT"
    local venv="$root/.venv"
    local stamp py lock_fd started file
    local -a extra
    case "$kind" in
    run) extra=("${IMAGECACHE_RUN_ARGS[@]}") ;;
    test) extra=("${IMAGECACHE_TEST_ARGS[@]}") ;;
    *) die "ensure_env: unknown kind '$kind' (run or test)." ;;
    esac
    for file in uv.lock pyproject.toml; do
        [[ -f "$root/$file" ]] || die "$root/$file is missing." \
            "Run from a complete checkout of the imagecache repository."
    done
    stamp="$(_env_stamp)"
    if _synced "$venv" "$stamp" "$kind"; then
        return 0
    fi

    started="$(now)"
    mkdir -p "$venv" || die "cannot create $venv." "Check that $root is writable."
    # One setup at a time: two ops/test runs may start together. The lock is on the
    # folder itself because `venv --clear` empties it.
    if command -v flock >/dev/null 2>&1; then
        exec {lock_fd}<"$venv"
        flock "$lock_fd"
        if _synced "$venv" "$stamp" "$kind"; then
            exec {lock_fd}>&-
            return 0
        fi
    fi

    if ! _venv_python_ok "$venv"; then
        py="$(_find_python)" || die "Python 3.11 or newer was not found (tried ${PYTHON:-python3, python3.13, python3.12, python3.11})." \
            "Install it, e.g. on Debian 12: apt-get install -y python3 python3-venv" \
            "or point PYTHON at one: PYTHON=/usr/bin/python3.11 ./ops/test"
        info "creating .venv with $py ($("$py" -c 'import platform; print(platform.python_version())'))"
        # --clear replaces a venv whose interpreter is gone or too old.
        "$py" -m venv --clear "$venv" || die "'$py -m venv $venv' failed." \
            "On Debian/Ubuntu the venv module is a separate package: apt-get install -y python3-venv" \
            "Then remove the half-made folder (rm -rf $venv) and run again."
    fi

    if [[ "$("$venv/bin/uv" --version 2>/dev/null || true)" != "uv $IMAGECACHE_UV_VERSION"* ]]; then
        info "installing uv==$IMAGECACHE_UV_VERSION into .venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "uv==$IMAGECACHE_UV_VERSION" ||
            die "pip could not install uv==$IMAGECACHE_UV_VERSION into $venv." \
                "Check access to PyPI (pip config list; PIP_INDEX_URL) and run again."
    fi

    info "syncing .venv with uv.lock for $kind (uv ${IMAGECACHE_SYNC_ARGS[*]} ${extra[*]})"
    (
        cd "$root" &&
            UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never \
                "$venv/bin/uv" "${IMAGECACHE_SYNC_ARGS[@]}" "${extra[@]}"
    ) || die "'uv ${IMAGECACHE_SYNC_ARGS[*]} ${extra[*]}' failed (see the uv output above)." \
        "If uv.lock is out of date with pyproject.toml, run: .venv/bin/uv lock" \
        "If a download failed, check access to PyPI and run again."

    rm -f "$venv"/.synced-*
    : >"$venv/.synced-$kind-$stamp"
    info ".venv ready in $(elapsed_since "$started") s"
    if [[ -n "${lock_fd:-}" ]]; then exec {lock_fd}>&-; fi
    return 0
}
