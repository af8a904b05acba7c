"""Client-side probe for `gpu_saturation.py`: when shard tasks send synthesis requests, and when answers return.

Installed in every Ray worker as a `worker_process_setup_hook` (only when `KOE_BENCH_PROBE_DIR` is
set): it wraps `pipeline.executors.ActorPoolBackend.synthesize`, the one place a shard task asks the
actor pool for audio, and appends `<call key> <sent> <returned>` (epoch seconds) to
`<dir>/<pid>.requests`. It changes nothing else; koe's code is not edited. Together with the
actors' own log of when each call ran (`latency_tts_double.py`), it shows how long requests waited
for an actor.
"""

from __future__ import annotations

import functools
import os
import threading
import time

PROBE_DIR = "KOE_BENCH_PROBE_DIR"


def install() -> None:
    directory = os.environ.get(PROBE_DIR)
    if not directory:
        return
    from bench.latency_tts_double import call_key
    from pipeline import executors

    pool_backend = getattr(executors, "ActorPoolBackend", None)
    if pool_backend is None or getattr(pool_backend.synthesize, "probed", False):
        return
    original = pool_backend.synthesize
    lock = threading.Lock()
    path = os.path.join(directory, f"{os.getpid()}.requests")

    @functools.wraps(original)
    def synthesize(self, text, speaker, seed):
        sent = time.time()
        try:
            return original(self, text, speaker, seed)
        finally:
            returned = time.time()
            with lock, open(path, "a") as log:
                log.write(f"{call_key(text, seed)} {sent:.6f} {returned:.6f}\n")

    synthesize.probed = True
    pool_backend.synthesize = synthesize
