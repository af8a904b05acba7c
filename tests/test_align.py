"""Word timings: OpenJTalk's recomputed durations against its real renders, and CTC forced alignment."""

from __future__ import annotations

import json
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyopenjtalk
import pytest

from pipeline.align import (
    AlignerSetupError,
    CTCAligner,
    _specified_duration,
    ctc_forced_align,
    load_wav2vec2_log_probs,
    openjtalk_timing,
    openjtalk_voice_model,
)
from pipeline.audio import resample
from pipeline.records import Alignment
from pipeline.speakers import OpenJTalkVoice, Speaker
from pipeline.tts import load_backend

SENTENCES = [
    "今日は、いい天気ですね。明日も晴れるでしょう！「本当」かな？",
    "二千二十四年三月十五日、午後三時半に東京駅で待ち合わせましょう。",
    "えーと、それはですね、つまり、人工知能というのは、人間の知的な振る舞いを計算機の上で実現しようとする"
    "研究分野のことで、その歴史は千九百五十年代にまでさかのぼります。",
    "ピアノを始めたいのですが、大人からでも上達しますか？",
    "はい。",
]
VOICES = [(0.85, -3.0), (1.0, 0.0), (1.2, 4.0)]  # (speed, half_tone)
PUNCTUATION = set("、。！？「」")


def speaker(speed: float, half_tone: float) -> Speaker:
    return Speaker(
        id="test-voice",
        name="test",
        gender="female",
        age_band="adult",
        license="CC BY 3.0",
        source="pyopenjtalk-plus bundled HTS voice 'mei'",
        openjtalk=OpenJTalkVoice(speed=speed, half_tone=half_tone),
    )


@pytest.fixture(scope="module")
def backend():
    return load_backend("openjtalk", {"max_chars": 200})


# --- OpenJTalk ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("speed", "half_tone"), VOICES)
def test_predicted_length_is_the_rendered_length_and_every_word_is_timed_in_order(backend, speed, half_tone):
    for text in SENTENCES:
        rendered = backend.synthesize(text, speaker(speed, half_tone), seed=0)  # pyopenjtalk.tts, as every render
        timing = openjtalk_timing(text, speed)
        assert timing.labels == pyopenjtalk.extract_fullcontext(text)  # what tts synthesized
        assert timing.num_samples == rendered.size, text
        words = timing.alignment.words
        assert "".join(w.word for w in words) == "".join(c for c in text if c not in PUNCTUATION)
        assert 0 < words[0].start and words[-1].end < rendered.size / backend.sample_rate  # sil at both ends
        assert all(w.start < w.end for w in words)
        assert all(a.end <= b.start for a, b in pairwise(words))
        gaps = [(a.end, b.start) for a, b in pairwise(words) if a.end < b.start]
        assert gaps == timing.alignment.pauses


@pytest.mark.parametrize(("speed", "half_tone"), [(0.85, -3.0), (1.2, 4.0)])
def test_aligned_render_is_the_plain_render(backend, speed, half_tone):
    voice = speaker(speed, half_tone)
    audio, alignment = backend.synthesize_aligned(SENTENCES[0], voice, seed=0)
    np.testing.assert_array_equal(audio, backend.synthesize(SENTENCES[0], voice, seed=0))
    assert alignment == openjtalk_timing(SENTENCES[0], speed).alignment
    assert (alignment.unit, alignment.method) == ("word", "openjtalk-labels")


def test_pauses_are_where_the_punctuation_is():
    alignment = openjtalk_timing("はい、そうです。では、始めましょう！本当に、ありがとう。", 1.0).alignment
    words = {w.word: w for w in alignment.words}
    assert list(words) == "はい そう です で は 始め ましょう 本当に ありがとう".split()
    # the last 。 ends the sentence in silence, which is no pause
    assert [start for start, _ in alignment.pauses] == [
        words[w].end for w in ("はい", "です", "は", "ましょう", "本当に")
    ]


def test_each_label_ends_where_the_engine_ends_it():
    """At speed 1 states are rounded one by one, so a prefix of the labels renders to the predicted prefix length."""
    labels = openjtalk_timing(SENTENCES[0], 1.0).labels
    model = openjtalk_voice_model()
    label_samples = model.state_frames(labels, 1.0).sum(axis=1) * model.frame_period
    for count in (1, 2, 7, 15, 31, len(labels) - 1):
        prefix, rate = pyopenjtalk.synthesize(labels[:count], 1.0, 0.0)
        assert (rate, prefix.size) == (model.sample_rate, label_samples[:count].sum())


