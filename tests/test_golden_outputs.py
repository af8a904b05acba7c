"""Golden outputs: every offline recipe profile writes the same shards and manifest rows as when they were recorded.

Recorded before issue 16 moved each recipe kind into `pipeline/kinds/`, to hold that move (and any later
restructuring) to "behaviour is unchanged": the sha256 of every shard tar, and of the manifest's rows
without their `render_seconds` (wall time of the render, which differs run to run). A change meant to
alter the output (a new field, a fixed reading) re-records them on purpose:

    python tests/test_golden_outputs.py    # rewrites tests/data/golden_outputs.json

and the commit says why they changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden_outputs.json"
LIMIT = 5  # rows per recipe: two shards of the offline profiles (4 rows each)
CAPTIONER_PORT = 47391  # the captioner's endpoint is recorded in each sample: a fixed port keeps it the same
RUNS = {
    "demo": ("recipes/demo.yaml", []),
    "sft_magpie": ("recipes/sft_magpie.yaml", ["profile=embedded"]),
    "sft_automultiturn": ("recipes/sft_automultiturn.yaml", ["profile=embedded"]),
    "dpo_hh_rlhf": ("recipes/dpo_hh_rlhf.yaml", ["profile=embedded"]),
    "dpo_chatbot_arena": ("recipes/dpo_chatbot_arena.yaml", ["profile=embedded"]),
    "duplex_magpie": ("recipes/duplex_magpie.yaml", ["profile=embedded"]),
    "captions_fsd50k": ("recipes/captions_fsd50k.yaml", ["profile=server"]),
}


def digests(output: Path) -> dict:
    from pipeline.manifest import read_manifest

    rows = read_manifest(output / "manifest.parquet").to_pylist()
    for row in rows:
        row.pop("render_seconds")
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()
    return {
        "shards": {
            tar.name: hashlib.sha256(tar.read_bytes()).hexdigest() for tar in sorted((output / "shards").glob("*.tar"))
        },
        "manifest_rows": hashlib.sha256(canonical).hexdigest(),
    }


def run_golden(name: str, output: Path) -> dict:
    """Runs one recipe profile in this process (inline executor) and returns its digests."""
    from pipeline.executors import InlineExecutor
    from pipeline.recipe import load_recipe
    from pipeline.run import run_recipe

    path, overrides = RUNS[name]
    if name == "captions_fsd50k":
        from tests.chat_server import ChatServerDouble

        with ChatServerDouble(port=CAPTIONER_PORT) as server:
            settings = [f"captioner.options.base_url={server.url}", "captioner.options.model=captioner-double"]
            recipe = load_recipe(REPO / path, [*overrides, *settings])
            run_recipe(recipe, output, InlineExecutor(), limit=LIMIT, show_progress=False)
    else:
        run_recipe(load_recipe(REPO / path, overrides), output, InlineExecutor(), limit=LIMIT, show_progress=False)
    return digests(output)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_recipe_profile_writes_its_golden_shards_and_manifest(name, tmp_path):
    recorded = json.loads(GOLDEN.read_text())[name]
    assert run_golden(name, tmp_path / "out") == recorded


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as work:
        recorded = {name: run_golden(name, Path(work) / name) for name in sorted(RUNS)}
    GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    counts = ", ".join(f"{name} ({len(found['shards'])} shards)" for name, found in recorded.items())
    print(f"recorded {GOLDEN}: {counts}")
