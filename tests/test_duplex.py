"""Duplex composition on real OpenJTalk renders, measured from the audio, not from the plan."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.kinds.duplex import CHANNELS, DuplexComposer, aizuchi_times, plan_turns
from pipeline.kinds.speech import speak_turns
from pipeline.recipe import DuplexConfig, RenderConfig
from pipeline.records import Dialogue, Turn
from pipeline.shards import output_samples
from pipeline.speakers import load_bank
from pipeline.tts import load_backend
from tests.conftest import BANK, REPO, koe

RATE = 24000
FRAME = 240  # 10 ms
TOLERANCE = 0.020  # seconds: the timeline must match the audio this closely

TURNS = [
    ("user", "最近、週末に近所の公園を散歩するようになりました。季節の花がきれいで、気分転換になります。"),
    ("assistant", "それは素敵ですね。散歩は体にも心にも良いと言われています。どんな花が咲いていましたか。"),
    ("user", "桜はもう散っていましたが、つつじが満開でした。写真もたくさん撮りました。"),
    ("assistant", "つつじは色が鮮やかで、写真に映えますね。朝の光の中で撮ると、さらにきれいに見えますよ。"),
]


def make_dialogue() -> Dialogue:
    dialogue = Dialogue("t-0", "t", 0, "0", [Turn(role, text) for role, text in TURNS])
    speak_turns(dialogue, ("user", "assistant"), 600, tts_reads_kana=False)
    return dialogue


@pytest.fixture(scope="module")
def voices():
    bank = load_bank(BANK).speakers
    return {"user": bank[0], "assistant": bank[9]}


def compose(voices, **duplex):
    config = DuplexConfig.model_validate(duplex)
    backend = load_backend("openjtalk", {"max_chars": 200})
    composer = DuplexComposer(backend, RenderConfig(), config, RATE, False, None)
    dialogue = make_dialogue()
    return dialogue, composer.compose(dialogue, voices, seed=11)


@pytest.fixture(scope="module")
def busy_sample(voices):
    """Many overlaps and aizuchi, so that every kind of event is on the timeline."""
    return compose(voices, overlap={"share": 0.6}, aizuchi={"rate_per_minute": 40, "min_turn_seconds": 2.0})


def loud_frames(channel: np.ndarray) -> np.ndarray:
    """Start times of the 10 ms frames that carry sound on one channel (int16 samples)."""
    frames = channel[: channel.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return np.flatnonzero(np.abs(frames).max(axis=1) > 40) * FRAME / RATE


def onset_offset(channel: np.ndarray, start: float, end: float) -> tuple[float, float]:
    """Where sound begins and ends on a channel around a planned interval (sample-accurate)."""
    lo, hi = int((start - 0.1) * RATE), int((end + 0.1) * RATE)
    loud = np.flatnonzero(np.abs(channel[max(lo, 0) : hi].astype(np.int32)) > 40)
    return (max(lo, 0) + loud[0]) / RATE, (max(lo, 0) + loud[-1]) / RATE


def test_each_channel_sounds_only_inside_its_own_turns_and_aizuchi(busy_sample):
    _, sample = busy_sample
    kinds = {e.kind for e in sample.events}
    assert kinds == {"turn", "aizuchi"}
    assert any(e.gap is not None and e.gap < 0 for e in sample.events)  # at least one overlap
    for role, channel in CHANNELS.items():
        mine = [(e.start, e.end) for e in sample.events if e.role == role]
        for t in loud_frames(sample.pcm[:, channel]):
            assert any(a - 0.05 <= t <= b + 0.05 for a, b in mine), f"{role} channel sounds at {t:.2f} s"


def test_gaps_overlaps_and_aizuchi_match_the_audio_within_20ms(busy_sample):
    _, sample = busy_sample
    measured = {}
    for event in sample.events:
        onset, offset = onset_offset(sample.pcm[:, event.channel], event.start, event.end)
        assert abs(onset - event.start) <= TOLERANCE, (event, onset)
        assert abs(offset - event.end) <= TOLERANCE, (event, offset)
        measured[id(event)] = (onset, offset)
    turns = [e for e in sample.events if e.kind == "turn"]
    for before, after in zip(turns, turns[1:], strict=False):
        heard_gap = measured[id(after)][0] - measured[id(before)][1]
        assert abs(heard_gap - after.gap) <= TOLERANCE, (before, after, heard_gap)


def test_aizuchi_are_in_the_listeners_voice_inside_the_others_long_turns(busy_sample):
    _, sample = busy_sample
    turns = {e.turn: e for e in sample.events if e.kind == "turn"}
    for event in (e for e in sample.events if e.kind == "aizuchi"):
        answered = turns[event.turn]
        assert event.role != answered.role and event.channel != answered.channel
        assert answered.start < event.start < answered.end
        assert event.text in DuplexConfig().aizuchi.phrases + DuplexConfig().aizuchi.casual_phrases


def _likeness(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two waveforms over their common length: 1 for the same render, far less for another voice."""
    n = min(a.size, b.size)
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_each_aizuchi_is_the_listeners_own_render_never_the_speakers(voices):
    """Both sides say the same phrase: each must hear it in its own voice (the cache was keyed by phrase only)."""
    aizuchi = {"rate_per_minute": 40, "min_turn_seconds": 2.0, "phrases": ["はい"]}
    _, sample = compose(voices, overlap={"share": 0.6}, aizuchi=aizuchi)
    events = [e for e in sample.events if e.kind == "aizuchi"]
    assert {e.role for e in events} == {"user", "assistant"}
    composer = DuplexComposer(
        load_backend("openjtalk", {"max_chars": 200}), RenderConfig(), DuplexConfig(), RATE, False, None
    )
    own = {role: composer._aizuchi("はい", role, voices[role], 11) for role in CHANNELS}
    for event in events:
        channel = sample.pcm[:, event.channel].astype(np.float32) / 32768
        start = round(event.start * RATE)
        heard = channel[start : start + round((event.end - event.start) * RATE)]
        other = next(role for role in CHANNELS if role != event.role)
        mine, theirs = (own[r].audio[own[r].onset : own[r].offset] for r in (event.role, other))
        assert _likeness(heard, mine) > 0.99 and _likeness(heard, theirs) < 0.9, event


