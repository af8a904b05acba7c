#!/usr/bin/env bash
# Build one of koe's GPU environments from its lock: cluster/install_env.sh ENV [VENV]
#
#   ENV   a lock in cluster/envs/: cosyvoice, cosyvoice-vllm, vllm, pyannote, align, triton-client
#         (or the path of a lock file of that form)
#   VENV  the virtual environment to build (default /opt/koe/envs/ENV); a runtime env's py_executable
#         points at VENV/bin/python (cluster/runtime_envs/*.yaml)
#
# Settings (environment variables):
#   PYTHON   the Python that runs Ray on this node (default python3): the environment is made from it, so the
#            actors get the cluster's Python, and its Ray version must be the lock's
#   KOE_SRC  the koe checkout to install (default: this repository)
#
# The lock is installed exactly as it is, with no dependency resolution on the node (pip --no-deps): the set
# was resolved once, by `python cluster/check_envs.py --lock ENV`, which also checks it. Markers in the lock:
#   "# sdist"       no wheel: built here, after the wheels, with the lock's own setuptools/wheel/Cython/numpy
#   "# index: URL"  taken from URL instead of the default index
# koe goes in with --no-deps as well: what its actor-side modules import is in the lock (envs/koe-actor.in),
# and its driver-side dependencies (torch<2.14, silero-vad, ...) never move the environment's own torch.
# Re-running is safe; a VENV built from another lock (or another version of this one) is built anew.
set -euo pipefail

ENVS=$(cd "$(dirname "$0")" && pwd)/envs
NAME=${1:?usage: install_env.sh ENV [VENV]   (ENV: one of $(cd "$ENVS" && ls ./*.txt | sed 's|./||; s|\.txt$||' | tr '\n' ' '))}
case "$NAME" in
  */* | *.txt) LOCK=$(cd "$(dirname "$NAME")" && pwd)/$(basename "$NAME"); NAME=$(basename "$NAME" .txt) ;;
  *) LOCK=$ENVS/$NAME.txt ;;
esac
VENV=${2:-/opt/koe/envs/$NAME}
PYTHON=${PYTHON:-python3}
KOE_SRC=${KOE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
[ -f "$LOCK" ] || { echo "no lock $LOCK" >&2; exit 2; }

# The cluster's Python and Ray must be the environment's: Ray starts the actors with VENV's Python.
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$python_version" = 3.11 ] || { echo "$PYTHON is Python $python_version; the locks are for 3.11" >&2; exit 1; }
lock_ray=$(sed -n 's/^ray==\([^ ]*\).*/\1/p' "$LOCK")
node_ray=$("$PYTHON" -c 'import ray; print(ray.__version__)' 2>/dev/null || echo "none")
if [ -n "$lock_ray" ] && [ "$node_ray" != "$lock_ray" ]; then
  echo "$PYTHON has Ray $node_ray, $NAME.txt pins ray==$lock_ray: the actors' Ray must be the cluster's" >&2
  exit 1
fi

# A VENV made from another lock keeps packages this one lacks: start it again.
if [ -f "$VENV/koe-env.txt" ] && ! cmp -s "$LOCK" "$VENV/koe-env.txt"; then
  echo "$VENV was built from another lock: building it anew"
  rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade "pip>=23.1"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The lock's lines: "name==version" with an optional "  # sdist", "  # index: URL" or both.
grep -E '^[A-Za-z0-9]' "$LOCK" > "$work/all.txt"
grep -v '#' "$work/all.txt" > "$work/wheels.txt" || true
grep '# sdist' "$work/all.txt" | grep -v 'index:' | sed 's/ *#.*//' > "$work/sdists.txt" || true
grep 'index:' "$work/all.txt" > "$work/elsewhere.txt" || true

# 1. Every wheel of the lock, as resolved (wheels only, so the node gets the artefacts the check resolved).
$PIP install --no-deps --only-binary=:all: -r "$work/wheels.txt"
# 2. Pins from their own index (the onnxruntime CUDA 12 feed, NVIDIA's index for TensorRT's libraries), and
#    from that index only: PyPI also has onnxruntime-gpu 1.18.0, but the CUDA 11.8 build, so no extra index or
#    find-links of the machine's pip configuration may offer another file of the same version.
while read -r pin _ rest; do
  url=$(sed -n 's/.*index: *\([^ ]*\).*/\1/p' <<<"$rest")
  env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    $PIP install --no-deps --only-binary=:all: --index-url "$url" "$pin"
done < "$work/elsewhere.txt"
# 3. The sdists, built with the build tools the lock just installed (setuptools < 81 for pkg_resources).
if [ -s "$work/sdists.txt" ]; then
  $PIP install --no-deps --no-build-isolation -r "$work/sdists.txt"
fi
# 4. koe itself, without its dependencies.
$PIP install --no-deps "$KOE_SRC"

# pip check, but for koe's own requirements, which --no-deps leaves unmet on purpose.
if ! $PIP check > "$work/check.txt" 2>&1; then
  if grep -v -E '^koe [^ ]+ (requires|has requirement) ' "$work/check.txt" | grep -q .; then
    grep -v -E '^koe [^ ]+ (requires|has requirement) ' "$work/check.txt" >&2
    echo "pip check: $VENV does not hold together (above)" >&2
    exit 1
  fi
fi

# The modules the actors import in this environment, imported once here.
case "$NAME" in
  cosyvoice | cosyvoice-vllm) modules="pipeline.executors pipeline.tts.cosyvoice torch torchaudio onnxruntime whisper" ;;
  vllm) modules="pipeline.executors pipeline.captioners.vllm vllm transformers torch" ;;
  pyannote) modules="pipeline.executors pipeline.diarize pyannote.audio torch torchaudio" ;;
  align) modules="pipeline.executors pipeline.align transformers torch torchaudio.functional" ;;
  *) modules="pipeline.executors" ;;
esac
if [ "$NAME" = triton-client ]; then modules="$modules tritonclient.http tritonclient.grpc"; fi
"$VENV/bin/python" - $modules <<'PY'
import importlib, sys

for name in sys.argv[1:]:
    importlib.import_module(name)
print("imports:", " ".join(sys.argv[1:]))
PY
cp "$LOCK" "$VENV/koe-env.txt"
echo "done: $VENV from $LOCK"
