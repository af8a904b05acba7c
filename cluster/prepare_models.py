"""Stage a recipe's CosyVoice model on the shared models volume and build its vLLM and TensorRT files, once.

The recipes' GPU actors load `tts.options.model_dir` from storage every node sees (/models). Their first load
with `load_vllm`/`load_trt` writes an exported LLM (`vllm/`) and a TensorRT plan into that folder, and many
actors starting together would race to write them. This script does it beforehand, in one Ray task that asks
for what a synthesis actor asks for (one GPU of the recipe's accelerator type, in the recipe's runtime_env),
so it also proves that the GPU nodes are prepared. Submit it as a job, from the repository root:

    ray job submit --address http://localhost:8265 --working-dir . -- \\
        python cluster/prepare_models.py recipes/sft_magpie.yaml

Re-running it is safe: the download resumes (or only checks), existing vLLM and TensorRT files are reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ray

from pipeline.recipe import load_recipe
from pipeline.tts import load_backend

HUB_ORGANIZATION = "FunAudioLLM"  # where the CosyVoice2/3 folders the recipes name are published


def stage_model(backend: str, options: dict, repo: str | None, revision: str | None) -> dict:
    """On a GPU node, in the actors' environment: download into model_dir, then load it as an actor would."""
    if repo:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, revision=revision, local_dir=options["model_dir"])
    return load_backend(backend, options).describe()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="the recipe whose tts.options.model_dir to stage")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for `koe run`")
    parser.add_argument(
        "--repo",
        help=f"Hub repo to download, optionally REPO@REVISION (default: {HUB_ORGANIZATION}/<model_dir's folder name>)",
    )
    parser.add_argument("--no-download", action="store_true", help="the folder is already in place: only build")
    parser.add_argument("--ray-address", default="auto")
    args = parser.parse_args(argv)

    tts = load_recipe(args.recipe, args.set).tts
    model_dir = tts.options.get("model_dir")
    if tts.num_gpus <= 0 or not model_dir:
        parser.error(
            f"{args.recipe}: tts.backend {tts.backend!r} loads no model folder in GPU actors: nothing to stage"
        )
    repo, revision = None, None
    if not args.no_download:
        repo, _, revision = (args.repo or f"{HUB_ORGANIZATION}/{Path(model_dir).name}").partition("@")

    if not ray.is_initialized():
        ray.init(address=args.ray_address)
    options = {"num_gpus": tts.num_gpus, "num_cpus": tts.cpus_per_actor, "runtime_env": tts.runtime_env}
    if tts.accelerator_type:
        options["accelerator_type"] = tts.accelerator_type
    task = ray.remote(stage_model).options(**options)
    described = ray.get(task.remote(tts.backend, tts.options, repo, revision or None))
    print(f"{model_dir}: ready ({described})")


if __name__ == "__main__":
    main()
