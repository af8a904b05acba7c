"""QC share: CPU time of the quality gate on a render, against the CPU time of the render itself.

The same generated user turns (magpie-like, 100-300 characters, speakable text) are rendered by the
embedded backend (OpenJTalk, one process) and every render goes through `QualityGate.judge` with
the default checks (silero-vad, level, pace, DNSMOS P.808, resemblyzer speaker similarity). Models
are loaded and each speaker's reference embedding made before timing; both sides are timed with
`time.process_time` (CPU seconds of this process, all threads), so the ratio does not depend on how
busy the machine is.

    ratio = QC CPU seconds / render CPU seconds, target <= 0.25 (issue 7: "a small fraction")

OpenJTalk is the cheapest render there is (about 0.06 s of CPU per second of audio); against a
neural backend the share is far smaller. `--full` adds DNSMOS's SIG/BAK/OVRL model.
"""

from __future__ import annotations

import argparse
import random
import time

from common import BANK, ratio_line, user_turn

from pipeline.qc import QualityGate, ReferenceVoices
from pipeline.readings import kana_reading
from pipeline.recipe import QCConfig
from pipeline.speakable import make_speakable
from pipeline.speakers import load_bank
from pipeline.tts import load_backend

TURNS = 40
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="DNSMOS SIG/BAK/OVRL too")
    args = parser.parse_args()
    backend = load_backend("openjtalk", {"max_chars": 200})
    speakers = load_bank(BANK).speakers
    gate = QualityGate(
        QCConfig(dnsmos_full=args.full),
        ReferenceVoices(lambda text, speaker: (backend.synthesize(text, speaker, 0), backend.sample_rate)),
    )
    rng = random.Random(SEED)
    texts = [make_speakable(user_turn(rng))[:200] for _ in range(TURNS)]
    warm = backend.synthesize(texts[0], speakers[0], 0)
    for speaker in speakers:
        gate.judge(warm, backend.sample_rate, kana_reading(texts[0]), speaker)  # models and references load here
    render_cpu = qc_cpu = audio_seconds = 0.0
    failed = 0
    for index, text in enumerate(texts):
        speaker = speakers[index % len(speakers)]
        reading = kana_reading(text)
        started = time.process_time()
        audio = backend.synthesize(text, speaker, 0)
        render_cpu += time.process_time() - started
        started = time.process_time()
        verdict = gate.judge(audio, backend.sample_rate, reading, speaker)
        qc_cpu += time.process_time() - started
        audio_seconds += audio.size / backend.sample_rate
        failed += verdict.problem is not None
    print(f"{TURNS} turns, {audio_seconds:.0f} s of audio; {failed} failed a check")
    print(f"render: {render_cpu:.2f} CPU s ({render_cpu / audio_seconds * 1000:.0f} ms per audio second)")
    print(f"QC:     {qc_cpu:.2f} CPU s ({qc_cpu / audio_seconds * 1000:.0f} ms per audio second)")
    print(ratio_line("qc_share", qc_cpu / render_cpu, "<=", 0.25))


if __name__ == "__main__":
    main()