@pytest.mark.parametrize(("speed", "half_tone"), [(0.85, -3.0), (1.2, 4.0)])
def test_pauses_are_silent_and_words_are_not(backend, speed, half_tone):
    audio, alignment = backend.synthesize_aligned(
        "はい、そうです。では、始めましょう！本当に、ありがとう。", speaker(speed, half_tone), 0
    )

    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(audio[round(start * 48000) : round(end * 48000)] ** 2)))

    quietest_word = min(rms(w.start, w.end) for w in alignment.words)
    loudest_pause = max(rms(start + 0.01, end - 0.01) for start, end in alignment.pauses)
    assert quietest_word > 0.03 and loudest_pause < 0.001


def test_text_without_speech_gives_no_audio_and_no_words(backend):
    audio, alignment = backend.synthesize_aligned("、。「」", speaker(1.0, 0.0), seed=0)
    assert audio.size == 0 and alignment.words == [] and alignment.pauses == []


def test_stretching_follows_hts_rounding_and_tie_rules():
    ones = np.ones(3)
    # rho = (4 - 3) / 3 and every state floors to 1 frame; all are equally close after one more, the first wins
    assert _specified_duration(ones, ones, 4.0).tolist() == [2, 1, 1]
    # rho = (7 - 5.4) / 3: 2 + 2 + 4 frames are one too many; the third state is closest after giving one up
    assert _specified_duration(np.array([1.2, 1.2, 3.0]), ones, 7.0).tolist() == [2, 2, 3]
    assert _specified_duration(ones, ones, 2.0).tolist() == [1, 1, 1]  # too short: one frame each


def test_voice_model_is_parsed_once():
    assert openjtalk_voice_model() is openjtalk_voice_model()
    assert (openjtalk_voice_model().frame_period, openjtalk_voice_model().sample_rate) == (240, 48000)


# --- CTC ---------------------------------------------------------------------------------------

HIRAGANA = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
    "がぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽゃゅょっ"
)
HIRAGANA_VOCABULARY = {"<pad>": 0, "<unk>": 1, "|": 2} | {c: 3 + i for i, c in enumerate(HIRAGANA + "天気")}


