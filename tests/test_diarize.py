"""Voice activity, diarization and mono-to-stereo ingest, measured on real OpenJTalk speech.

The dialogue is two pitch/speed variants of OpenJTalk's one voice (-8 semitones at 0.9x and +8 at
1.15x: closer variants such as ±4 are one speaker to resemblyzer), so the truth is known to the
sample. The only double is `PyannotePipelineDouble`, standing in for a loaded pyannote.audio
pipeline at the model boundary: pyannote.audio 4.0.7 resolves beside torch 2.13, but its torchaudio
(PyPI's is a CUDA build) does not import beside the CPU-only test torch. It returns real
pyannote.core Annotations and records where it was moved; `torch.cuda.is_available` is the one
other thing replaced, to make a GPU "present".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyopenjtalk
import pytest
import soundfile as sf
import torch
from pyannote.core import Annotation, Segment

from pipeline.diarize import DiarizerSetupError, PyannoteDiarizer, SpeakerTurn, VadEmbeddingDiarizer, make_diarizer
from pipeline.ingest_mono import ingest_mono
from pipeline.listen import (
    activity_outside,
    intersect_intervals,
    merge_intervals,
    planned_uncovered,
    speech_segments,
    subtract_intervals,
)

RATE = 48000  # OpenJTalk's rate; the ingest writes 24 kHz
VOICE_A = {"half_tone": -8, "speed": 0.9}
VOICE_B = {"half_tone": 8, "speed": 1.15}
VOICE_C = {"half_tone": 0, "speed": 1.0}
SENTENCES_A = [
    "今日はとても良い天気ですね、散歩に行きたくなります。",
    "昨日の会議の資料はもう読みましたか。",
    "駅の近くに新しいパン屋さんができたそうです。",
]
SENTENCES_B = [
    "そうですね、午後から少し雲が出るらしいですよ。",
    "はい、読みましたが少し分かりにくいところがありました。",
    "本当ですか、今度一緒に行ってみましょう。",
]
GAPS = [0.5, 0.3, 0.8, 0.6, -0.5]  # between the six turns; the last one overlaps by 0.5 s
FRAME = 0.02


def say(text: str, voice: dict[str, float]) -> np.ndarray:
    """One sentence, float32 at 48 kHz, with OpenJTalk's leading and trailing silence cut off."""
    samples, rate = pyopenjtalk.tts(text, **voice)
    assert rate == RATE
    audio = (np.clip(samples, -32768, 32767) / 32768).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


@dataclass(frozen=True)
class Dialogue:
    audio: np.ndarray  # mono float32 at RATE
    turns: list[tuple[str, float, float]]  # (speaker "A"/"B", start, end): the truth

    def speech(self, speaker: str) -> list[tuple[float, float]]:
        return merge_intervals((start, end) for who, start, end in self.turns if who == speaker)

    @property
    def overlap(self) -> list[tuple[float, float]]:
        return intersect_intervals(self.speech("A"), self.speech("B"))


@pytest.fixture(scope="module")
def dialogue() -> Dialogue:
    utterances = [("A" if i % 2 == 0 else "B", say(*pair)) for i, pair in enumerate(_script())]
    turns, start = [], 0.3
    for (speaker, samples), gap in zip(utterances, [*GAPS, 0.0], strict=True):
        turns.append((speaker, start, start + len(samples) / RATE))
        start = turns[-1][2] + gap
    audio = np.zeros(round((turns[-1][2] + 0.4) * RATE), dtype=np.float32)
    for (_, samples), (_, begin, _) in zip(utterances, turns, strict=True):
        audio[round(begin * RATE) : round(begin * RATE) + len(samples)] += 0.6 * samples
    return Dialogue(audio, turns)


def _script() -> list[tuple[str, dict[str, float]]]:
    pairs = zip(SENTENCES_A, SENTENCES_B, strict=True)
    return [line for a, b in pairs for line in ((a, VOICE_A), (b, VOICE_B))]


@pytest.fixture(scope="module")
def vad_embedding() -> VadEmbeddingDiarizer:
    return VadEmbeddingDiarizer()