def test_alignments_are_sorted_inside_the_audio_and_cover_every_word(busy_sample):
    dialogue, sample = busy_sample
    duration = sample.pcm.shape[0] / RATE
    words = sample.alignment.words
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(0 <= w.start < w.end <= duration for w in words)
    unspoken = re.compile(r"[、。！？\s]")
    for event in sample.events:  # each utterance's words, in order, are exactly its text
        said = "".join(
            w.word
            for w, role in zip(words, sample.word_roles, strict=True)
            if role == event.role and event.start - 0.1 <= w.start < event.end
        )
        assert said == unspoken.sub("", event.text), (event, said)
    for word, role in zip(words, sample.word_roles, strict=True):  # every word lies inside its speaker's audio
        # (an event spans what is audible; a stop consonant's closure before it belongs to the first word)
        assert any(e.role == role and e.start - 0.1 <= word.start and word.end <= e.end + 0.1 for e in sample.events)


def test_the_same_key_and_seed_give_the_same_sample(voices, busy_sample):
    _, again = compose(voices, overlap={"share": 0.6}, aizuchi={"rate_per_minute": 40, "min_turn_seconds": 2.0})
    assert np.array_equal(again.pcm, busy_sample[1].pcm)
    assert again.json_fields() == busy_sample[1].json_fields()


def test_plan_draws_gaps_and_overlaps_as_configured():
    rng = np.random.default_rng(0)
    config = DuplexConfig.model_validate({"overlap": {"share": 0.3}, "gap": {"min": 0.1, "max": 1.0}})
    roles = ["user", "assistant"] * 500
    plan = plan_turns(roles, [3.0] * len(roles), config, rng)
    gaps = [gap for _, gap in plan[1:]]
    overlaps = [g for g in gaps if g < 0]
    assert 0.25 <= len(overlaps) / len(gaps) <= 0.35
    earliest, latest = config.overlap.seconds
    assert all(-latest - 1e-9 <= g <= -earliest + 1e-9 for g in overlaps)
    assert all(0.1 - 1e-9 <= g <= 1.0 + 1e-9 for g in gaps if g >= 0)
    ends = {}
    for (start, _), role in zip(plan, roles, strict=True):  # one speaker never overlaps themself
        assert start >= ends.get(role, 0.0)
        ends[role] = start + 3.0


