"""The cluster configs under cluster/: they parse, carry what `ray up` and KubeRay need, agree with each other
and with the production recipes, and the runtime environments hold only fields Ray knows.

Nothing here starts a cluster; where Ray ships its own reader of a config (the autoscaler's cluster-config
validation, its reading of a KubeRay RayCluster), the test runs that reader.
"""

from __future__ import annotations

import copy
import json
import math
import re
import runpy
import shlex
from pathlib import Path

import pytest
import ray
import yaml
from ray.runtime_env import RuntimeEnv

from pipeline.recipe import load_recipe
from tests.conftest import REPO

CLUSTER = REPO / "cluster"
RAY_UP = CLUSTER / "ray-h200.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
STORAGE = CLUSTER / "kuberay" / "storage.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
INSTALL_SH = CLUSTER / "cosyvoice" / "install.sh"
INSTALL_ENV_SH = CLUSTER / "install_env.sh"
ENVS = CLUSTER / "envs"
COSYVOICE_ENV = CLUSTER / "runtime_envs" / "cosyvoice.yaml"
VLLM_ENV = CLUSTER / "runtime_envs" / "vllm.yaml"
RUNTIME_ENVS = sorted((CLUSTER / "runtime_envs").glob("*.yaml"))
SHARED_PATHS = {"/data", "/models"}  # outputs and the speaker bank; model weights


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of cluster/Dockerfile, comments dropped and continued lines joined."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(i.upper(), a.strip()) for i, a in re.findall(r"^(\w+)\s+(.*)$", joined, re.M)]


def gpu_recipes() -> list:
    """The recipes that need the cluster: synthesis in GPU actors."""
    recipes = [load_recipe(path) for path in sorted((REPO / "recipes").glob("*.yaml"))]
    return [r for r in recipes if r.tts.num_gpus > 0]


def ray_up_gpu_node_types(config: dict) -> dict:
    types = config["available_node_types"]
    return {name: t for name, t in types.items() if t.get("resources", {}).get("GPU", 0) > 0}


def kuberay_cluster_specs() -> list[dict]:
    return [load(RAYCLUSTER)["spec"], load(RAYJOB)["spec"]["rayClusterSpec"]]


def kuberay_groups(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def gpu_groups(spec: dict) -> list[dict]:
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in spec["workerGroupSpecs"]]
    return [g for g, limit in zip(spec["workerGroupSpecs"], limits, strict=True) if "nvidia.com/gpu" in limit]


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_cluster_yaml_parses_to_mappings(path):
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents and all(isinstance(d, dict) and d for d in documents)


# ray up


def test_ray_up_config_has_the_keys_ray_up_requires():
    config = load(RAY_UP)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        assert config.get(key), key
    assert config["head_node_type"] in config["available_node_types"]
    assert config["provider"]["type"]


def test_ray_up_config_passes_rays_own_preparation_and_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    # The steps `ray up` takes before touching a cloud: provider defaults merged in, then the JSON schema
    # (no unknown keys) and the node-type rules (head type exists, min_workers within max_workers).
    validate_config(prepare_config(copy.deepcopy(load(RAY_UP))))


def test_ray_up_gpu_workers_are_a_fixed_fleet_of_8_h200_and_the_head_holds_no_tasks():
    config = load(RAY_UP)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0
    gpu_types = ray_up_gpu_node_types(config)
    assert gpu_types
    for node_type in gpu_types.values():
        assert node_type["resources"]["GPU"] == 8
        assert node_type["resources"]["accelerator_type:H200"] == 1
        # koe sizes its actor pool to the GPUs present at start: no autoscaling of GPU nodes.
        assert node_type["min_workers"] == node_type["max_workers"] >= 1
    assert config["max_workers"] >= sum(t["min_workers"] for t in gpu_types.values())


def test_ray_up_installs_koe_everywhere_and_the_gpu_environments_on_every_gpu_node():
    config = load(RAY_UP)
    assert any("pip install ~/koe" in c for c in config["setup_commands"])
    assert any("cluster/cosyvoice/install.sh" in c for c in config["worker_setup_commands"])
    assert any("cluster/install_env.sh vllm" in c for c in config["worker_setup_commands"])
    # A node type's own worker_setup_commands would replace setup_commands and the global list on that node.
    assert all("worker_setup_commands" not in t for t in config["available_node_types"].values())
    assert config["file_mounts"] == {"~/koe": "."}  # the checkout, where the commands find it
    for command in config["setup_commands"] + config["worker_setup_commands"]:
        for script in re.findall(r"~/koe/(\S+\.sh)", command):
            assert (REPO / script).is_file(), script


def test_ray_up_mounts_the_shared_storage_at_the_fixed_paths():
    mounts = [option.split()[1] for option in load(RAY_UP)["docker"]["run_options"] if option.startswith("-v ")]
    assert {m.split(":")[1] for m in mounts} >= SHARED_PATHS