def frame_rms(audio: np.ndarray, rate: int) -> np.ndarray:
    """RMS per 20 ms frame, per channel: (frames, channels)."""
    size = round(FRAME * rate)
    frames = audio[: len(audio) // size * size].reshape(-1, size, *audio.shape[1:])
    return np.sqrt(np.mean(np.square(frames.astype(np.float64)), axis=1))


def frames_in(intervals: list[tuple[float, float]], count: int) -> np.ndarray:
    mask = np.zeros(count, dtype=bool)
    for start, end in intervals:
        mask[round(start / FRAME) : round(end / FRAME)] = True
    return mask


# --- intervals ------------------------------------------------------------------------------------


def test_interval_algebra():
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2), (5, 5)]) == [(0, 2), (3, 4)]
    assert subtract_intervals([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    assert intersect_intervals([(0, 2), (4, 6)], [(1, 5)]) == [(1, 2), (4, 5)]


def test_activity_outside_and_planned_uncovered():
    planned = [(1.0, 3.0), (5.0, 6.0)]
    found = [(0.95, 3.05), (4.0, 4.5), (5.0, 5.4)]
    assert activity_outside(found, planned, tolerance=0.1) == [(4.0, 4.5)]  # the stray speech only
    assert planned_uncovered(planned, found, tolerance=0.1) == [(5.5, 6.0)]  # the cut-off end
    assert activity_outside(planned, planned, 0.0) == [] and planned_uncovered(planned, planned, 0.0) == []


# --- voice activity -------------------------------------------------------------------------------


def test_speech_segments_finds_nothing_in_silence_and_keeps_torch_threads():
    threads = torch.get_num_threads()  # the first call imports silero_vad, which sets one thread
    assert speech_segments(np.zeros(2 * 24000, dtype=np.float32), 24000) == []
    assert torch.get_num_threads() == threads
    assert speech_segments(np.zeros(0, dtype=np.float32), 24000) == []


def test_speech_segments_brackets_a_sentence():
    sentence = say(SENTENCES_A[1], VOICE_A)
    audio = np.concatenate([np.zeros(RATE // 2), sentence, np.zeros(RATE)]).astype(np.float32)
    segments = speech_segments(audio, RATE)
    planned = [(0.5, 0.5 + len(sentence) / RATE)]
    assert segments and abs(segments[0][0] - 0.5) < 0.1 and abs(segments[-1][1] - planned[0][1]) < 0.15
    assert activity_outside(segments, planned, tolerance=0.2) == []  # silero ends a segment ~0.1 s late
    assert sum(end - start for start, end in planned_uncovered(planned, segments, tolerance=0.2)) < 0.3


def test_speech_segments_per_channel_of_a_composed_stereo_dialogue(dialogue):
    stereo = np.zeros((len(dialogue.audio), 2), dtype=np.float32)
    for channel, speaker in enumerate("AB"):
        for start, end in dialogue.speech(speaker):
            span = slice(round(start * RATE), round(end * RATE))
            stereo[span, channel] = dialogue.audio[span]  # the overlap lands on both, as it is mixed
    for channel, speaker in enumerate("AB"):
        segments = speech_segments(stereo[:, channel], RATE)
        assert activity_outside(segments, dialogue.speech(speaker), tolerance=0.2) == []
        missed = planned_uncovered(dialogue.speech(speaker), segments, tolerance=0.2)
        assert sum(end - start for start, end in missed) < 0.5
        other = "B" if speaker == "A" else "A"
        assert activity_outside(segments, dialogue.speech(other), tolerance=0.2)  # a leak would show
    with pytest.raises(ValueError, match="mono"):
        speech_segments(stereo, RATE)


# --- the VAD + embedding diarizer -----------------------------------------------------------------


def test_vad_embedding_diarizer_separates_two_voices(dialogue, vad_embedding):
    exclusive, full = vad_embedding.diarize(dialogue.audio, RATE)
    assert exclusive == full  # no overlap detection
    assert {turn.speaker for turn in exclusive} == {"SPEAKER_00", "SPEAKER_01"}
    count = round(len(dialogue.audio) / RATE / FRAME)
    found = {
        label: frames_in([(t.start, t.end) for t in exclusive if t.speaker == label], count)
        for label in ("SPEAKER_00", "SPEAKER_01")
    }
    for speaker, label in (("A", "SPEAKER_00"), ("B", "SPEAKER_01")):  # A talks first
        truth = frames_in(subtract_intervals(dialogue.speech(speaker), dialogue.overlap), count)
        assert (truth & found[label]).sum() / truth.sum() >= 0.9


# --- ingest-mono ----------------------------------------------------------------------------------


def test_ingest_mono_puts_each_voice_on_its_own_channel(dialogue, vad_embedding, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "dialogue.wav", dialogue.audio, RATE)
    sf.write(inputs / "monologue.flac", say(SENTENCES_A[0], VOICE_A), RATE)
    sf.write(inputs / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    (inputs / "broken.flac").write_bytes(b"fLaC but not really")
    dest = tmp_path / "out"

    summary = ingest_mono(inputs, dest, vad_embedding)

    rows = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert rows == summary.rows and summary.kept == 0
    by_source = {Path(row["source"]).name: row for row in rows}
    assert list(by_source) == ["broken.flac", "dialogue.wav", "empty.wav", "monologue.flac"]
    assert by_source["broken.flac"]["status"] == "failed" and "cannot read" in by_source["broken.flac"]["reason"]
    assert by_source["empty.wav"]["status"] == "rejected" and "empty" in by_source["empty.wav"]["reason"]
    assert by_source["monologue.flac"]["status"] == "rejected"
    assert by_source["monologue.flac"]["reason"] == "fewer than two speakers (found 1)"
    assert by_source["dialogue.wav"]["status"] == "written" and by_source["dialogue.wav"]["path"] == "dialogue.flac"
    assert sorted(p.name for p in dest.iterdir()) == ["dialogue.flac", "dialogue.json", "manifest.jsonl"]

    stereo, rate = sf.read(dest / "dialogue.flac", dtype="float32")
    assert stereo.shape[1] == 2 and rate == 24000 and sf.info(dest / "dialogue.flac").subtype == "PCM_16"
    record = json.loads((dest / "dialogue.json").read_text())
    assert record["diarizer"] == "vad-embedding" and record["other_speakers"] == [] and record["overlaps"] == []
    assert record["diarizer_settings"] == vad_embedding.describe() and record["diarizer_settings"]["device"] == "cpu"
    assert [c["speaker"] for c in record["channels"]] == ["SPEAKER_00", "SPEAKER_01"]  # A talks more
    assert len(record["turns"]) == len(record["exclusive_turns"]) >= 6

    # Channel 0 must carry A and channel 1 B: share of each voice's speech frames (20 ms) where its
    # channel holds the mix and the other channel is near silent. The overlap, which this diarizer
    # cannot see, is left out.
    rms = frame_rms(stereo, rate)
    mono_rms = frame_rms(dialogue.audio, RATE)[: len(rms)]
    speech = mono_rms > 0.003
    for channel, speaker in enumerate("AB"):
        truth = frames_in(subtract_intervals(dialogue.speech(speaker), dialogue.overlap), len(rms)) & speech
        correct = (rms[:, channel] > 0.7 * mono_rms) & (rms[:, 1 - channel] < 0.05 * mono_rms)
        assert (correct & truth).sum() / truth.sum() >= 0.9

    flac_bytes = (dest / "dialogue.flac").read_bytes()
    again = ingest_mono(inputs, dest, vad_embedding)
    assert again.kept == 1 and (dest / "dialogue.flac").read_bytes() == flac_bytes
    assert [row["status"] for row in again.rows] == [row["status"] for row in rows]


def test_ingest_mono_refuses_bad_arguments(tmp_path):
    diarizer = make_diarizer("vad-embedding")
    with pytest.raises(ValueError, match="does not exist"):
        ingest_mono(tmp_path / "missing", tmp_path / "out", diarizer)
    with pytest.raises(ValueError, match="no .wav or .flac"):
        ingest_mono(tmp_path, tmp_path / "out", diarizer)
    for name in ("a.wav", "a.flac"):
        sf.write(tmp_path / name, np.zeros(100), 16000)
    with pytest.raises(ValueError, match="share a file stem"):
        ingest_mono(tmp_path, tmp_path / "out", diarizer)
    with pytest.raises(ValueError, match="would overwrite"):
        ingest_mono([tmp_path / "a.flac"], tmp_path, diarizer)


# --- pyannote.audio, up to loading, and the overlap and third-speaker rules -----------------------


@dataclass(frozen=True)
class DiarizeOutputDouble:
    """The shape of pyannote.audio 4's DiarizeOutput."""

    speaker_diarization: Annotation
    exclusive_speaker_diarization: Annotation


class PyannotePipelineDouble:
    """Stands in for a loaded pyannote.audio pipeline: returns the given Annotations, records its calls
    and the devices it was moved to (pyannote.audio 4's `Pipeline.to` takes a torch.device, returns itself)."""

    def __init__(self, full: Annotation | None = None, exclusive: Annotation | None = None):
        self.output = DiarizeOutputDouble(full or Annotation(), exclusive or Annotation())
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.moves: list[torch.device] = []

    def __call__(self, file: dict[str, Any], **kwargs: Any) -> DiarizeOutputDouble:
        self.calls.append((file, kwargs))
        return self.output

    def to(self, device: torch.device) -> PyannotePipelineDouble:
        if not isinstance(device, torch.device):
            raise TypeError(f"`device` must be an instance of `torch.device`, got `{type(device).__name__}`")
        self.moves.append(device)
        return self


def annotation(turns: list[tuple[str, float, float]]) -> Annotation:
    result = Annotation()
    for speaker, start, end in turns:
        result[Segment(start, end)] = speaker
    return result


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "community-1"
    folder.mkdir()
    (folder / "config.yaml").write_text("pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n")
    return folder


def test_pyannote_diarizer_fails_early_with_what_to_do(tmp_path, checkpoint):
    with pytest.raises(DiarizerSetupError, match="does not exist: clone"):
        PyannoteDiarizer(tmp_path / "nowhere")
    with pytest.raises(DiarizerSetupError, match="has no config.yaml"):
        PyannoteDiarizer(tmp_path)
    with pytest.raises(DiarizerSetupError, match="does not exist"):
        make_diarizer("pyannote", checkpoint=tmp_path / "nowhere", num_speakers=2)
    with pytest.raises(ValueError, match="unknown diarizer"):
        make_diarizer("whisper")
    with pytest.raises(ValueError, match="checkpoint"):
        make_diarizer("vad-embedding", checkpoint=checkpoint)


def test_pyannote_diarizer_says_how_to_install_pyannote_audio(checkpoint):
    try:
        import pyannote.audio  # noqa: F401
    except (ImportError, OSError):  # OSError: installed, but its torchaudio needs a CUDA torch
        pass
    else:
        pytest.skip("pyannote.audio imports here")
    with pytest.raises(DiarizerSetupError, match=r"koe\[pyannote\].*CUDA build"):
        PyannoteDiarizer(checkpoint)


def gpu_present(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: present)


def test_pyannote_pipeline_moves_to_the_gpu_when_there_is_one(checkpoint, monkeypatch):
    gpu_present(monkeypatch, True)
    double = PyannotePipelineDouble()
    diarizer = make_diarizer("pyannote", checkpoint=checkpoint, load_pipeline=lambda folder: double)
    assert double.moves == [torch.device("cuda")]
    described = diarizer.describe()
    assert described.pop("model").startswith("pyannote.audio ")  # its version, or "(not installed)" here
    assert described == {"name": "pyannote", "checkpoint": str(checkpoint), "device": "cuda"}
    forced = PyannotePipelineDouble()
    PyannoteDiarizer(checkpoint, device="cuda", load_pipeline=lambda folder: forced)
    assert forced.moves == [torch.device("cuda")]
    kept = PyannotePipelineDouble()
    on_cpu = PyannoteDiarizer(checkpoint, device="cpu", num_speakers=2, load_pipeline=lambda folder: kept)
    assert kept.moves == [] and on_cpu.describe()["device"] == "cpu" and on_cpu.describe()["num_speakers"] == 2


def test_pyannote_pipeline_stays_on_the_cpu_without_a_gpu(checkpoint, monkeypatch):
    gpu_present(monkeypatch, False)
    double = PyannotePipelineDouble()
    diarizer = PyannoteDiarizer(checkpoint, load_pipeline=lambda folder: double)
    assert double.moves == [] and diarizer.describe()["device"] == "cpu"
    loaded = []
    with pytest.raises(DiarizerSetupError, match="device cuda.*no GPU"):
        PyannoteDiarizer(checkpoint, device="cuda", load_pipeline=lambda folder: loaded.append(folder))
    assert loaded == []  # refused before loading anything
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        make_diarizer("pyannote", checkpoint=checkpoint, device="gpu")


def test_vad_embedding_diarizer_describes_itself_and_takes_no_device(vad_embedding):
    assert vad_embedding.describe() == {
        "name": "vad-embedding",
        "device": "cpu",
        "num_speakers": None,
        "max_speakers": 4,
        "threshold": 0.3,
        "window": 1.5,
        "hop": 0.75,
        "smoothing": 0.5,
    }
    with pytest.raises(ValueError, match="device"):
        make_diarizer("vad-embedding", device="cuda")


def test_pyannote_diarizer_passes_audio_in_memory_and_converts_annotations(checkpoint):
    full = annotation([("SPEAKER_01", 2.0, 3.5), ("SPEAKER_00", 0.5, 2.5)])
    exclusive = annotation([("SPEAKER_00", 0.5, 2.0), ("SPEAKER_01", 2.0, 3.5)])
    double = PyannotePipelineDouble(full, exclusive)
    diarizer = PyannoteDiarizer(checkpoint, num_speakers=2, load_pipeline=lambda folder: double)
    audio = (0.1 * np.sin(np.arange(4 * 24000) / 7)).astype(np.float32)

    got_exclusive, got_full = diarizer.diarize(audio, 24000)

    assert got_full == [SpeakerTurn("SPEAKER_00", 0.5, 2.5), SpeakerTurn("SPEAKER_01", 2.0, 3.5)]
    assert got_exclusive == [SpeakerTurn("SPEAKER_00", 0.5, 2.0), SpeakerTurn("SPEAKER_01", 2.0, 3.5)]
    [(file, kwargs)] = double.calls
    assert kwargs == {"num_speakers": 2} and file["sample_rate"] == 16000
    assert file["waveform"].dtype == torch.float32 and tuple(file["waveform"].shape) == (1, 4 * 16000)
    assert abs(float(file["waveform"].abs().max()) - 0.1) < 0.01

    ranged = PyannoteDiarizer(checkpoint, min_speakers=2, max_speakers=3, load_pipeline=lambda folder: double)
    ranged.diarize(audio, 24000)
    assert double.calls[-1][1] == {"min_speakers": 2, "max_speakers": 3}


def test_ingest_mono_copies_overlaps_to_both_channels_and_silences_a_third_speaker(dialogue, checkpoint, tmp_path):
    third = say("すみません、ちょっと失礼します。", VOICE_C)
    third_start = len(dialogue.audio) / RATE
    audio = np.concatenate([dialogue.audio, 0.6 * third, np.zeros(RATE // 4, dtype=np.float32)])
    third_turn = ("SPEAKER_02", third_start, third_start + len(third) / RATE)
    labels = {"A": "SPEAKER_00", "B": "SPEAKER_01"}
    full = annotation([(labels[who], start, end) for who, start, end in dialogue.turns] + [third_turn])
    exclusive = annotation(
        [(labels[who], start, end) for who, start, end in dialogue.turns if who == "A"]
        + [(labels["B"], *interval) for interval in subtract_intervals(dialogue.speech("B"), dialogue.overlap)]
        + [third_turn]
    )
    diarizer = PyannoteDiarizer(checkpoint, load_pipeline=lambda folder: PyannotePipelineDouble(full, exclusive))
    source = tmp_path / "three.wav"
    sf.write(source, audio, RATE)

    summary = ingest_mono([source], tmp_path / "out", diarizer)

    assert summary.rows[0]["status"] == "written" and summary.rows[0]["reason"] == "1 other speaker(s) silenced"
    record = json.loads((tmp_path / "out" / "three.json").read_text())
    [(overlap_start, overlap_end)] = dialogue.overlap
    assert record["overlaps"] == [{"start": round(overlap_start, 3), "end": round(overlap_end, 3)}]
    [other] = record["other_speakers"]
    assert other["speaker"] == "SPEAKER_02" and other["handling"] == "silenced on both channels"
    assert other["seconds"] == pytest.approx(len(third) / RATE, abs=0.002)
    assert [c["speaker"] for c in record["channels"]] == ["SPEAKER_00", "SPEAKER_01"]

    stereo, rate = sf.read(tmp_path / "out" / "three.flac", dtype="float32")
    rms = frame_rms(stereo, rate)
    mono_rms = frame_rms(audio, RATE)[: len(rms)]
    speech = mono_rms > 0.003
    inner = [(overlap_start + 0.03, overlap_end - 0.03)]  # away from the fades
    both = frames_in(inner, len(rms)) & speech
    assert both.sum() > 10 and np.all(rms[both] > 0.9 * mono_rms[both, None])
    silenced = frames_in([(third_turn[1] + 0.03, third_turn[2] - 0.03)], len(rms)) & speech
    assert silenced.sum() > 30 and np.all(rms[silenced] < 1e-4)


# --- the command line ------------------------------------------------------------------------------


def test_koe_ingest_mono_on_the_command_line(dialogue, tmp_path):
    from tests.conftest import koe

    source = tmp_path / "in"
    source.mkdir()
    sf.write(source / "talk.wav", dialogue.audio, RATE)
    result = koe("ingest-mono", str(source), str(tmp_path / "out"), "--num-speakers", "2")
    assert "1 written" in result.stdout
    audio, rate = sf.read(tmp_path / "out" / "talk.flac", always_2d=True)
    assert rate == 24000 and audio.shape[1] == 2
    missing = koe("ingest-mono", str(source), str(tmp_path / "out2"), "--diarizer", "pyannote", check=False)
    assert missing.returncode == 2 and "checkpoint" in missing.stderr and "Traceback" not in missing.stderr
    wrong = koe("ingest-mono", str(source), str(tmp_path / "out3"), "--device", "cuda", check=False)
    assert wrong.returncode == 2 and "'vad-embedding': got an unexpected keyword argument 'device'" in wrong.stderr
