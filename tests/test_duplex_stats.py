"""Turn-taking measured from the audio, as it was measured on real Japanese dialogues."""

from __future__ import annotations

import json

import pytest

from pipeline.duplex_stats import HUMAN, count, ipus
from pipeline.shards import output_samples
from tests.conftest import koe


def test_segments_closer_than_200ms_are_one_inter_pausal_unit():
    assert ipus([(0.0, 1.0), (1.15, 2.0), (2.3, 3.0)]) == [(0.0, 2.0), (2.3, 3.0)]


def test_counts_of_a_dialogue_with_a_backchannel_an_overlap_and_a_transfer():
    speaker = ipus([(0.0, 3.0), (3.1, 4.0)])  # one IPU: the 0.1 s pause is inside it
    listener = [(1.0, 1.5), (4.1, 6.0)]  # はい while the other speaks, then takes the floor 0.1 s after
    figures = count([speaker, listener], seconds=6.0).figures()
    assert figures.both_talking_share == pytest.approx(0.5 / 6)
    assert (figures.overlaps_per_minute, figures.backchannels_per_minute) == (pytest.approx(10.0), pytest.approx(10.0))
    assert figures.ipu_median_seconds == pytest.approx(1.9)
    assert figures.overlapped_transfer_share == 0.0 and figures.transfer_offset_median_seconds == pytest.approx(0.1)
    early = count([speaker, [(3.7, 6.0)]], seconds=6.0).figures()  # starts 0.3 s before the other ends
    assert early.overlapped_transfer_share == 1.0 and early.transfer_offset_median_seconds == pytest.approx(-0.3)


def test_duplex_stats_measures_an_output_beside_its_timeline_and_the_human_ranges(duplex_output):
    shown = koe("duplex-stats", str(duplex_output)).stdout
    assert all(name in shown for name in HUMAN) and "heard" in shown and "designed" in shown
    stats = json.loads(koe("duplex-stats", str(duplex_output), "--json").stdout)
    documents = [s.document for s in output_samples(duplex_output)]
    assert stats["dialogues"] == len(documents) and stats["human"] == {k: list(v) for k, v in HUMAN.items()}
    seconds = sum(d["audio"]["duration"] for d in documents)
    for side in ("heard", "designed"):
        assert stats[side]["seconds"] == pytest.approx(seconds)
        assert 0 <= stats[side]["both_talking_share"] < 1 and stats[side]["ipu_median_seconds"] > 0
    aizuchi = sum(e["kind"] == "aizuchi" for d in documents for e in d["timeline"])
    assert stats["designed"]["backchannels_per_minute"] <= aizuchi / (seconds / 60) * (1 + 1e-6)


def test_duplex_stats_refuses_an_output_that_is_not_two_channel(demo_output):
    result = koe("duplex-stats", str(demo_output), check=False)
    assert result.returncode == 2 and "is not a two-channel dialogue" in result.stderr
