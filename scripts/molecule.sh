#!/usr/bin/env bash
# Run Molecule scenarios one after another, each with its full test sequence, and report
# the time each took. Stops at the first failure, after destroying that scenario's
# containers. (`make test` runs one scenario per call, several side by side: scripts/pool.py.)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
scenarios=("$@")
# Plain output when not on a terminal (CI logs).
if [ ! -t 1 ]; then export NO_COLOR=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0; fi
[ "${#scenarios[@]}" -gt 0 ] || { echo "molecule.sh: no scenario given" >&2; exit 2; }
passed=0
current=
# Stopped from outside (Ctrl-C, or scripts/pool.py interrupted): leave no containers behind.
trap '[ -n "$current" ] && molecule destroy -s "$current" >/dev/null 2>&1; exit 143' TERM INT
for s in "${scenarios[@]}"; do
  [ "$s" = shared ] && continue
  current=$s
  start=$(date +%s)
  echo "----- molecule scenario $s -----"
  if molecule test -s "$s"; then
    passed=$((passed + 1))
    echo "----- molecule scenario $s: passed in $(( $(date +%s) - start ))s -----"
  else
    rc=$?
    echo "----- molecule scenario $s: FAILED in $(( $(date +%s) - start ))s -----"
    molecule destroy -s "$s" >/dev/null 2>&1 || true
    echo "molecule: $passed passed, 1 failed"
    exit "$rc"
  fi
  current=
done
echo "molecule: $passed passed, 0 failed"
