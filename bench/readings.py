"""Reading accuracy: koe's katakana readings against plain OpenJTalk on the gold set, in the same run.

The gold set (`tests/data/readings_gold.tsv`: class, text, reading; ` | ` between readings that are
all right) holds realistic user turns in the classes that were measured failing: English words and
sentences, acronyms, digits in Latin names, numbers with counters, kanji read by context,
calculations, addresses and file names, symbols, and plain chat. Each turn is read two ways:

- koe: `make_speakable` then `kana_reading`, what a CosyVoice render is given;
- plain g2p: `pyopenjtalk.g2p(text, kana=True)` on the text as written.

A second set (`tests/data/readings_heldout.tsv`, 150 turns) was written by someone who saw neither
koe's rules nor the gold set; it is printed too, as a check that the rules are general.

Both are scored with `pipeline.readings.character_error_rate` (edits over gold characters, after
`comparable_reading` folds spelling variants), per class and overall. The English-to-katakana
converters are compared on `tests/data/english_katakana.tsv` (kanalizer, e2k when installed, and
OpenJTalk's dictionary in front of each), which is how kanalizer was chosen.

    python bench/readings.py            # prints the tables, then RATIO reading_cer <koe CER>
    python bench/readings.py --errors   # also every turn koe reads wrong
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyopenjtalk  # noqa: E402

from pipeline.english import _converted, _dictionary_reading  # noqa: E402
from pipeline.readings import character_error_rate, kana_reading, reading_errors  # noqa: E402
from pipeline.speakable import make_speakable  # noqa: E402

GOLD = REPO / "tests" / "data" / "readings_gold.tsv"
SECOND = REPO / "tests" / "data" / "readings_heldout.tsv"  # written apart from koe's rules, 150 turns
ENGLISH = REPO / "tests" / "data" / "english_katakana.tsv"
TARGET = 0.01


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))


def alternatives(cell: str) -> list[str]:
    return [reading.strip() for reading in cell.split("|")]


def koe_reading(text: str) -> str:
    return kana_reading(make_speakable(text))


def compare_readings(path: Path, show_errors: bool) -> float:
    rows = read_tsv(path)
    by_class: dict[str, dict[str, list]] = defaultdict(lambda: {"koe": [], "g2p": []})
    wrong = 0
    for row in rows:
        gold = alternatives(row["reading"])
        ours = koe_reading(row["text"])
        by_class[row["class"]]["koe"].append((ours, gold))
        by_class[row["class"]]["g2p"].append((pyopenjtalk.g2p(row["text"], kana=True), gold))
        if reading_errors(ours, gold)[0]:
            wrong += 1
            if show_errors:
                print(f"  [{row['class']}] {row['text']}\n      koe  {ours}\n      gold {' | '.join(gold)}")
    print(f"\n{len(rows)} turns in {path.relative_to(REPO)}; koe reads {wrong} of them with an error")
    print(f"{'class':<18}{'turns':>6}{'koe CER':>10}{'g2p CER':>10}")
    for name, pairs in sorted(by_class.items()):
        koe, g2p = character_error_rate(pairs["koe"]), character_error_rate(pairs["g2p"])
        print(f"{name:<18}{len(pairs['koe']):>6}{koe:>10.2%}{g2p:>10.2%}")
    koe = character_error_rate([p for pairs in by_class.values() for p in pairs["koe"]])
    g2p = character_error_rate([p for pairs in by_class.values() for p in pairs["g2p"]])
    print(f"{'all':<18}{len(rows):>6}{koe:>10.2%}{g2p:>10.2%}")
    return koe


def compare_converters() -> None:
    """English words to katakana: each route's CER on the word list, and its exact matches."""
    rows = read_tsv(ENGLISH)
    routes = {"kanalizer": _converted}
    try:
        import e2k

        routes["e2k"] = e2k.C2K()
    except ImportError:
        print("(e2k is not installed: pip install e2k to compare it too)")
    for name, convert in list(routes.items()):
        routes[f"dictionary, then {name}"] = lambda w, c=convert: (
            _dictionary_reading(w.capitalize()) or _dictionary_reading(w) or c(w)
        )
    print(f"\nEnglish words to katakana, {len(rows)} words in {ENGLISH.relative_to(REPO)}")
    print(f"{'route':<30}{'CER':>8}{'exact':>8}")
    for name, convert in routes.items():
        pairs = [(convert(row["word"]), alternatives(row["katakana"])) for row in rows]
        exact = sum(reading_errors(heard, gold)[0] == 0 for heard, gold in pairs)
        print(f"{name:<30}{character_error_rate(pairs):>8.2%}{exact:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--errors", action="store_true", help="print every turn koe reads wrong")
    args = parser.parse_args()
    cer = compare_readings(GOLD, args.errors)
    compare_readings(SECOND, args.errors)
    compare_converters()
    print(f"RATIO reading_cer {cer:.4f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
