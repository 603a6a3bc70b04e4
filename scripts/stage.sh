#!/usr/bin/env bash
# stage.sh NAME COMMAND...: run one stage of the test suite, print how long it took and
# record it in .cache/stage-times (read by .ci/run for its summary).
set -u
name=$1; shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$root/.cache"
start=$(date +%s)
printf '\n===== stage %s: start %s =====\n' "$name" "$(date -u +%H:%M:%S)"
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
status=$([ "$rc" -eq 0 ] && echo ok || echo "FAILED rc=$rc")
printf '===== stage %s: %s in %ss =====\n' "$name" "$status" "$secs"
printf '%-30s %6ss  %s\n' "$name" "$secs" "$status" >>"$root/.cache/stage-times"
exit "$rc"
