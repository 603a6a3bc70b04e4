#!/usr/bin/env bash
# ansible-test sanity over a copy of the collection laid out as
# ansible_collections/bosun/platform (what ansible-test requires), with no ignore entries.
# The copy holds the files git knows (tracked, or new and not ignored), so caches and
# earlier test output never reach it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/bosun-sanity.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DEST="$WORK/ansible_collections/bosun/platform"
mkdir -p "$DEST"
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | rsync -a --from0 --files-from=- ./ "$DEST/"
for f in tests/sanity/ignore-*.txt; do
  [ -e "$f" ] || continue
  if [ -s "$f" ]; then echo "sanity: $f must stay empty" >&2; exit 1; fi
done
cd "$DEST"
# The pip bootstrap stand-in installed by scripts/setup.sh lets --venv work offline.
ansible-test sanity --venv --requirements --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no "$@"
