# shellcheck shell=bash
# Headless Chromium for the browser tests (tests/web/test_browser.py). Source it; it defines
# functions only. The browser is Debian's `chromium` package, driven by Playwright's Python
# package with its executable path set: no browser is ever downloaded by Playwright.

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

# Install Debian's chromium when it is missing (needs root and apt-get); say what to do if not.
ensure_chromium() {
    if [[ -x "$CHROMIUM_BIN" ]]; then
        return 0
    fi
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        printf '%s\n' "ensure_chromium: $CHROMIUM_BIN is missing and cannot be installed here." \
            "  Install it once as root: apt-get update && apt-get install -y chromium" >&2
        return 1
    fi
    printf 'ensure_chromium: installing chromium with apt-get\n' >&2
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            chromium fonts-dejavu-core; } >&2 || {
        printf '%s\n' "ensure_chromium: apt-get could not install chromium (see above)." \
            "  If another apt-get holds the lock, wait for it and run again." >&2
        return 1
    }
    [[ -x "$CHROMIUM_BIN" ]]
}