def write_model_folder(folder: Path, vocabulary: dict[str, int]) -> Path:
    """The text files of a wav2vec2 CTC checkpoint (20 ms frames at 16 kHz), without weights."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"conv_stride": [5, 2, 2, 2, 2, 2, 2], "pad_token_id": 0}))
    (folder / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000}))
    (folder / "vocab.json").write_text(json.dumps(vocabulary, ensure_ascii=False))
    return folder


class TimedEmissionsDouble:
    """Stands in for the CTC network only: log-probs that spell known words over their known times.

    Each word's characters share its time span evenly, each ending in one blank frame (as a CTC model
    must between repeated characters); frames outside words are blank.
    """

    FRAME_SECONDS = 320 / 16000

    def __init__(self, vocabulary: dict[str, int], timeline: list[tuple[str, float, float]]):
        self.vocabulary, self.timeline = vocabulary, timeline  # (spelling, start, end) per word

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        frames = audio.size // 320
        best = np.zeros(frames, dtype=np.int64)  # blank
        for spelling, start, end in self.timeline:
            first, last = round(start / self.FRAME_SECONDS), round(end / self.FRAME_SECONDS)
            edges = np.linspace(first, last, len(spelling) + 1).round().astype(int)
            for char, a, b in zip(spelling, edges[:-1], edges[1:], strict=True):
                best[a : max(a + 1, b - 1)] = self.vocabulary[char]
        log_probs = np.full((frames, len(self.vocabulary)), np.log(0.02 / len(self.vocabulary)))
        log_probs[np.arange(frames), best] = np.log(0.98)
        return log_probs


def test_ctc_aligner_recovers_openjtalk_word_times(backend, tmp_path):
    text = "今日は、いい天気ですね。明日も晴れるでしょう。"
    audio, truth = backend.synthesize_aligned(text, speaker(1.0, 0.0), seed=0)
    spelled = "きょう は いい 天気 です ね あした も はれる でしょう".split()
    assert [w.word for w in truth.words] == "今日 は いい 天気 です ね 明日 も 晴れる でしょう".split()
    timeline = [(s, w.start, w.end) for s, w in zip(spelled, truth.words, strict=True)]
    folder = write_model_folder(tmp_path / "ja-ctc", HIRAGANA_VOCABULARY)
    aligner = CTCAligner(folder, log_probs=TimedEmissionsDouble(HIRAGANA_VOCABULARY, timeline))

    found = aligner.align(audio, backend.sample_rate, text)

    assert (found.unit, found.method) == ("word", "ctc:ja-ctc")
    assert [w.word for w in found.words] == [w.word for w in truth.words]
    for got, want in zip(found.words, truth.words, strict=True):
        assert abs(got.start - want.start) <= 0.04 and abs(got.end - want.end) <= 0.04, (got, want)
    assert len(found.pauses) == len(truth.pauses) == 2  # OpenJTalk's pauses are longer than 0.15 s
    for got, want in zip(found.pauses, truth.pauses, strict=True):
        assert np.allclose(got, want, atol=0.04), (got, want)


def test_words_are_spelled_as_written_or_by_their_reading(tmp_path):
    katakana = {"<pad>": 0} | {c: i + 1 for i, c in enumerate("キョウハテンアイ")}
    silent = TimedEmissionsDouble(HIRAGANA_VOCABULARY, [])
    hiragana_aligner = CTCAligner(write_model_folder(tmp_path / "h", HIRAGANA_VOCABULARY), log_probs=silent)
    katakana_aligner = CTCAligner(write_model_folder(tmp_path / "k", katakana), log_probs=silent)

    def spelled(aligner: CTCAligner, text: str) -> list[tuple[str, str]]:
        names = {i: c for c, i in aligner.info.vocabulary.items()}
        return [(word, "".join(names[t] for t in tokens)) for word, tokens in aligner.word_tokens(text)]

    # 天気 is in the vocabulary as written; 今日 and AI (エーアイ, ー not in it) go by their reading
    assert spelled(hiragana_aligner, "今日はAIの天気") == [
        ("今日", "きょう"),
        ("は", "は"),
        ("AI", "えあい"),
        ("の", "の"),
        ("天気", "天気"),
    ]
    # a word the vocabulary cannot spell at all (の) is left out
    assert spelled(katakana_aligner, "今日はAIの天気") == [
        ("今日", "キョウ"),
        ("は", "ハ"),
        ("AI", "アイ"),
        ("天気", "テンキ"),
    ]


def test_forced_alignment_follows_the_planted_path():
    blank, a, b = 0, 1, 2
    path = [blank, a, a, blank, a, b, b, blank, blank]  # a, a (a blank between), b
    log_probs = np.log(np.full((len(path), 3), 0.05))
    log_probs[np.arange(len(path)), path] = np.log(0.9)
    assert ctc_forced_align(log_probs, [a, a, b], blank) == [(1, 3), (4, 5), (5, 7)]
    with pytest.raises(ValueError, match="cannot hold"):
        ctc_forced_align(log_probs[:3], [a, a, b], blank)  # a, a needs a blank between: 4 frames at least


def test_aligner_reports_no_words_when_the_audio_is_too_short(tmp_path):
    folder = write_model_folder(tmp_path / "m", HIRAGANA_VOCABULARY)
    aligner = CTCAligner(folder, log_probs=lambda audio: np.zeros((2, len(HIRAGANA_VOCABULARY))))
    assert aligner.align(np.zeros(800, dtype=np.float32), 16000, "今日はいい天気") == Alignment("word", "ctc:m", [])


def test_missing_model_folder_or_files_stop_early(tmp_path):
    with pytest.raises(AlignerSetupError, match="does not exist"):
        CTCAligner(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignerSetupError, match="config.json, vocab.json, preprocessor_config.json"):
        CTCAligner(tmp_path / "empty")
    with pytest.raises(AlignerSetupError, match="no weights"):
        CTCAligner(write_model_folder(tmp_path / "no-weights", HIRAGANA_VOCABULARY))


def test_missing_transformers_names_the_extra_to_install(tmp_path, monkeypatch):
    folder = write_model_folder(tmp_path / "m", HIRAGANA_VOCABULARY)
    (folder / "model.safetensors").write_bytes(b"")  # never read: the package check comes first
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(AlignerSetupError, match=r"pip install 'koe\[align\]'"):
        CTCAligner(folder)


def test_a_real_ctc_network_loads_from_a_local_folder_and_aligns(backend, tmp_path):
    """A tiny randomly initialised wav2vec2 (nothing downloaded): loading and the model call are real."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "tiny-wav2vec2"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(HIRAGANA_VOCABULARY, ensure_ascii=False))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"))
    features = transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True)
    transformers.Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(HIRAGANA_VOCABULARY),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    transformers.Wav2Vec2ForCTC(config).save_pretrained(folder)
    audio, _ = backend.synthesize_aligned("今日はいい天気です。", speaker(1.0, 0.0), seed=0)

    aligner = CTCAligner(folder)
    frames = load_wav2vec2_log_probs(folder, "cpu")(resample(audio, 48000, 16000)).shape[0]
    found = aligner.align(audio, 48000, "今日はいい天気です。")

    assert abs(frames - audio.size / 48000 / aligner.info.frame_seconds) <= 2
    assert [w.word for w in found.words] == ["今日", "は", "いい", "天気", "です"]
    assert all(0 <= a.start < a.end <= b.start for a, b in pairwise(found.words))
    assert found.words[-1].end <= audio.size / 48000