# KubeRay


def test_kuberay_manifests_are_ray_io_v1_raycluster_and_rayjob():
    for path, kind in ((RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")):
        manifest = load(path)
        assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
        assert manifest["metadata"]["name"]


def test_rayjob_runs_on_the_same_cluster_spec_as_the_raycluster():
    cluster_spec, job_cluster_spec = kuberay_cluster_specs()
    assert job_cluster_spec == cluster_spec


@pytest.mark.parametrize("spec", kuberay_cluster_specs(), ids=["raycluster", "rayjob"])
def test_kuberay_gpu_group_asks_for_8_gpus_and_ray_reads_it_as_h200(spec):
    from ray.autoscaler._private.kuberay.autoscaling_config import _node_type_from_group_spec

    groups = gpu_groups(spec)
    assert groups
    for group in groups:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == 8
        # KubeRay pastes rayStartParams into the `ray start` command line: the value must be one shell word.
        flag = shlex.split(f"--resources={group['rayStartParams']['resources']}")
        assert len(flag) == 1 and json.loads(flag[0].removeprefix("--resources=")) == {"accelerator_type:H200": 1}
        # How Ray's autoscaler on KubeRay reads the group.
        resources = _node_type_from_group_spec(group, is_head=False)["resources"]
        assert resources["GPU"] == 8 and resources["accelerator_type:H200"] == 1
    head = _node_type_from_group_spec(spec["headGroupSpec"], is_head=True)["resources"]
    assert head["CPU"] == 0 and not head.get("GPU")


@pytest.mark.parametrize("spec", kuberay_cluster_specs(), ids=["raycluster", "rayjob"])
def test_every_kuberay_pod_mounts_the_shared_claim_at_the_fixed_paths(spec):
    claim = load(STORAGE)
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    for group in kuberay_groups(spec):
        pod = group["template"]["spec"]
        shared = {v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName")}
        assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if v["name"] in shared} == {
            claim["metadata"]["name"]
        }
        mounted = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] in shared}
        assert mounted >= SHARED_PATHS


