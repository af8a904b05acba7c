"""Memory: peak RSS of streaming a 132k-row corpus through ingest, the text stage and speaker assignment.

A magpie-schema corpus of 132,000 rows (user turns of 100-300 characters, a fifth of the rows with
a second user turn, assistant turns with markdown) is generated into a temporary JSONL file. A child
process then streams it through the stages koe runs before rendering, in one process: `pipeline.corpora.iter_items`
(ingest through `datasets`), the adapter, `pipeline.kinds.speech.speak_turns` with
`pipeline.readings.kana_reading` (the text stage), and `pipeline.speakers.assign_speakers`. Its peak
RSS is read in this process with `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` once it has exited;
the child also prints its RSS every 22,000 rows, so growth with the corpus shows. A second child
then runs ingest alone, as a control that shows how much of the peak the corpus stream itself holds.

    ratio = peak RSS / 1 GiB, target <= 1.0

Ingest and speaker assignment cover every row. The text stage costs 8-9 ms a row (OpenJTalk's
analysis for the reading), some 20 minutes for all 132k rows on one core, so it runs on every
20th row (6,600 rows, spread over the whole stream, about a minute); the child prints its measured
time per row and what all rows would take.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import Stopwatch, magpie_rows, ratio_line, write_jsonl, write_recipe

ROWS = 132_000
TEXT_EVERY = 20
CHECKPOINT = 22_000
SEED = 4
ROLES = ("user",)
GIB = 1024**3


def rss_mib() -> float:
    """This process's resident set size now, from /proc (no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stream(recipe_path: Path) -> None:
    """The child: every row through ingest and assignment, every TEXT_EVERY-th also through the text stage."""
    from pipeline.corpora import iter_items, make_adapter
    from pipeline.kinds.speech import speak_turns
    from pipeline.recipe import load_recipe
    from pipeline.records import Dialogue, Rejected
    from pipeline.speakers import assign_speakers, load_bank

    recipe = load_recipe(recipe_path)
    bank = load_bank(recipe.speakers.bank)
    adapters = {s.name: make_adapter(s) for s in recipe.sources}
    print(f"child: RSS {rss_mib():.0f} MiB after imports")
    outcomes, voices = Counter(), Counter()
    text_rows, text_seconds, rows = 0, 0.0, 0
    started = time.perf_counter()
    for rows, item in enumerate(iter_items(recipe.sources), start=1):
        try:
            if item.reject_reason:
                raise Rejected(item.reject_reason)
            turns = adapters[item.source].parse(item.row).turns
            dialogue = Dialogue(item.key, item.source, item.row_index, item.row_id, turns)
            if rows % TEXT_EVERY == 0:
                text_started = time.perf_counter()
                text_rows += 1
                speak_turns(dialogue, ROLES, recipe.text.max_turn_chars, tts_reads_kana=False)
                text_seconds += time.perf_counter() - text_started
            voices[assign_speakers(bank, item.key, recipe.seed)["user"].id] += 1
            outcomes["ok"] += 1
        except Rejected as rejected:
            outcomes[rejected.reason.split(" (")[0]] += 1
        if rows == 1:
            print(f"child: RSS {rss_mib():.0f} MiB at the first row (torch imported: {'torch' in sys.modules})")
        if rows % CHECKPOINT == 0:
            print(f"child: {rows:>7} rows, RSS {rss_mib():.0f} MiB, {time.perf_counter() - started:.0f} s")
    per_row = text_seconds / max(text_rows, 1)
    print(f"child: {rows} rows ingested and assigned ({dict(outcomes)}), {len(voices)} user voices used")
    print(
        f"child: text stage on {text_rows} rows (every {TEXT_EVERY}th): {per_row * 1000:.1f} ms a row; "
        f"all {rows} rows would take {per_row * rows / 60:.1f} min"
    )


def ingest_only(recipe_path: Path) -> None:
    """The control child: ingest alone (`iter_items` over every row), to show what the stream itself holds."""
    from pipeline.corpora import iter_items
    from pipeline.recipe import load_recipe

    rows = sum(1 for _ in iter_items(load_recipe(recipe_path).sources))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"control, ingest alone ({rows} rows through iter_items, nothing else): peak RSS {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the recipe to stream (internal)
    parser.add_argument("--ingest-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (ingest_only if args.ingest_only else stream)(args.child)
        return
    work = Path(tempfile.mkdtemp(prefix="koe-bench-memory-"))
    try:
        with Stopwatch() as generating:
            corpus = write_jsonl(work / "corpus.jsonl", magpie_rows(ROWS, SEED, follow_up=(100, 300)))
        print(
            f"corpus: {ROWS} rows, {corpus.stat().st_size / 1e6:.0f} MB of JSONL, written in {generating.seconds:.0f} s"
        )
        recipe = write_recipe(work, corpus)
        with Stopwatch() as streaming:
            subprocess.run([sys.executable, __file__, "--child", str(recipe)], check=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        print(f"streamed in {streaming.seconds:.0f} s; peak RSS of the child: {peak / 2**20:.0f} MiB")
        subprocess.run([sys.executable, __file__, "--child", str(recipe), "--ingest-only"], check=True)
        print(ratio_line("memory", peak / GIB, "<=", 1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
