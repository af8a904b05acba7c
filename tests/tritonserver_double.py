"""A test double for the `tritonserver` executable: serves `KServeServerDouble` on the ports it is given.

Run as `python tests/tritonserver_double.py --model-repository DIR --http-port P --grpc-port P2 --metrics-port P3
[other tritonserver flags, ignored]` (what the `cosyvoice2-triton` backend's start mode appends to its `command`).
It does what koe relies on from the real server: listens on `--http-port` on 127.0.0.1, is ready when its models
are, and dies when killed. What it serves is read from `DIR/kserve_double.json`:

  {"models": [{"name": "cosyvoice2", ...}],      ModelDouble fields (tests/kserve_server.py)
   "server": {"capacity": 16, ...},              KServeServerDouble keyword arguments
   "scripts": [["exit"], []],                    infer behaviours, by start: the first start's, the second's, ...
   "exit_at_start": 3}                           exit with that code before listening (a broken install)

Each start appends `{"pid", "argv", "cuda_visible_devices", "time"}` to `DIR/starts.jsonl`, and each infer its record
to `DIR/infers-<pid>.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kserve_server import KServeServerDouble, ModelDouble  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    args, _ = parser.parse_known_args()
    repository = Path(args.model_repository)
    config = json.loads((repository / "kserve_double.json").read_text())
    starts = repository / "starts.jsonl"
    previous = len(starts.read_text().splitlines()) if starts.exists() else 0
    with open(starts, "a") as log:
        record = {
            "pid": os.getpid(),
            "argv": sys.argv[1:],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "time": time.time(),
        }
        log.write(json.dumps(record) + "\n")
    if config.get("exit_at_start") is not None:
        print("error: creating server: Internal - failed to load all models (double)", file=sys.stderr, flush=True)
        sys.exit(int(config["exit_at_start"]))
    models = [ModelDouble(**m) for m in config.get("models", [{"name": "cosyvoice2"}])]
    server = KServeServerDouble(
        models,
        port=args.http_port,
        log_path=str(repository / f"infers-{os.getpid()}.jsonl"),
        **config.get("server", {}),
    )
    scripts = config.get("scripts", [])
    if previous < len(scripts):
        server.script(scripts[previous])
    print(f"Started HTTPService at 127.0.0.1:{args.http_port} (double)", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
