# Sourced by scripts/test and scripts/sharewise: make sure .venv holds the project and its dependencies.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHAREWISE_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip > /dev/null 2>&1 || true
fi
stamp="$VENV/.sharewise-installed${SHAREWISE_EXTRAS:+-$SHAREWISE_EXTRAS}"
extras="${SHAREWISE_EXTRAS:-}"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)$extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing sharewise-engine${extras:+[$extras]} into $VENV (first use only)" >&2
  log="$VENV/pip-install.log"
  if ! "$VENV/bin/python" -m pip install -e "$ROOT${extras:+[$extras]}" > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "pip install failed; full log in $log" >&2
    exit 2
  fi
  echo "$want" > "$stamp"
fi
# The page's chart library (lightweight-charts, pinned in sinks/feed/web/package-lock.json) comes from npm,
# never from a CDN: installed when node_modules is missing or the lock changed since the last install.
web="$ROOT/sinks/feed/web"
web_stamp="$web/node_modules/.sharewise-installed"
web_want="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$web_stamp" ] || [ "$(cat "$web_stamp")" != "$web_want" ]; then
  if ! command -v npm > /dev/null 2>&1; then
    echo "npm not found: the feed page will show no chart until you install Node.js (20+) and run" \
         "npm ci --prefix sinks/feed/web; everything else works without it" >&2
  else
    echo "installing the feed page's chart library into sinks/feed/web/node_modules (first use only)" >&2
    web_log="$VENV/npm-install.log"
    if ! npm ci --prefix "$web" --no-audit --no-fund > "$web_log" 2>&1; then
      tail -n 20 "$web_log" >&2
      echo "npm ci --prefix sinks/feed/web failed; full log in $web_log" >&2
      exit 2
    fi
    echo "$web_want" > "$web_stamp"
  fi
fi
