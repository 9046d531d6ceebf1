# Shared by scripts/run and scripts/test: make the virtual environment and install the project.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"

ensure_venv() {
  local extras="$1"
  if [ ! -x "$PY" ]; then
    echo "==> creating .venv"
    python3 -m venv .venv
  fi
  local stamp=".venv/.installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing dependencies ($extras)"
    "$PY" -m pip install -q --upgrade pip
    if [ "$extras" = "dev" ]; then
      "$PY" -m pip install -q -e ".[dev]"
    else
      "$PY" -m pip install -q -e .
    fi
    touch "$stamp"
  fi
}
