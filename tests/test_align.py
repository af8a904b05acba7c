"""Word timings: OpenJTalk's recomputed durations against its real renders, and CTC forced alignment."""

from __future__ import annotations

import itertools
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
    ctc_forced_align,
    load_wav2vec2_log_probs,
    torchaudio_ctc_forced_align,
    torchaudio_forced_align_function,
)
from pipeline.audio import resample
from pipeline.records import Alignment
from pipeline.speakers import OpenJTalkVoice, Speaker
from pipeline.tts import load_backend
from pipeline.tts.openjtalk_timing import _specified_duration, openjtalk_timing, openjtalk_voice_model

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


def test_forced_alignment_of_a_long_text_follows_the_planted_path():
    """Hundreds of targets: more trellis states than an int8 counts."""
    rng = np.random.default_rng(7)
    targets = [int(t) for t in rng.integers(1, 40, 300)]
    labels, spans = [], []
    for token in targets:
        spans.append((len(labels), len(labels) + 2))
        labels += [token, token, 0]
    log_probs = np.log(np.full((len(labels), 40), 0.01))
    log_probs[np.arange(len(labels)), labels] = np.log(0.6)
    assert ctc_forced_align(log_probs, targets, 0) == spans


# --- torchaudio's forced_align against the numpy Viterbi ------------------------------------------
# torchaudio imports on GPU nodes; PyPI's torchaudio 2.11.1 is a CUDA build (it links libtorch_cuda),
# so beside the CPU-only test torch it is missing or fails to load and these tests skip.

needs_torchaudio = pytest.mark.skipif(
    torchaudio_forced_align_function() is None,
    reason="torchaudio.functional.forced_align does not import here (torchaudio missing, or PyPI's CUDA "
    "build beside a CPU-only torch); the numpy Viterbi is used",
)


def viterbi_devices() -> list:
    import torch

    gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU for torchaudio's CUDA kernel")
    return ["cpu", pytest.param("cuda", marks=gpu)]


def random_case(rng: np.random.Generator, dtype: type) -> tuple[np.ndarray, list[int]]:
    """Peaky CTC-like log-probs (blank 0 often wins) and targets with repeated tokens."""
    vocabulary = int(rng.integers(3, 12))
    targets = [int(t) for t in rng.integers(1, vocabulary, int(rng.integers(1, 25)))]
    for i in rng.integers(0, len(targets), 3):  # plant some repeats
        targets.insert(int(i), targets[int(i)])
    repeats = sum(a == b for a, b in pairwise(targets))
    frames = len(targets) + repeats + int(rng.integers(0, 60))
    logits = rng.normal(0, 3, (frames, vocabulary))
    logits[:, 0] += rng.normal(1.5, 1, frames)
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return log_probs.astype(dtype), targets


@needs_torchaudio
@pytest.mark.parametrize("device", viterbi_devices())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torchaudio_and_numpy_viterbi_agree_on_random_log_probs(device, dtype):
    rng = np.random.default_rng(15)
    for _ in range(300):
        log_probs, targets = random_case(rng, dtype)
        assert torchaudio_ctc_forced_align(log_probs, targets, 0, device) == ctc_forced_align(log_probs, targets, 0)
    exact = np.log(np.full((9, 3), 0.05))
    exact[np.arange(9), [0, 1, 1, 0, 1, 2, 2, 0, 0]] = np.log(0.9)  # the planted path
    assert torchaudio_ctc_forced_align(exact, [1, 1, 2], 0, device) == [(1, 3), (4, 5), (5, 7)]
    with pytest.raises(ValueError, match="cannot hold"):
        torchaudio_ctc_forced_align(exact[:3], [1, 1, 2], 0, device)


def path_score(log_probs: np.ndarray, targets: list[int], spans: list[tuple[int, int]], blank: int = 0) -> float:
    labels = np.full(len(log_probs), blank)
    for token, (start, end) in zip(targets, spans, strict=True):
        labels[start:end] = token
    return float(log_probs[np.arange(len(log_probs)), labels].sum())


def collapse(path: tuple[int, ...], blank: int = 0) -> list[int]:
    return [token for i, token in enumerate(path) if token != blank and (i == 0 or path[i - 1] != token)]