def test_aizuchi_only_at_pauses_of_long_turns():
    config = DuplexConfig.model_validate({"aizuchi": {"rate_per_minute": 60, "min_turn_seconds": 3.0}})
    pauses = [(2.0, 2.2), (4.0, 4.3), (6.0, 6.1)]
    assert aizuchi_times((0.0, 2.5), pauses, config, np.random.default_rng(1)) == []
    times = aizuchi_times((0.0, 8.0), pauses, config, np.random.default_rng(1))
    assert times and all(any(a <= t <= a + 0.3 for a, _ in pauses) for t in times)
    assert all(b - a >= config.aizuchi.min_spacing_seconds for a, b in zip(times, times[1:], strict=False))


def test_user_channel_augmentation_is_recorded_and_leaves_the_assistant_clean(voices, busy_sample, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.wav", 0.05 * np.sin(np.arange(RATE) * 2 * np.pi * 60 / RATE), RATE)
    _, augmented = compose(
        voices,
        overlap={"share": 0.6},
        aizuchi={"rate_per_minute": 40, "min_turn_seconds": 2.0},
        augment={"enabled": True, "noise_dir": str(noise), "gain_db": [-6, -6], "echo_gain": [0.1, 0.1]},
    )
    clean = busy_sample[1]
    assert np.array_equal(augmented.pcm[:, 0], clean.pcm[:, 0])
    assert not np.array_equal(augmented.pcm[:, 1], clean.pcm[:, 1])
    applied = augmented.json_fields()["augmentation"]
    assert applied["gain_db"] == -6.0 and applied["echo"]["gain"] == 0.1 and applied["noise"]["file"] == "hum.wav"


def test_the_duplex_recipe_runs_and_validates(duplex_output):
    from pipeline.manifest import read_manifest
    from pipeline.shards import read_tar_samples

    koe("validate", str(duplex_output))
    manifest = read_manifest(duplex_output / "manifest.parquet").to_pylist()
    written = [row for row in manifest if row["status"] == "written"]
    assert len(written) >= 5
    assert all(row["reason"] for row in manifest if row["status"] == "rejected")
    for tar in sorted((duplex_output / "shards").glob("*.tar")):
        for sample in read_tar_samples(tar):
            document = json.loads(sample["json"])
            assert document["audio"]["channels"] == 2 and document["channels"] == ["assistant", "user"]
            assert {e["role"] for e in document["timeline"] if e["kind"] == "turn"} == {"user", "assistant"}
            assert document["alignments"]["method"] == "openjtalk-labels"


def test_moshi_export_follows_moshi_finetunes_loading_rules(duplex_output, tmp_path):
    dest = tmp_path / "moshi"
    koe("export", "moshi", str(duplex_output), str(dest))
    entries = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert entries
    for entry in entries:
        audio, rate = sf.read(entry["path"], dtype="int16", always_2d=True)
        assert rate == 24000 and audio.shape[1] == 2  # stereo at Mimi's rate
        assert abs(entry["duration"] - audio.shape[0] / rate) < 1e-3
        alignments = json.load(open(entry["path"][: -len(".wav")] + ".json"))["alignments"]
        starts = [a[1][0] for a in alignments]
        assert starts == sorted(starts)  # moshi-finetune bisects on start times
        for word, (start, end), speaker in alignments:
            assert isinstance(word, str) and word and 0 <= start <= end <= audio.shape[0] / rate
            assert speaker in ("SPEAKER_MAIN", "SPEAKER_OTHER")
            channel = 0 if speaker == "SPEAKER_MAIN" else 1  # the main speaker (the model) is the left channel
            piece = audio[int(start * rate) : int(end * rate) + 1, channel]
            assert np.abs(piece.astype(np.int32)).max() > 40, (word, speaker)


def _tokens_kept(alignments: list, frame_rate: float = 12.5) -> tuple[int, int]:
    """(content tokens emitted, content tokens in all) of the main speaker's text stream, by moshi-finetune's
    interleaver rules: an entry's tokens go out one per frame from the frame it starts in, and an entry that
    starts replaces what is left of the one before. Its SentencePiece model cannot be had here, so a double
    tokenizes as Japanese text does: a leading space piece, then a piece per two characters."""
    main = sorted((a for a in alignments if a[2] == "SPEAKER_MAIN"), key=lambda a: a[1][0])
    tokenized = [(["▁"] + [word[i : i + 2] for i in range(0, len(word), 2)], start) for word, (start, _), _ in main]
    frames = math.ceil(max((a[1][1] for a in main), default=0.0) * frame_rate) + 50
    pending, emitted, index = [], 0, 0
    for t in range(frames):
        while index < len(tokenized) and tokenized[index][1] * frame_rate < t + 1:
            pending = list(tokenized[index][0])
            index += 1
        if pending:
            emitted += pending.pop(0) != "▁"
    return emitted, sum(len(pieces) - 1 for pieces, _ in tokenized)


def test_the_moshi_export_keeps_every_text_token_through_the_interleaver(duplex_output, tmp_path):
    from pipeline.export import phrases

    dest = tmp_path / "moshi"
    koe("export", "moshi", str(duplex_output), str(dest))
    kept = total = word_kept = word_total = 0
    for sample in output_samples(duplex_output):
        words = sample.document["alignments"]["words"]
        exported = json.load(open(dest / "audio" / f"{sample.key}.json"))["alignments"]
        assert [a[0] for a in exported] == [p["word"] for p in phrases(words)]
        assert "".join(a[0] for a in exported if a[2] == "SPEAKER_MAIN") == "".join(
            w["word"] for w in words if w["role"] == "assistant"
        )  # every word is in one phrase, in order
        k, n = _tokens_kept(exported)
        kept, total = kept + k, total + n
        per_word = [[w["word"], [w["start"], w["end"]], "SPEAKER_MAIN"] for w in words if w["role"] == "assistant"]
        k, n = _tokens_kept(per_word)
        word_kept, word_total = word_kept + k, word_total + n
    assert word_kept < word_total  # one entry per word loses tokens, as measured with the real model
    assert kept == total, f"{total - kept} of {total} tokens lost"


def test_jmoshi_export_lists_both_speakers_words_in_time_order(duplex_output, tmp_path):
    dest = tmp_path / "jmoshi"
    koe("export", "jmoshi", str(duplex_output), str(dest))
    wavs = sorted((dest / "audio").glob("*.wav"))
    assert wavs
    for wav in wavs:
        words = json.loads((dest / "text" / f"{wav.stem}.json").read_text())
        assert {w["speaker"] for w in words} == {"A", "B"}
        assert [w["start"] for w in words] == sorted(w["start"] for w in words)
        assert sf.info(wav).channels == 2


def test_export_refuses_an_output_that_is_not_duplex(demo_output, tmp_path):
    result = koe("export", "moshi", str(demo_output), str(tmp_path / "x"), check=False)
    assert result.returncode != 0 and "only duplex outputs" in result.stderr


def test_a_backend_that_cannot_time_words_needs_a_ctc_model_before_any_shard(make_recipe, tmp_path):
    rows = [
        {
            "id": "a",
            "conversations": [{"role": "user", "content": "こんにちは。"}, {"role": "assistant", "content": "はい。"}],
        }
    ]
    recipe = make_recipe(rows, kind="duplex")
    no_model = koe(
        "run",
        str(recipe),
        "--set",
        "tts.backend=bench.latency_tts_double",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert no_model.returncode == 2 and "set duplex.ctc_model_dir" in no_model.stderr
    (tmp_path / "ctc").mkdir()
    empty = koe(
        "run",
        str(recipe),
        "--set",
        "tts.backend=bench.latency_tts_double",
        "--set",
        f"duplex.ctc_model_dir={tmp_path / 'ctc'}",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert empty.returncode == 2 and "lacks config.json, vocab.json" in empty.stderr
    assert not (tmp_path / "o" / "shards").exists()


def test_datasets_loads_duplex_shards_with_stereo_audio_and_alignments(duplex_output):
    import datasets

    shards = sorted(str(p) for p in (duplex_output / "shards").glob("*.tar"))
    rows = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train")
    first = rows[0]
    assert first["json"]["alignments"]["words"][0].keys() == {"word", "start", "end", "role"}
    samples = first["flac"].get_all_samples()
    assert samples.data.shape[0] == 2 and samples.sample_rate == 24000


def test_a_fixed_assistant_voice_speaks_every_sample_and_the_users_are_drawn_from_the_others(tmp_path):
    from pipeline.speakers import assign_speakers

    bank = load_bank(BANK)
    drawn = [assign_speakers(bank, f"key-{i}", 7, "spk03") for i in range(400)]
    assert {d["assistant"].id for d in drawn} == {"spk03"}
    assert {d["user"].id for d in drawn} == {s.id for s in bank.speakers} - {"spk03"}

    recipe = REPO / "recipes" / "duplex_magpie.yaml"
    out = tmp_path / "out"
    koe("run", str(recipe), "--set", "profile=embedded", "--set", "duplex.assistant_speaker=spk03",
        "--limit", "3", "--output", str(out), "--executor", "inline", "--no-progress")  # fmt: skip
    documents = [sample.document for sample in output_samples(out)]
    assert documents and {d["speakers"]["assistant"] for d in documents} == {"spk03"}
    assert all(d["speakers"]["user"] != "spk03" for d in documents)
    wrong = koe("run", str(recipe), "--set", "profile=embedded", "--set", "duplex.assistant_speaker=nobody",
                "--output", str(tmp_path / "other"), "--executor", "inline", check=False)  # fmt: skip
    assert wrong.returncode == 2 and "duplex.assistant_speaker 'nobody' is not a voice of the bank" in wrong.stderr


def test_a_long_turn_is_split_into_inter_pausal_units_at_its_particles(voices):
    from pipeline.kinds.duplex import cut_to_speech, split_into_ipus
    from pipeline.listen import speech_segments
    from pipeline.recipe import IPUConfig

    backend = load_backend("openjtalk", {"max_chars": 200})
    text = "私は先週の週末に友達と一緒に近所の公園で桜を見ながらお弁当を食べました。"
    audio, alignment = backend.synthesize_aligned(text, voices["user"], 0)
    whole = cut_to_speech(audio, alignment, backend.sample_rate)
    split = split_into_ipus(whole, backend.sample_rate, IPUConfig(split_share=1.0), np.random.default_rng(3))
    rate = backend.sample_rate
    added = [(a, b) for a, b in split.alignment.pauses if (a, b) not in whole.alignment.pauses]
    assert len(added) >= 2 and split.audio.size > whole.audio.size
    assert [w.word for w in split.alignment.words] == [w.word for w in whole.alignment.words]
    starts = [w.start for w in split.alignment.words]
    assert starts == sorted(starts)
    for a, b in added:  # silence where the pauses were put, 0.2-0.45 s each
        assert (
            0.2 - 1e-3 <= b - a <= 0.45 + 1e-3 and np.abs(split.audio[round(a * rate) : round(b * rate)]).max() < 1e-6
        )
    heard = lambda piece: len(speech_segments(piece.audio[piece.onset : piece.offset], rate))  # noqa: E731
    assert heard(split) > heard(whole)


def test_the_duplex_recipe_takes_turns_within_the_human_ranges_where_it_can(duplex_output):
    """On the bundled rows (instruction data, OpenJTalk) the fitted defaults put these figures inside J-Moshi's
    human ranges; both-talking share and overlaps per minute stay just outside (see README)."""
    from pipeline.duplex_stats import HUMAN, duplex_stats

    heard = duplex_stats(duplex_output).heard
    for name in ("backchannels_per_minute", "ipu_median_seconds", "overlapped_transfer_share"):
        low, high = HUMAN[name]
        assert low <= getattr(heard, name) <= high, (name, getattr(heard, name))
    assert abs(heard.transfer_offset_median_seconds) < 0.2  # Japanese transfers are fast (Stivers et al. 2009)


def test_aizuchi_fit_the_speakers_register_vary_and_never_follow_a_question(voices, busy_sample):
    from pipeline.kinds.duplex import _not_after_questions
    from pipeline.records import Alignment, WordTiming

    composer = DuplexComposer(
        load_backend("openjtalk", {"max_chars": 200}), RenderConfig(), DuplexConfig(), RATE, False, None
    )
    config = DuplexConfig().aizuchi
    assert composer._register_phrases("散歩は体にも良いと言われています。") == config.phrases
    assert composer._register_phrases("桜が咲いていました。") == config.phrases
    assert composer._register_phrases("昨日さ、公園に行ったんだ。") == config.casual_phrases
    words = [WordTiming("行き", 0.0, 0.4), WordTiming("ます", 0.4, 0.7), WordTiming("か", 0.7, 0.9)]
    asked = Alignment("word", "test", words + [WordTiming("はい", 1.3, 1.6)], [(0.9, 1.3)])
    assert _not_after_questions(asked) == []
    told = Alignment("word", "test", words[:2] + [WordTiming("はい", 1.1, 1.4)], [(0.7, 1.1)])
    assert _not_after_questions(told) == [(0.7, 1.1)]
    _, sample = busy_sample
    for role in CHANNELS:
        said = [e.text for e in sample.events if e.kind == "aizuchi" and e.role == role]
        assert all(a != b for a, b in zip(said, said[1:], strict=False)), said  # never the same twice running


class _FailsOneText:
    """OpenJTalk, failing for one text as a neural TTS fails for a turn (a test double over the real backend)."""

    def __init__(self, failing: str):
        self.inner, self.failing = load_backend("openjtalk", {"max_chars": 200}), failing
        self.name, self.sample_rate, self.max_chars, self.deterministic = "openjtalk", 48000, 200, True

    def describe(self):
        return self.inner.describe()

    def synthesize(self, text, speaker, seed):
        return self.synthesize_aligned(text, speaker, seed)[0]

    def synthesize_aligned(self, text, speaker, seed):
        audio, alignment = self.inner.synthesize_aligned(text, speaker, seed)
        return (audio[:0] if text == self.failing else audio), alignment


def test_a_turn_that_will_not_render_cuts_the_dialogue_there_instead_of_losing_it(voices):
    from pipeline.records import Rejected

    config = DuplexConfig()
    late = make_dialogue()
    composer = DuplexComposer(_FailsOneText(late.turns[2].tts_text), RenderConfig(), config, RATE, False, None)
    sample = composer.compose(late, voices, seed=11)
    assert sample.cut == {"at_turn": 3, "reason": sample.cut["reason"], "turns_dropped": 2}
    assert len(late.turns) == 2 and {e.turn for e in sample.events} <= {0, 1}
    assert sample.json_fields()["cut"]["at_turn"] == 3
    early = make_dialogue()
    composer = DuplexComposer(_FailsOneText(early.turns[1].tts_text), RenderConfig(), config, RATE, False, None)
    with pytest.raises(Rejected, match="turn 2: "):  # no exchange before it: nothing to keep
        composer.compose(early, voices, seed=11)


def test_packed_exports_join_dialogues_to_the_length_a_loader_keeps_and_lose_nothing(duplex_output, tmp_path):
    from pipeline.export import PACK_GAP_SECONDS

    documents = [s.document for s in output_samples(duplex_output)]
    total = sum(d["audio"]["duration"] for d in documents)
    shortest = 30.0
    assert total > 2 * shortest
    dest = tmp_path / "packed"
    koe("export", "jmoshi", str(duplex_output), str(dest), "--min-seconds", str(shortest))
    entries = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert 1 < len(entries) < len(documents) and all(e["duration"] >= shortest for e in entries)
    gaps = (len(documents) - len(entries)) * PACK_GAP_SECONDS
    assert sum(e["duration"] for e in entries) == pytest.approx(total + gaps, abs=0.01)
    words = [json.load(open(dest / "text" / (Path(e["path"]).stem + ".json"))) for e in entries]
    assert sum(len(w) for w in words) == sum(len(d["alignments"]["words"]) for d in documents)
    for entry, transcript in zip(entries, words, strict=True):
        starts = [w["start"] for w in transcript]
        assert starts == sorted(starts) and transcript[-1]["end"] <= entry["duration"]


def test_an_interrupted_turn_stops_at_a_phrase_boundary_and_its_alignment_says_where(voices):
    from pipeline.kinds.duplex import PHRASE_PARTICLES

    full, _ = compose(voices, interruption={"share": 0.0})
    dialogue, sample = compose(voices, interruption={"share": 1.0}, aizuchi={"rate_per_minute": 0})
    turns = [e for e in sample.events if e.kind == "turn"]
    cut = [(a, b) for a, b in zip(turns, turns[1:], strict=False) if a.interrupted]
    assert cut and not turns[-1].interrupted
    words = sample.json_fields()["alignments"]["words"]
    for stopped, interrupter in cut:
        assert interrupter.start < stopped.end <= interrupter.start + 0.4 + 0.05  # it goes on briefly, then yields
        said = [w for w in words if w["role"] == stopped.role and stopped.start - 0.3 <= w["start"] <= stopped.end]
        assert said[-1]["word"] in PHRASE_PARTICLES and said[-1]["end"] <= stopped.end + 0.05
        whole = full.turns[stopped.turn].alignment.words  # the same turn, not interrupted
        assert len(said) < len(whole) and [w["word"] for w in said] == [w.word for w in whole[: len(said)]]
    stopped, interrupter = cut[0]
    resumes = min((e.start for e in turns if e.role == stopped.role and e.start > stopped.end), default=interrupter.end)
    channel = sample.pcm[:, stopped.channel].astype(np.float32) / 32768
    after = channel[round((stopped.end + 0.05) * RATE) : round(min(interrupter.end, resumes) * RATE)]
    assert after.size and np.abs(after).max() < 0.01  # silent once it has stopped