def test_rayjob_entrypoint_is_koe_run_of_a_recipe_in_recipes_onto_shared_storage():
    job = load(RAYJOB)["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["koe", "run"]
    recipe = REPO / argv[2]
    assert recipe.parent == REPO / "recipes" and recipe.is_file()
    flags = list(zip(argv[3::2], argv[4::2], strict=True))
    options = {flag: value for flag, value in flags if flag != "--set"}
    settings = dict(value.split("=", 1) for flag, value in flags if flag == "--set")
    assert options["--ray-address"] == "auto"
    assert Path(options["--output"]).parts[1] == "data"
    # The bank at a fixed shared path: the recipe records it, and a resumed run must record the same one.
    assert Path(settings.pop("speakers.bank")).parts[1] == "data"
    resolved = load_recipe(recipe, [f"{k}={v}" for k, v in settings.items()])
    gpus = sum(
        int(g["replicas"]) * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for g in gpu_groups(job["rayClusterSpec"])
    )
    # The actors' call slots are filled: koe's default tasks in flight x each task's rows in flight.
    tts, execution = resolved.tts, resolved.execution
    slots = gpus / tts.num_gpus * tts.concurrency
    tasks = execution.max_tasks_in_flight or math.ceil(2 * slots / execution.items_in_flight) + 1
    assert tts.num_gpus > 0 and tasks * execution.items_in_flight >= slots
    # `recipes/...` resolves in the working directory: the checkout the image carries.
    working_dir = yaml.safe_load(job["runtimeEnvYAML"])["working_dir"]
    assert any(i == "COPY" and a.split()[-2:] == [".", working_dir] for i, a in dockerfile_instructions())


# Agreement: Ray version, image, accelerator, paths


def test_one_ray_version_and_one_image_everywhere():
    version = ray.__version__  # the Ray koe is tested with
    base = next(a for i, a in dockerfile_instructions() if i == "FROM")
    assert base.startswith(f"rayproject/ray:{version}-py311-cu")
    assert load(RAY_UP)["docker"]["image"] == base
    images = set()
    for spec in kuberay_cluster_specs():
        assert spec["rayVersion"] == version
        images |= {c["image"] for g in kuberay_groups(spec) for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1


def test_gpu_nodes_offer_what_the_production_recipes_ask_for():
    recipes = gpu_recipes()
    assert recipes
    ray_up_resources = [t["resources"] for t in ray_up_gpu_node_types(load(RAY_UP)).values()]
    for recipe in recipes:
        wanted = f"accelerator_type:{recipe.tts.accelerator_type}"
        assert all(wanted in r for r in ray_up_resources), recipe.name
        for spec in kuberay_cluster_specs():
            for group in gpu_groups(spec):
                assert wanted in group["rayStartParams"]["resources"], recipe.name
        assert Path(recipe.tts.options["model_dir"]).parts[1] == "models", recipe.name


def test_cosyvoice_is_installed_where_its_runtime_env_points_with_vllm_when_recipes_use_it():
    prefix = re.search(r"^PREFIX=\$\{KOE_COSYVOICE_PREFIX:-(\S+)\}$", INSTALL_SH.read_text(), re.M).group(1)
    assert Path(load(COSYVOICE_ENV)["py_executable"]) == Path(prefix) / "venv" / "bin" / "python"
    wants_vllm = any(r.tts.options.get("load_vllm") for r in gpu_recipes())
    installs = [c for c in load(RAY_UP)["worker_setup_commands"] if "install.sh" in c]
    installs += [a for i, a in dockerfile_instructions() if i == "RUN" and "install.sh" in a]
    assert len(installs) == 2
    for command in installs:
        assert "KOE_COSYVOICE_PREFIX" not in command  # the default prefix, the one the runtime env names
        assert ("KOE_COSYVOICE_VLLM=1" in command) == wants_vllm


# Runtime environments


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_holds_only_fields_ray_knows_with_valid_values(path):
    env = load(path)
    assert isinstance(env, dict) and env
    # RuntimeEnv(**env) alone accepts any key (it could be a plugin's), so the names are checked here.
    public_fields = {f for f in RuntimeEnv.known_fields if not f.startswith("_")}
    assert set(env) <= public_fields, set(env) - public_fields
    RuntimeEnv(**env)  # the values: env_vars as strings, pip as a list, ...


def test_ray_takes_py_executable_as_a_runtime_env_field():
    executable = load(COSYVOICE_ENV)["py_executable"]
    assert "py_executable" in RuntimeEnv.known_fields
    assert RuntimeEnv(py_executable=executable)["py_executable"] == executable


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_envs_install_nothing_when_an_actor_starts(path):
    env = load(path)
    # Ray would build pip/uv/conda environments at actor start, on top of the cluster's own site-packages
    assert not {"pip", "uv", "conda", "container", "image_uri"} & set(env)
    assert Path(env["py_executable"]).is_absolute()


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_setup_timeout_uses_rays_own_key(path):
    from ray.runtime_env import RuntimeEnvConfig

    config = load(path).get("config", {})
    # Ray ignores (with a warning) a key it does not know: a misspelt timeout would silently stay at 600 s
    assert set(config) <= RuntimeEnvConfig.known_fields
    RuntimeEnvConfig(**config)


def lock_installs() -> list[str]:
    """Every command of ray up's GPU workers and of the image that runs cluster/install_env.sh."""
    commands = [c for c in load(RAY_UP)["worker_setup_commands"] if "install_env.sh" in c]
    return commands + [a for i, a in dockerfile_instructions() if i == "RUN" and "install_env.sh" in a]


def test_vllm_runtime_env_points_at_the_environment_install_env_builds_from_its_lock_on_every_node():
    default = re.search(r"^VENV=\$\{2:-(\S+)\}$", INSTALL_ENV_SH.read_text(), re.M).group(1)
    assert default == "/opt/koe/envs/$NAME"
    assert Path(load(VLLM_ENV)["py_executable"]) == Path("/opt/koe/envs/vllm/bin/python")
    assert (ENVS / "vllm.txt").is_file()
    wants_vllm = any(
        r.captioner is not None and r.captioner.backend == "vllm" and r.captioner.num_gpus > 0
        for r in (load_recipe(p) for p in sorted((REPO / "recipes").glob("*.yaml")))
    )
    commands = [c for c in lock_installs() if re.search(r"install_env\.sh vllm\b", c)]
    assert wants_vllm and len(commands) == 2  # ray up's GPU workers and the image
    for command in commands:
        assert not re.search(r"install_env\.sh vllm \S", command)  # the default VENV, the one vllm.yaml names


def test_cosyvoice_environments_come_only_from_their_locks():
    script = INSTALL_SH.read_text()
    # install.sh installs no package itself: install_env.sh does, from cosyvoice.txt or cosyvoice-vllm.txt
    assert "pip install" not in script and "$PIP" not in script
    assert re.search(r'lock=cosyvoice\n.*lock=cosyvoice-vllm; fi\n.*install_env\.sh" "\$lock" "\$VENV"', script, re.S)
    for lock in ("cosyvoice", "cosyvoice-vllm"):
        assert (ENVS / f"{lock}.txt").is_file()
    installer = INSTALL_ENV_SH.read_text()
    assert "LOCK=$ENVS/$NAME.txt" in installer and "--no-deps" in installer


# cluster/prepare_models.py


def test_prepare_models_refuses_a_recipe_without_a_gpu_model_before_touching_ray(capsys):
    main = runpy.run_path(str(CLUSTER / "prepare_models.py"))["main"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(REPO / "recipes" / "demo.yaml")])
    assert exit_info.value.code == 2
    assert "nothing to stage" in capsys.readouterr().err
    assert not ray.is_initialized()
