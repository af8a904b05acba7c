#!/usr/bin/env bash
# Prepare one GPU node for koe's cosyvoice2/cosyvoice3 backends: the official CosyVoice checkout at a
# pinned commit (with its Matcha-TTS submodule), its Python environment built from a lock
# (cluster/envs/cosyvoice.txt, or cosyvoice-vllm.txt with KOE_COSYVOICE_VLLM=1) by cluster/install_env.sh,
# and the model weights. Run it on every GPU node (or once onto storage the nodes share); re-running it is
# safe. cluster/runtime_envs/cosyvoice.yaml points the actors at the result. See cluster/cosyvoice/README.md.
#
# Settings (environment variables):
#   KOE_COSYVOICE_PREFIX  where everything goes                    (default /opt/koe/cosyvoice)
#   PYTHON                the Python that runs Ray on this node;   (default python3)
#                         the environment is made from it, and its Ray version must be the lock's
#   KOE_SRC               the koe checkout to install              (default: this repository)
#   KOE_COSYVOICE_MODELS  Hub repos to download, each optionally @revision, space-separated
#                         (default "FunAudioLLM/CosyVoice2-0.5B FunAudioLLM/Fun-CosyVoice3-0.5B-2512")
#   KOE_COSYVOICE_HUB     huggingface or modelscope                (default huggingface)
#   KOE_COSYVOICE_VLLM    1: the environment for load_vllm         (default 0)
#                         (cosyvoice-vllm.txt: vLLM 0.9.0, torch 2.7.0; 0: cosyvoice.txt, torch 2.3.1)
set -euo pipefail

# The commit whose API pipeline/tts/cosyvoice.py was written against (2026-03-16); it pins Matcha-TTS dd9105b.
COSYVOICE_COMMIT=ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
COSYVOICE_REPO=https://github.com/FunAudioLLM/CosyVoice.git
PREFIX=${KOE_COSYVOICE_PREFIX:-/opt/koe/cosyvoice}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
KOE_SRC=${KOE_SRC:-$(cd "$HERE/../.." && pwd)}
MODELS=${KOE_COSYVOICE_MODELS:-"FunAudioLLM/CosyVoice2-0.5B FunAudioLLM/Fun-CosyVoice3-0.5B-2512"}
HUB=${KOE_COSYVOICE_HUB:-huggingface}
CHECKOUT=$PREFIX/CosyVoice
VENV=$PREFIX/venv

checkout() {
  if [ ! -d "$CHECKOUT/.git" ]; then
    git clone "$COSYVOICE_REPO" "$CHECKOUT"
  fi
  git -C "$CHECKOUT" fetch --quiet origin
  git -C "$CHECKOUT" checkout --quiet "$COSYVOICE_COMMIT"
  git -C "$CHECKOUT" submodule update --init --recursive
}

environment() {
  local lock=cosyvoice
  if [ "${KOE_COSYVOICE_VLLM:-0}" = 1 ]; then lock=cosyvoice-vllm; fi
  PYTHON="$PYTHON" KOE_SRC="$KOE_SRC" "$HERE/../install_env.sh" "$lock" "$VENV"
}

check() {
  PYTHONPATH="$CHECKOUT:$CHECKOUT/third_party/Matcha-TTS" "$VENV/bin/python" -c '
import cosyvoice.cli.cosyvoice as cli, onnxruntime, ray, tensorrt, torch, pipeline.tts.cosyvoice
assert hasattr(cli, "CosyVoice2") and hasattr(cli, "CosyVoice3")
print("CosyVoice imports; torch", torch.__version__, "CUDA", torch.cuda.is_available(),
      "| onnxruntime", onnxruntime.get_available_providers(), "| TensorRT", tensorrt.__version__,
      "| ray", ray.__version__)'
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
