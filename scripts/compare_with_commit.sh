#!/usr/bin/env bash
# Run the same notebooks with an earlier commit's package and with this checkout's, then compare the metrics.
# The notebooks are the earlier commit's in both runs, so a difference comes from the package alone: this is how a
# refactor shows that it changed no number. Usage (from the checkout root, after `make setup`):
#   scripts/compare_with_commit.sh ae80ede 00 01        # prints `facekit compare` of before vs after
# The real datasets must be found by both (set FACEKIT_DATA to the folder holding lfw/, att_faces/, dlib_faces/).
set -euo pipefail
commit=${1:?usage: scripts/compare_with_commit.sh COMMIT NOTEBOOK...}
shift
[ "$#" -gt 0 ] || { echo "name at least one notebook (e.g. 00 01)" >&2; exit 2; }
root=$(pwd)
py="$root/.venv/bin/python"
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/old" "$commit" >/dev/null
export FACEKIT_DATA="${FACEKIT_DATA:-$(cd "$root/.." && pwd)/shared/datasets}"
(cd "$work/old" && PYTHONPATH="$work/old" FACEKIT_CACHE="$work/cache-before" "$py" -m facekit report "$@" \
    --profile smoke --no-html -q --notebooks-dir "$work/old/notebooks" --reports-dir "$work/runs" --run before)
FACEKIT_CACHE="$work/cache-after" "$py" -m facekit report "$@" --profile smoke --no-html -q \
    --notebooks-dir "$work/old/notebooks" --reports-dir "$work/runs" --run after
"$py" -m facekit compare "$work/runs/before" "$work/runs/after" || true
