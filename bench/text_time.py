"""Text stage time against input length: it must grow linearly, so no turn can stall a run.

A turn of realistic chat (numbers, English, an address, emoji, markdown) is repeated to 1k, 10k and
100k characters and made speakable (`make_speakable`, every rule of the text stage) three times at
each length; the best time per character is printed. Then the same for hostile runs that once took
quadratic time (one long letter run, digits with dots, hyphenated digits, newlines with spaces).

The ratio is the time per character at 100k over that at 1k, the worst over all inputs: linear
growth keeps it near 1 (a quadratic pattern gives about 100).

    python bench/text_time.py   # about half a minute; last line RATIO text_time_growth <value>
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.speakable import make_speakable  # noqa: E402

CHAT = (
    "Pythonで10分ごとに3+4=7を計算し、結果をsupport@example.comに送りたいです😊 "
    "詳しくはhttps://example.com/docsを見て、★★★☆☆の評価でした。\n- 1つ目\n- 2つ目\nI like reading books. "
)
HOSTILE = {"letters": "x", "digits and dots": "1.", "hyphenated digits": "3-", "newlines": "\n "}
LENGTHS = (1_000, 10_000, 100_000)
TARGET = 3.0


def seconds_per_char(unit: str, length: int) -> float:
    text = (unit * (length // len(unit) + 1))[:length]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        make_speakable(text)
        best = min(best, time.perf_counter() - started)
    return best / length


def main() -> None:
    make_speakable(CHAT)  # loads OpenJTalk and kanalizer once, outside the timing
    worst = 0.0
    print(f"{'input':<20}" + "".join(f"{n:>12,} ch" for n in LENGTHS) + f"{'100k / 1k':>12}")
    for name, unit in {"chat": CHAT, **HOSTILE}.items():
        per_char = [seconds_per_char(unit, n) for n in LENGTHS]
        growth = per_char[-1] / per_char[0]
        worst = max(worst, growth)
        print(f"{name:<20}" + "".join(f"{t * 1e6:>12.2f} µs" for t in per_char) + f"{growth:>12.2f}")
    print(f"RATIO text_time_growth {worst:.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
