"""`koe describe RECIPE`: the chain a recipe will run, stage by stage, before anything runs.

Each line comes from the objects the run itself uses (the recipe's kind and its `describe_chain`,
the model stage's config, the quality gate's list of checks), so the description cannot drift from
what `koe run` does. Nothing is loaded: a GPU recipe is described on a laptop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .kinds import kind_named
from .qc import gate_checks
from .recipe import ModelStageConfig, Recipe

MODEL_OPTIONS = ("model_dir", "model", "model_name")  # the option that names the model, where a backend has one
ENDPOINT_OPTIONS = ("base_url", "url")


@dataclass(frozen=True)
class Step:
    stage: str
    what: str


def where_it_runs(stage: str, config: ModelStageConfig) -> str:
    """The model's place: in every shard task's process, or a pool of Ray GPU actors sized as the executor does."""
    if config.num_gpus == 0:
        return "in each shard task's process (CPU), loaded once per worker"
    actors = (
        f"{config.actors} actor(s)"
        if config.actors
        else f"as many actors as the cluster's GPUs fit at {config.num_gpus:g}"
    )
    accelerator = f" on {config.accelerator_type} GPUs" if config.accelerator_type else ""
    runtime = "its own runtime_env" if config.runtime_env else "the driver's environment"
    return (
        f"GPU actor pool ({stage}): {actors}{accelerator}, {config.num_gpus:g} GPU and {config.cpus_per_actor:g} CPU "
        f"each, {config.concurrency} request(s) in flight per actor, in {runtime}"
    )


def model_line(stage: str, config: ModelStageConfig) -> str:
    options = config.options
    model = next((str(options[k]) for k in MODEL_OPTIONS if options.get(k)), "the backend's own")
    endpoint = next((str(options[k]) for k in ENDPOINT_OPTIONS if options.get(k)), None)
    served = f", served at {endpoint}" if endpoint else ""
    return f"{stage} backend {config.backend!r}, model {model}{served}; options {json.dumps(options, default=str)}"


def describe(recipe: Recipe) -> list[Step]:
    kind = kind_named(recipe.kind)
    stage, config = kind.model_stage, kind.stage_config(recipe)
    execution = recipe.execution
    steps = [Step(name, what) for name, what in kind.describe_chain(recipe)]
    steps.insert(0, Step("recipe", f"{recipe.name}: kind {kind.name} ({kind.summary}), seed {recipe.seed}"))
    steps.append(Step("model", model_line(stage, config)))
    steps.append(Step("runs", where_it_runs(stage, config)))
    if kind.speaks:
        if recipe.qc.enabled:
            for check in gate_checks(recipe.qc):
                steps.append(Step("check", f"{check.name}: {check.bounds(recipe.qc)}"))
            below = recipe.qc.min_seconds_for_model_checks
            steps.append(Step("check", f"speech under {below:g} s is measured but not judged by dnsmos/speaker/pace"))
        else:
            steps.append(Step("check", "none: qc.enabled is false"))
    steps.append(
        Step(
            "write",
            f"WebDataset shards of {recipe.output.rows_per_shard} input rows, each row in the manifest as "
            "written, rejected or failed",
        )
    )
    at_once = (
        f"{execution.max_tasks_in_flight} at once"
        if execution.max_tasks_in_flight
        else ("enough at once to keep the actors' slots full" if config.num_gpus else "2 at once per CPU")
    )
    steps.append(
        Step(
            "tasks",
            f"one Ray task per shard, {at_once} ({execution.cpus_per_task:g} CPU each, {execution.items_in_flight} "
            f"row(s) at once, up to {execution.row_requests_in_flight} model request(s) per row, "
            f"{execution.row_attempts} tries of a row that raises, {execution.shard_task_attempts} of a task whose "
            "worker dies); local Ray unless --ray-address, --executor inline for this process",
        )
    )
    return steps


def format_steps(steps: list[Step]) -> str:
    width = max(len(step.stage) for step in steps)
    return "\n".join(f"{step.stage.ljust(width)}  {step.what}" for step in steps)
