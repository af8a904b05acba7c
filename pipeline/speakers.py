"""The speaker bank and deterministic speaker assignment.

The bank is a YAML manifest of reference speakers. Neural backends clone `reference_audio` with
its `transcript`; the embedded OpenJTalk backend has one HTS voice, so each speaker also carries an
`openjtalk` variant (pitch and speed) that makes it audibly distinct.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .keys import KEY_PATTERN, derived_int, files_digest
from .safe_yaml import read_yaml_file

EMBEDDED_BANK = Path(__file__).resolve().parents[1] / "speakers" / "bank.yaml"  # in koe's checkout


class OpenJTalkVoice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    half_tone: float = Field(default=0.0, ge=-12, le=12, description="pitch shift in semitones")
    speed: float = Field(default=1.0, gt=0.5, lt=2.0)


class Speaker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=KEY_PATTERN.pattern)
    name: str
    gender: str
    age_band: str
    reference_audio: Path | None = None  # resolved against the bank file's folder
    transcript: str | None = None
    license: str
    source: str
    openjtalk: OpenJTalkVoice = OpenJTalkVoice()


class SpeakerBank(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    speakers: list[Speaker] = Field(min_length=2)

    def by_id(self, speaker_id: str) -> Speaker:
        for speaker in self.speakers:
            if speaker.id == speaker_id:
                return speaker
        raise KeyError(speaker_id)


def bank_digest(path: Path) -> str:
    """What the bank says and the recordings it names: the same wherever the bank is copied to.

    Cached on the files' sizes and modification times, so unchanged recordings are read once.
    """
    files = [path] + [s.reference_audio for s in load_bank(path).speakers if s.reference_audio]
    return files_digest([f for f in files if f.is_file()])


def load_bank(path: Path) -> SpeakerBank:
    """The bank in `path`, its recordings resolved against its folder; a one-line `ValueError` when unusable.

    Parsed once per process while the file is unchanged (cached on its size and modification time): a run
    asks for it when it fingerprints the recipe, in its preflight and in every shard job.
    """
    try:
        stat = Path(path).stat()
    except OSError:
        return _parse_bank(Path(path))  # says in one line what is wrong with the path
    return _cached_bank(Path(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _cached_bank(path: Path, mtime_ns: int, size: int) -> SpeakerBank:
    return _parse_bank(path)


def _parse_bank(path: Path) -> SpeakerBank:
    data = read_yaml_file(path, "speaker bank")
    try:
        bank = SpeakerBank.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid speaker bank: {exc}") from None
    ids = [s.id for s in bank.speakers]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: speaker ids must be unique")
    resolved = [
        s.model_copy(update={"reference_audio": (path.parent / s.reference_audio).resolve()})
        if s.reference_audio
        else s
        for s in bank.speakers
    ]
    return SpeakerBank(speakers=resolved)


REFERENCE_SECONDS = (3.0, 30.0)  # CosyVoice prompts must be at most 30 s; under 3 s clones poorly


def check_speaker(speaker: Speaker, needs_reference: bool) -> list[str]:
    """What is wrong with one bank entry for a backend; empty when it is usable."""
    problems = []
    if not speaker.license.strip():
        problems.append("no license")
    if not speaker.source.strip():
        problems.append("no source")
    if speaker.reference_audio is None:
        if needs_reference:
            problems.append("no reference_audio (voice-cloning backends need a recording)")
    else:
        problems.extend(_check_reference_audio(speaker.reference_audio))
    if (speaker.reference_audio is not None or needs_reference) and not (speaker.transcript or "").strip():
        problems.append("no transcript of the reference audio")
    return problems


def _check_reference_audio(path: Path) -> list[str]:
    import soundfile as sf

    if not path.is_file():
        return [f"reference audio not found: {path}"]
    try:
        info = sf.info(str(path))
    except Exception as exc:
        return [f"reference audio unreadable: {path} ({exc})"]
    low, high = REFERENCE_SECONDS
    if not low <= info.duration <= high:
        return [f"reference audio is {info.duration:.1f} s, needs {low:.0f}-{high:.0f} s: {path}"]
    return []


def check_bank(bank: SpeakerBank, needs_reference: bool) -> dict[str, list[str]]:
    """Problems per speaker id, only for speakers that have some."""
    report = {s.id: check_speaker(s, needs_reference) for s in bank.speakers}
    return {speaker_id: problems for speaker_id, problems in report.items() if problems}


def assign_speakers(bank: SpeakerBank, key: str, seed: int, assistant_id: str | None = None) -> dict[str, Speaker]:
    """User and assistant voices from key and seed alone: stable under resume and regeneration.

    The user is uniform over the bank and the assistant uniform over the others, so the two never
    share a voice and every speaker gets an equal share in expectation. With `assistant_id` the
    assistant is that voice in every sample (as Moshi keeps one), and the user uniform over the others.
    """
    n = len(bank.speakers)
    draw = derived_int(seed, key, size=8)
    if assistant_id is not None:
        fixed = bank.by_id(assistant_id)
        others = [s for s in bank.speakers if s.id != assistant_id]
        return {"user": others[draw % len(others)], "assistant": fixed}
    user = draw % n
    assistant = (user + 1 + (draw // n) % (n - 1)) % n
    return {"user": bank.speakers[user], "assistant": bank.speakers[assistant]}
