# Sourced by scripts/test and scripts/sharewise: make sure .venv holds the project and its dependencies.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHAREWISE_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
stamp="$VENV/.sharewise-installed${SHAREWISE_EXTRAS:+-$SHAREWISE_EXTRAS}"
extras="${SHAREWISE_EXTRAS:-}"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)$extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing sharewise-engine${extras:+[$extras]} into $VENV (first use only)" >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}" >&2
  echo "$want" > "$stamp"
fi
