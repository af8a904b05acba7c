#!/usr/bin/env bash
# Prepare one GPU node for koe's cosyvoice2/cosyvoice3 backends: the official CosyVoice checkout at a
# pinned commit (with its Matcha-TTS submodule), a Python environment with CosyVoice's pinned
# requirements + Ray + koe, and the model weights. Run it on every GPU node (or once onto storage
# the nodes share); re-running it is safe. cluster/runtime_envs/cosyvoice.yaml points the actors
# at the result. See cluster/cosyvoice/README.md.
#
# Settings (environment variables):
#   KOE_COSYVOICE_PREFIX  where everything goes                    (default /opt/koe/cosyvoice)
#   PYTHON                the Python that runs Ray on this node;   (default python3)
#                         the environment copies its version and its Ray version
#   KOE_SRC               the koe checkout to install              (default: this repository)
#   KOE_COSYVOICE_MODELS  Hub repos to download, each optionally @revision, space-separated
#                         (default "FunAudioLLM/CosyVoice2-0.5B FunAudioLLM/Fun-CosyVoice3-0.5B-2512")
#   KOE_COSYVOICE_HUB     huggingface or modelscope                (default huggingface)
#   KOE_COSYVOICE_VLLM    1: also install vLLM for load_vllm       (default 0)
set -euo pipefail

# The commit whose API pipeline/tts/cosyvoice.py was written against (2026-03-16); it pins Matcha-TTS dd9105b.
COSYVOICE_COMMIT=ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
COSYVOICE_REPO=https://github.com/FunAudioLLM/CosyVoice.git
# CUDA 12 builds of torch and onnxruntime-gpu: the indexes CosyVoice's requirements.txt names.
ORT_CUDA12_INDEX=https://aiinfra.pkgs.visualstudio.com/PublicPackages/_packaging/onnxruntime-cuda-12/pypi/simple/
# Training and web-demo requirements that inference never imports (deepspeed has no wheel and fails to build).
NOT_FOR_INFERENCE='^(deepspeed|gradio|fastapi|fastapi-cli|uvicorn|grpcio|grpcio-tools|tensorboard|pydantic)=='

PREFIX=${KOE_COSYVOICE_PREFIX:-/opt/koe/cosyvoice}
PYTHON=${PYTHON:-python3}
KOE_SRC=${KOE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
MODELS=${KOE_COSYVOICE_MODELS:-"FunAudioLLM/CosyVoice2-0.5B FunAudioLLM/Fun-CosyVoice3-0.5B-2512"}
HUB=${KOE_COSYVOICE_HUB:-huggingface}
CHECKOUT=$PREFIX/CosyVoice
VENV=$PREFIX/venv
PIP="$VENV/bin/python -m pip"

checkout() {
  if [ ! -d "$CHECKOUT/.git" ]; then
    git clone "$COSYVOICE_REPO" "$CHECKOUT"
  fi
  git -C "$CHECKOUT" fetch --quiet origin
  git -C "$CHECKOUT" checkout --quiet "$COSYVOICE_COMMIT"
  git -C "$CHECKOUT" submodule update --init --recursive
}

environment() {
  local ray_version
  ray_version=$("$PYTHON" -c 'import ray; print(ray.__version__)')
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  $PIP install --upgrade pip
  # openai-whisper 20231117 and pyworld 0.3.4 come only as sources: whisper's setup.py needs pkg_resources
  # (gone from current setuptools), pyworld needs numpy and Cython at build time.
  $PIP install "setuptools<81" wheel "cython<3.1" numpy==1.26.4
  $PIP install --no-build-isolation --no-deps openai-whisper==20231117 pyworld==0.3.4
  grep -v -E "$NOT_FOR_INFERENCE" "$CHECKOUT/requirements.txt" > "$PREFIX/requirements-inference.txt"
  # One resolution for all of it, so nothing later moves CosyVoice's pins.
  $PIP install -r "$PREFIX/requirements-inference.txt" "ray[default]==$ray_version" "$KOE_SRC"
  # koe's pyopenjtalk-plus[onnxruntime] brings the CPU onnxruntime, which shares its files with
  # onnxruntime-gpu: remove it and put the GPU build back, or CosyVoice's speech tokenizer runs on the CPU.
  $PIP uninstall -y onnxruntime
  $PIP install --force-reinstall --no-deps --extra-index-url "$ORT_CUDA12_INDEX" onnxruntime-gpu==1.18.0
  if [ "${KOE_COSYVOICE_VLLM:-0}" = 1 ]; then
    # Upstream's documented vLLM combination (README "vLLM Usage"); vLLM brings its own torch 2.7.
    $PIP install vllm==0.9.0 transformers==4.51.3 numpy==1.26.4 "ray[default]==$ray_version"
  fi
}

check() {
  PYTHONPATH="$CHECKOUT:$CHECKOUT/third_party/Matcha-TTS" "$VENV/bin/python" -c '
import cosyvoice.cli.cosyvoice as cli, onnxruntime, ray, torch, pipeline.tts.cosyvoice
assert hasattr(cli, "CosyVoice2") and hasattr(cli, "CosyVoice3")
print("CosyVoice imports; torch", torch.__version__, "CUDA", torch.cuda.is_available(),
      "| onnxruntime", onnxruntime.get_available_providers(), "| ray", ray.__version__)'
  $PIP check || echo "pip check found the conflicts above: review them before a run"
}

download() {
  local spec repo revision
  for spec in $MODELS; do
    repo=${spec%@*}
    revision=""
    if [ "$spec" != "$repo" ]; then revision=${spec#*@}; fi
    "$VENV/bin/python" - "$HUB" "$repo" "$revision" "$PREFIX/models/${repo##*/}" <<'PY'
import sys

hub, repo, revision, target = sys.argv[1:]
if hub == "modelscope":
    from modelscope import snapshot_download
else:
    from huggingface_hub import snapshot_download
snapshot_download(repo, revision=revision or None, local_dir=target)
print(f"{repo}{'@' + revision if revision else ''} -> {target}")
PY
  done
}

mkdir -p "$PREFIX/models"
checkout
environment
check
download
echo "done: set tts.options.model_dir to a folder under $PREFIX/models and tts.runtime_env to cluster/runtime_envs/cosyvoice.yaml"