def test_numpy_viterbi_finds_a_most_likely_path_even_when_paths_tie():
    """Against every CTC path, on log-probs of three values (so scores tie exactly)."""
    rng = np.random.default_rng(4221)
    for _ in range(150):
        vocabulary, frames = int(rng.integers(2, 5)), int(rng.integers(1, 7))
        targets = [int(t) for t in rng.integers(1, vocabulary, int(rng.integers(1, frames + 1)))]
        if len(targets) + sum(a == b for a, b in pairwise(targets)) > frames:
            continue
        log_probs = rng.integers(-2, 1, (frames, vocabulary)).astype(np.float64)
        best = max(
            float(log_probs[np.arange(frames), path].sum())
            for path in itertools.product(range(vocabulary), repeat=frames)
            if collapse(path) == targets
        )
        assert path_score(log_probs, targets, ctc_forced_align(log_probs, targets, 0)) == best


@needs_torchaudio
@pytest.mark.parametrize("device", viterbi_devices())
def test_torchaudio_never_beats_the_numpy_viterbi_on_exact_ties(device):
    """On exact ties the two may choose different paths; torchaudio 2.11.1's can score lower
    (pytorch/audio#4221), the numpy one is a most likely path."""
    rng = np.random.default_rng(15)
    for _ in range(300):
        log_probs, targets = random_case(rng, np.float64)
        coarse = np.round(log_probs / 4) * 4
        ours = path_score(coarse, targets, ctc_forced_align(coarse, targets, 0))
        assert path_score(coarse, targets, torchaudio_ctc_forced_align(coarse, targets, 0, device)) <= ours


@needs_torchaudio
@pytest.mark.parametrize("device", viterbi_devices())
def test_torchaudio_and_numpy_viterbi_agree_on_a_real_sentence(backend, tmp_path, device):
    """The OpenJTalk render of test_ctc_aligner_recovers_openjtalk_word_times: blank gaps, いい (a repeat),
    and the double's flat log-probs, full of exact ties."""
    text = "今日は、いい天気ですね。明日も晴れるでしょう。"
    audio, truth = backend.synthesize_aligned(text, speaker(1.0, 0.0), seed=0)
    spelled = "きょう は いい 天気 です ね あした も はれる でしょう".split()
    timeline = [(s, w.start, w.end) for s, w in zip(spelled, truth.words, strict=True)]
    emissions = TimedEmissionsDouble(HIRAGANA_VOCABULARY, timeline)
    folder = write_model_folder(tmp_path / "ja-ctc", HIRAGANA_VOCABULARY)
    numpy_aligner = CTCAligner(folder, log_probs=emissions, viterbi="numpy")
    torchaudio_aligner = CTCAligner(folder, device=device, log_probs=emissions, viterbi="torchaudio")
    log_probs = emissions(resample(audio, 48000, 16000))
    targets = [t for _, tokens in numpy_aligner.word_tokens(text) for t in tokens]
    assert any(a == b for a, b in pairwise(targets))
    for dtype in (np.float64, np.float32):
        cast = log_probs.astype(dtype)
        assert torchaudio_ctc_forced_align(cast, targets, 0, device) == ctc_forced_align(cast, targets, 0)
    assert torchaudio_aligner.align(audio, 48000, text) == numpy_aligner.align(audio, 48000, text)


def test_the_viterbi_is_numpy_on_the_cpu_and_torchaudio_on_a_gpu_where_it_imports(tmp_path, monkeypatch):
    import torch

    folder = write_model_folder(tmp_path / "m", HIRAGANA_VOCABULARY)
    silent = TimedEmissionsDouble(HIRAGANA_VOCABULARY, [])
    assert CTCAligner(folder, log_probs=silent).viterbi == "numpy"
    on_gpu = CTCAligner(folder, device="cuda", log_probs=silent).viterbi
    assert on_gpu == ("torchaudio" if torchaudio_forced_align_function() else "numpy")
    for present, device in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda present=present: present)
        assert CTCAligner(folder, device="auto", log_probs=silent).device == device
    with pytest.raises(ValueError, match="viterbi must be"):
        CTCAligner(folder, log_probs=silent, viterbi="fast")
    if torchaudio_forced_align_function() is None:
        with pytest.raises(AlignerSetupError, match="does not import here"):
            CTCAligner(folder, log_probs=silent, viterbi="torchaudio")


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
