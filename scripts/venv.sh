#!/usr/bin/env bash
# Creates the virtualenv and installs into it for `make run` / `make test`: one short line per step on the
# terminal, pip's full output in VENV/install.log (its last lines are shown when a step fails).
# The venv's own pip (23+ from ensurepip) installs pyproject projects editable; upgrading it cost 10 s a run.
# Usage: scripts/venv.sh VENV PIP-INSTALL-ARGS...
set -euo pipefail
venv=$1
shift
log=$venv/install.log
started=$SECONDS

fail() {
  echo "telltale: $1 failed; the last lines of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
}

mkdir -p "$venv"
: >"$log"
if [ ! -x "$venv/bin/python" ]; then
  echo "telltale: creating $venv"
  "${PYTHON:-python3}" -m venv "$venv" >>"$log" 2>&1 || fail "creating $venv"
fi
echo "telltale: installing dependencies (log: $log)"
"$venv/bin/python" -m pip install "$@" >>"$log" 2>&1 || fail "pip install $*"
echo "telltale: installed in $((SECONDS - started)) s"
