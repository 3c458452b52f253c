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
