"""Kind `duplex`: both sides of a dialogue on one timeline, the assistant on the left channel, the user on the right.

Rendering turns one by one gives no turn-taking, so this stage designs it. Every voiced turn is
rendered with its words timed, cut to its speech (first word to last) and placed on its speaker's
channel: after a gap drawn from `duplex.gap`, or, for a share of the turns, before the other has
finished (`duplex.overlap`). Inside the other's longer turns the listener says aizuchi (はい, うん,
なるほど …) at phrase boundaries, the pauses the backend or the aligner found. All draws come from
one generator seeded by the sample's seed, so a key and seed always give the same plan; every
event is recorded in the sample JSON, and each channel is checked with a voice-activity detector
against the plan before the sample is kept.

Turns and aizuchi alike pass the render stage's loudness normalization (`render.loudness_lufs`),
so both voices and their backchannels are level-matched; nothing on either channel is clipped.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np

from ..audio import peak_safe, to_int16
from ..augment import augment_user_channel
from ..keys import derived_int
from ..listen import activity_outside, speech_segments
from ..qc import QualityGate
from ..readings import kana_reading
from ..recipe import DuplexConfig, GapConfig, IPUConfig, Recipe, RenderConfig
from ..records import Alignment, Dialogue, Rejected, Turn, WordTiming
from ..render import Aligner, render_turn
from ..speakers import Speaker, SpeakerBank, assign_speakers, load_bank
from ..timing import timed
from ..tts import AligningBackend, TTSBackend, times_words
from .speech import SpeechKind, SpeechRowMaker

CHANNELS = {"assistant": 0, "user": 1}  # moshi-finetune and J-Moshi: the model left, its user right
EDGE_SECONDS = 0.03  # kept before the first word and after the last when a render is cut to its speech
FADE_SECONDS = 0.005  # at the cut edges, against clicks
AUDIBLE_LEVEL = 10 ** (-58 / 20)  # full scale = 1: where an utterance starts and ends on the timeline
MIN_SAME_CHANNEL_GAP = 0.1  # between two things one speaker says
AIZUCHI_EDGE_SECONDS = 1.0  # no aizuchi this close to the start of the other's turn
MIN_HEARD_SHARE = 0.5  # of a planned utterance that the detector must hear as speech
START_SILENCE_SECONDS = 0.2
MIN_KEPT_TURNS = 2  # a dialogue cut at a turn that cannot be rendered keeps at least one exchange
# particles that end a phrase (bunsetsu), where a Japanese listener's aizuchi falls even without a pause
QUESTION_ENDINGS = frozenset({"か", "？", "?"})  # a pause after these follows a question
POLITE = re.compile(r"です|でし|ます|まし|ございます|ください")  # a speaker who talks politely gets polite aizuchi
PHRASE_PARTICLES = frozenset({"は", "が", "を", "に", "で", "と", "も", "ね", "よ", "な", "から", "けど", "ので"})
END_SILENCE_SECONDS = 0.3


@dataclass
class Event:
    """One thing said on the timeline; `turn` is the dialogue turn it is, or the one it answers (aizuchi)."""

    kind: str  # "turn" | "aizuchi"
    role: str
    channel: int
    start: float
    end: float
    text: str
    turn: int
    gap: float | None = None  # turns: start minus the previous turn's end; negative = overlap
    interrupted: bool = False  # turns: cut off by the next turn, stopped at a phrase boundary (its words end there)


@dataclass
class Placed:
    """A rendered utterance cut around its speech; words are timed from the start of `audio`.

    The timeline places what is audible: a stop consonant's closure or a quiet onset before the
    first word is heard as part of the silence, so `onset`/`offset` are the first and last audible
    samples, not the first word's start.
    """

    audio: np.ndarray
    alignment: Alignment
    onset: int  # first audible sample
    offset: int  # one past the last audible sample

    def seconds(self, sample_rate: int) -> float:
        return (self.offset - self.onset) / sample_rate


@dataclass
class DuplexSample:
    pcm: np.ndarray  # int16, (frames, 2)
    events: list[Event]
    alignment: Alignment  # both channels, words sorted by start
    word_roles: list[str]  # the role of each word in `alignment`
    augmentation: dict | None
    cut: dict | None = None  # where the dialogue was cut because a turn could not be rendered, and why

    def json_fields(self) -> dict:
        """What the sample JSON records of the composition (a fixed set of fields for every sample)."""
        return {
            "channels": [role for role, _ in sorted(CHANNELS.items(), key=lambda item: item[1])],
            "timeline": [asdict(event) for event in self.events],
            "alignments": {
                "unit": self.alignment.unit,
                "method": self.alignment.method,
                "words": [  # records, not moshi's [word, [start, end], speaker]: datasets needs one type per field
                    {"word": w.word, "start": round(w.start, 6), "end": round(w.end, 6), "role": role}
                    for w, role in zip(self.alignment.words, self.word_roles, strict=True)
                ],
            },
            "augmentation": self.augmentation,
            "cut": self.cut,
        }


def _faded(audio: np.ndarray, sample_rate: int, start: bool = True, end: bool = True) -> np.ndarray:
    """A float copy of `audio` faded in at its start and out at its end, against clicks at a cut."""
    piece = audio.astype(np.float32)
    fade = min(int(FADE_SECONDS * sample_rate), piece.size // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        if start:
            piece[:fade] *= ramp
        if end:
            piece[-fade:] *= ramp[::-1]
    return piece


def cut_to_speech(audio: np.ndarray, alignment: Alignment, sample_rate: int) -> Placed:
    """The render from just before its first word to just after its last, faded at both cuts."""
    first, last = alignment.words[0].start, alignment.words[-1].end
    begin = max(0, int(round((first - EDGE_SECONDS) * sample_rate)))
    end = min(audio.size, int(round((last + EDGE_SECONDS) * sample_rate)))
    piece = _faded(audio[begin:end], sample_rate)
    audible = np.flatnonzero(np.abs(piece) > AUDIBLE_LEVEL)
    if audible.size == 0:
        raise Rejected("nothing audible in the render")
    return Placed(piece, alignment.shifted(-begin / sample_rate), int(audible[0]), int(audible[-1]) + 1)


def draw_gap(rng: np.random.Generator, config: GapConfig) -> float:
    if config.distribution == "uniform":
        value = rng.uniform(config.min, config.max)
    elif config.distribution == "normal":
        value = rng.normal(config.mean, config.sd)
    else:  # lognormal with the configured mean and standard deviation
        sigma2 = math.log(1 + (config.sd / config.mean) ** 2)
        value = rng.lognormal(math.log(config.mean) - sigma2 / 2, math.sqrt(sigma2))
    return float(min(max(value, config.min), config.max))


def plan_turns(
    roles: list[str],
    lengths: list[float],
    config: DuplexConfig,
    rng: np.random.Generator,
    interrupting: frozenset[int] = frozenset(),
) -> list[tuple[float, float | None]]:
    """(start, gap) per turn, the first without a gap: a drawn gap after the previous turn, or for a share
    of the turns an overlap with it; never on top of the same speaker's previous turn, never before the
    other has said a third of theirs. A turn in `interrupting` starts `interruption.overlap_seconds` before
    the end of the one it cuts off (already stopped at the phrase boundary where it yields)."""
    plan: list[tuple[float, float]] = []
    channel_free = dict.fromkeys(CHANNELS, 0.0)
    previous_start = previous_end = 0.0
    for index, (role, length) in enumerate(zip(roles, lengths, strict=True)):
        if index == 0:
            start = START_SILENCE_SECONDS
        elif index in interrupting:
            start = previous_end - rng.uniform(*config.interruption.overlap_seconds)
        elif role != roles[index - 1] and rng.random() < config.overlap.share:
            early = rng.uniform(*config.overlap.seconds)
            start = max(previous_end - early, previous_start + (previous_end - previous_start) / 3)
        else:
            start = previous_end + draw_gap(rng, config.gap)
        start = max(start, channel_free[role] + (MIN_SAME_CHANNEL_GAP if index else 0.0))
        plan.append((start, start - previous_end if index else None))
        previous_start, previous_end = start, start + length
        channel_free[role] = previous_end
    return plan


def aizuchi_times(
    speaking: tuple[float, float],
    pauses: list[tuple[float, float]],
    config: DuplexConfig,
    rng: np.random.Generator,
    particle_ends: list[float] | None = None,
) -> list[float]:
    """When the listener starts an aizuchi inside a turn: at some of its phrase boundaries (its pauses and,
    with `aizuchi.after_particles`, the ends of its particles), as many as the rate gives."""
    start, end = speaking
    aizuchi = config.aizuchi
    if end - start < aizuchi.min_turn_seconds:
        return []
    expected = aizuchi.rate_per_minute * (end - start) / 60
    count = int(expected) + int(rng.random() < expected - int(expected))
    boundaries = [a for a, _ in pauses]
    if aizuchi.after_particles:
        boundaries += particle_ends or []
    candidates = sorted(t for t in boundaries if start + AIZUCHI_EDGE_SECONDS <= t <= end - EDGE_SECONDS)
    chosen: list[float] = []
    for index in rng.permutation(len(candidates)):
        if len(chosen) == count:
            break
        at = candidates[index] + rng.uniform(*aizuchi.delay_seconds)
        if all(abs(at - other) >= aizuchi.min_spacing_seconds for other in chosen):
            chosen.append(at)
    return sorted(chosen)


def _not_after_questions(alignment: Alignment) -> list[tuple[float, float]]:
    """The pauses of a turn that do not follow a question: a question asks for an answer, not an aizuchi."""
    kept = []
    for a, b in alignment.pauses:
        before = [w for w in alignment.words if w.end <= a + 0.01]
        if not before or before[-1].word not in QUESTION_ENDINGS:
            kept.append((a, b))
    return kept


def stop_at_a_phrase_boundary(piece: Placed, sample_rate: int, rng: np.random.Generator) -> Placed | None:
    """The turn cut off after one of its phrase-final particles (past its first third, a second before its
    end): the words after it are not said. None when it has no such boundary."""
    words = piece.alignment.words
    if len(words) < 2:
        return None
    first, last = words[0].start, words[-1].end
    candidates = [
        w
        for w in words[:-1]
        if w.word in PHRASE_PARTICLES and w.end - first >= (last - first) / 3 and last - w.end >= 1.0
    ]
    if not candidates:
        return None
    stop = candidates[int(rng.integers(len(candidates)))]
    audio = _faded(piece.audio[: int(round((stop.end + EDGE_SECONDS) * sample_rate))], sample_rate, start=False)
    audible = np.flatnonzero(np.abs(audio) > AUDIBLE_LEVEL)
    if audible.size == 0 or audible[-1] < piece.onset:
        return None
    kept_words = [w for w in words if w.end <= stop.end + 1e-9]
    kept_pauses = [(a, b) for a, b in piece.alignment.pauses if b <= stop.end]
    alignment = Alignment(piece.alignment.unit, piece.alignment.method, kept_words, kept_pauses)
    return Placed(audio.astype(piece.audio.dtype), alignment, piece.onset, int(audible[-1]) + 1)


def split_into_ipus(piece: Placed, sample_rate: int, config: IPUConfig, rng: np.random.Generator) -> Placed:
    """The turn with pauses put at a share of its phrase boundaries (the ends of phrase-final particles), so a
    long turn comes out in inter-pausal units as people speak it: silence inserted between the two words,
    the cut faded on both sides, and everything after it moved later."""
    words = piece.alignment.words
    inserted: list[tuple[int, int]] = []  # (sample of the render where silence goes in, samples of silence)
    last_break = words[0].start if words else 0.0
    for word, following in zip(words, words[1:], strict=False):
        if following.start - word.end > 0.05:  # a pause of the render's own
            last_break = following.start
        elif (
            word.word in PHRASE_PARTICLES
            and min(word.end - last_break, words[-1].end - word.end) >= config.min_unit_seconds
            and rng.random() < config.split_share
        ):
            silence = int(round(rng.uniform(*config.pause_seconds) * sample_rate))
            inserted.append((int(round(word.end * sample_rate)), silence))
            last_break = word.end
    if not inserted:
        return piece
    cuts = [0, *(at for at, _ in inserted), piece.audio.size]
    chunks = []
    for index, (begin, end) in enumerate(pairwise(cuts)):
        chunks.append(_faded(piece.audio[begin:end], sample_rate, start=index > 0, end=index < len(inserted)))
        if index < len(inserted):
            chunks.append(np.zeros(inserted[index][1], dtype=np.float32))

    def moved(seconds: float, after_a_silence: bool) -> float:
        """Where a moment of the render is once the silences are in: a start at a cut comes after the silence
        put there, an end at a cut before it."""
        sample = round(seconds * sample_rate)
        before = sum(n for at, n in inserted if at < sample or (after_a_silence and at == sample))
        return seconds + before / sample_rate

    new_pauses = [(moved(at / sample_rate, False), moved(at / sample_rate, True)) for at, _ in inserted]
    alignment = Alignment(
        piece.alignment.unit,
        piece.alignment.method,
        [WordTiming(w.word, moved(w.start, True), moved(w.end, False)) for w in words],
        sorted([(moved(a, False), moved(b, True)) for a, b in piece.alignment.pauses] + new_pauses),
    )
    added = sum(n for _, n in inserted)
    return Placed(np.concatenate(chunks).astype(piece.audio.dtype), alignment, piece.onset, piece.offset + added)


def _free(intervals: list[tuple[float, float]], start: float, end: float) -> bool:
    return all(end + MIN_SAME_CHANNEL_GAP <= a or start >= b + MIN_SAME_CHANNEL_GAP for a, b in intervals)


class DuplexComposer:
    """Renders and composes the duplex samples of one recipe (what is loaded once per shard job)."""

    def __init__(
        self,
        backend: TTSBackend,
        render: RenderConfig,
        config: DuplexConfig,
        sample_rate: int,
        tts_reads_kana: bool,
        aligner: Aligner | None,
        gate: QualityGate | None = None,
    ):
        self.gate = gate  # on the dialogue's turns; aizuchi are too short for its checks to mean much
        self.backend = backend
        self.render = render
        self.config = config
        self.rate = sample_rate
        self.tts_reads_kana = tts_reads_kana
        self.aligner = aligner

    def _render(self, turn: Turn, speaker: Speaker, seed: int, gate: QualityGate | None = None) -> Placed:
        audio = render_turn(turn, speaker, self.backend, seed, self.rate, self.render, True, self.aligner, gate)
        assert turn.alignment is not None
        return cut_to_speech(audio, turn.alignment, self.rate)

    def compose(self, dialogue: Dialogue, speakers: dict[str, Speaker], seed: int) -> DuplexSample:
        """Render every voiced turn, lay out the timeline, mix both channels; sets each turn's start and end."""
        rng = np.random.default_rng(derived_int("duplex", seed))
        turns = dialogue.spoken_turns(tuple(CHANNELS))
        placed, cut = [], None
        for kept, turn in enumerate(turns):
            number = dialogue.turns.index(turn) + 1
            try:
                rendered = self._render(turn, speakers[turn.role], seed, self.gate)
            except Rejected as rejected:
                if kept < MIN_KEPT_TURNS:  # not yet an exchange to keep
                    raise Rejected(f"turn {number}: {rejected.reason}") from None
                # one turn that will not render does not lose the dialogue: it ends before that turn
                cut = {"at_turn": number, "reason": rejected.reason, "turns_dropped": len(dialogue.turns) - number + 1}
                dialogue.turns = dialogue.turns[: number - 1]
                turns = turns[:kept]
                break
            placed.append(split_into_ipus(rendered, self.rate, self.config.ipu, rng))
        interrupting = set()
        for index in range(1, len(turns)):
            share = self.config.interruption.share
            if turns[index].role != turns[index - 1].role and share and rng.random() < share:
                stopped = stop_at_a_phrase_boundary(placed[index - 1], self.rate, rng)
                if stopped is not None:
                    placed[index - 1] = stopped
                    interrupting.add(index)
        lengths = [p.seconds(self.rate) for p in placed]
        plan = plan_turns([t.role for t in turns], lengths, self.config, rng, frozenset(interrupting))

        spoken: list[tuple[Event, Placed]] = []
        busy: dict[str, list[tuple[float, float]]] = {role: [] for role in CHANNELS}
        for turn, piece, (start, gap) in zip(turns, placed, plan, strict=True):
            start = self._on_a_sample(start)
            turn.speaker = speakers[turn.role].id
            turn.start, turn.end = start, round(start + piece.seconds(self.rate), 6)
            index = dialogue.turns.index(turn)
            event = Event("turn", turn.role, CHANNELS[turn.role], start, turn.end, turn.spoken_text or "", index)
            event.gap = None if gap is None else round(gap, 6)
            event.interrupted = len(spoken) + 1 in interrupting
            spoken.append((event, piece))
            busy[turn.role].append((event.start, event.end))

        said: dict[tuple[str, str], Placed] = {}  # each listener's aizuchi phrase is rendered once per sample
        last_said: dict[str, str] = {}
        for event, piece in list(spoken):
            listener = next(role for role in CHANNELS if role != event.role)
            origin = event.start - piece.onset / self.rate  # where the piece's audio begins
            pauses = [(origin + a, origin + b) for a, b in _not_after_questions(piece.alignment)]
            particles = [origin + w.end for w in piece.alignment.words if w.word in PHRASE_PARTICLES]
            phrases = self._register_phrases(event.text)
            for at in aizuchi_times((event.start, event.end), pauses, self.config, rng, particles):
                choices = [p for p in phrases if p != last_said.get(listener)] or phrases  # varied, not repeated
                phrase = choices[int(rng.integers(len(choices)))]
                if (phrase, listener) not in said:  # in the listener's own voice, never the speaker's
                    said[phrase, listener] = self._aizuchi(phrase, listener, speakers[listener], seed)
                heard = said[phrase, listener]
                at = self._on_a_sample(at)
                end = round(at + heard.seconds(self.rate), 6)
                if _free(busy[listener], at, end):
                    busy[listener].append((at, end))
                    last_said[listener] = phrase
                    spoken.append((Event("aizuchi", listener, CHANNELS[listener], at, end, phrase, event.turn), heard))
        with timed("compose"):  # the renders above are timed as renders (and their checks as qc)
            spoken.sort(key=lambda item: (item[0].start, item[0].channel))
            events = [event for event, _ in spoken]
            stereo, alignment, roles = self._mix(spoken)
            if self.config.check_channels:
                self._check_channels(stereo, events)
            augmentation = None
            if self.config.augment.enabled:
                augmentation = augment_user_channel(stereo, self.rate, self.config.augment, rng)  # peak-safe itself
            for channel in CHANNELS.values():  # each is under the ceiling and none share a channel: a guard
                stereo[:, channel] = peak_safe(stereo[:, channel])
            return DuplexSample(to_int16(stereo), events, alignment, roles, augmentation, cut)

    def _register_phrases(self, text: str) -> list[str]:
        """The aizuchi that fit how the speaker talks: polite ones to です/ます speech, casual ones otherwise."""
        aizuchi = self.config.aizuchi
        return aizuchi.phrases if POLITE.search(text) else aizuchi.casual_phrases

    def _on_a_sample(self, seconds: float) -> float:
        """Times are placed on whole samples, so the recorded timeline is exactly where the audio is."""
        return round(round(seconds * self.rate) / self.rate, 6)

    def _aizuchi(self, phrase: str, role: str, speaker: Speaker, seed: int) -> Placed:
        reading = kana_reading(phrase)
        turn = Turn(role, phrase, spoken_text=phrase, tts_text=reading if self.tts_reads_kana else phrase)
        turn.reading = reading
        return self._render(turn, speaker, derived_int(seed, "aizuchi", phrase))

    def _mix(self, spoken: list[tuple[Event, Placed]]) -> tuple[np.ndarray, Alignment, list[str]]:
        """Float stereo of everything said, and every word timed on the timeline with its speaker's role."""
        ends = [int(round(e.start * self.rate)) - p.onset + p.audio.size for e, p in spoken]
        frames = max(ends) + int(END_SILENCE_SECONDS * self.rate)
        stereo = np.zeros((frames, len(CHANNELS)), dtype=np.float32)
        timed: list[tuple[WordTiming, str]] = []
        for event, piece in spoken:
            begin = int(round(event.start * self.rate)) - piece.onset
            stereo[begin : begin + piece.audio.size, event.channel] += piece.audio
            words = piece.alignment.shifted(begin / self.rate).words
            timed += [(WordTiming(w.word, max(w.start, 0.0), w.end), event.role) for w in words]
        timed.sort(key=lambda item: (item[0].start, CHANNELS[item[1]]))
        unit, method = spoken[0][1].alignment.unit, spoken[0][1].alignment.method
        return stereo, Alignment(unit, method, [word for word, _ in timed]), [role for _, role in timed]

    def _check_channels(self, stereo: np.ndarray, events: list[Event]) -> None:
        """Each channel must carry speech only where its own turns and aizuchi are, as a detector hears it."""
        tolerance = self.config.vad_tolerance_seconds
        for role, channel in CHANNELS.items():
            planned = [(e.start, e.end) for e in events if e.channel == channel]
            heard = speech_segments(stereo[:, channel], self.rate)
            stray = activity_outside(heard, planned, tolerance)
            if stray:
                a, b = stray[0]
                raise Rejected(f"{role} channel has speech outside its turns ({a:.2f}-{b:.2f} s)")
            turns = [(e.start, e.end) for e in events if e.channel == channel and e.kind == "turn"]
            for a, b in turns:  # pauses inside a turn are silent too: ask only for most of it heard
                heard_seconds = sum(max(0.0, min(b, y) - max(a, x)) for x, y in heard)
                if heard_seconds < MIN_HEARD_SHARE * (b - a):
                    raise Rejected(f"{role} channel is silent where it should speak ({a:.2f}-{b:.2f} s)")


def check_word_timing(recipe: Recipe) -> None:
    """Before any shard: a duplex recipe needs its words timed, by the backend or by a usable CTC model."""
    if recipe.tts.num_gpus == 0 and times_words(recipe.tts.backend):
        return
    if recipe.duplex.ctc_model_dir is None:
        raise ValueError(
            f"kind 'duplex' needs word timings and backend {recipe.tts.backend!r}"
            + (" on GPU actors" if recipe.tts.num_gpus else "")
            + " does not give them: set duplex.ctc_model_dir to a Japanese CTC model folder"
        )
    from ..align import CTCModelInfo

    CTCModelInfo.read(recipe.duplex.ctc_model_dir)  # the folder is shared storage, as the TTS models are


def make_composer(
    recipe: Recipe, backend: TTSBackend, tts_reads_kana: bool, gate: QualityGate | None = None
) -> DuplexComposer:
    """The composer for a duplex recipe; words are timed by the backend, else by the recipe's CTC model."""
    aligner = None
    if not isinstance(backend, AligningBackend):
        check_word_timing(recipe)
        from ..align import CTCAligner

        aligner = CTCAligner(str(recipe.duplex.ctc_model_dir)).align
    rate = recipe.tts.sample_rate
    return DuplexComposer(backend, recipe.render, recipe.duplex, rate, tts_reads_kana, aligner, gate)


class DuplexRowMaker(SpeechRowMaker):
    """The speech chain with the composer in place of turn-by-turn rendering."""

    def __init__(self, recipe: Recipe, kind: Duplex, backend: TTSBackend | None = None):
        super().__init__(recipe, kind, backend)
        self.composer = make_composer(recipe, self.backend, self.tts_reads_kana, self.gate)

    def render(self, dialogue: Dialogue, voiced: dict[str, Speaker], seed: int) -> np.ndarray:
        composed = self.composer.compose(dialogue, voiced, seed)
        dialogue.extra = composed.json_fields()
        return composed.pcm


class Duplex(SpeechKind):
    name = "duplex"
    summary = "both sides of a dialogue spoken and composed on one timeline: assistant left, user right (stereo)"
    voiced_roles = ("user", "assistant")
    channels = 2
    task_categories = ("audio-to-audio", "audio-text-to-text")
    settings_sections = ("duplex",)
    exports_dialogues = True
    json_fields = SpeechKind.json_fields | {
        "channels": "which role is on which channel (left = assistant, right = user)",
        "timeline": "every turn and aizuchi: role, channel, start, end, text, gap to the previous turn",
        "alignments": "every word with its start, end and role, in time order",
        "augmentation": "what was applied to the user channel, if anything",
        "cut": "where the dialogue was cut because a turn could not be rendered (turn, reason), if it was",
    }

    def voices(self, bank: SpeakerBank, key: str, recipe: Recipe) -> dict[str, Speaker]:
        return assign_speakers(bank, key, recipe.seed, recipe.duplex.assistant_speaker)

    def timing_settings(self, recipe: Recipe) -> dict:
        settings = recipe.duplex.model_dump(mode="json", exclude={"augment", "ctc_model_dir", "assistant_speaker"})
        return {"turn_taking": settings}

    def preflight(self, recipe: Recipe, in_process: bool) -> None:
        super().preflight(recipe, in_process)
        fixed = recipe.duplex.assistant_speaker
        bank = load_bank(recipe.speakers.bank)
        if fixed is not None and fixed not in {s.id for s in bank.speakers}:
            raise ValueError(f"duplex.assistant_speaker {fixed!r} is not a voice of the bank {recipe.speakers.bank}")
        if fixed is not None and len(bank.speakers) < 2:
            raise ValueError("duplex.assistant_speaker needs a bank of at least two voices: the users get the others")
        check_word_timing(recipe)

    def row_maker(self, recipe: Recipe, model=None) -> DuplexRowMaker:
        return DuplexRowMaker(recipe, self, model)

    def render_description(self, recipe: Recipe) -> str:
        config = recipe.duplex
        timing = "by the backend" if times_words(recipe.tts.backend) else f"by the CTC model {config.ctc_model_dir}"
        return (
            f"both sides by the TTS with words timed {timing}, composed on two channels: gaps "
            f"{config.gap.distribution}, {config.overlap.share:.0%} of turns overlapped, aizuchi at "
            f"{config.aizuchi.rate_per_minute:g}/min"
            + (", each channel checked by voice activity" if config.check_channels else "")
        )

    def card_summary(self, recipe: dict) -> dict:
        duplex = {k: v for k, v in recipe["duplex"].items() if k in ("gap", "overlap", "aizuchi")}
        return {"qc": recipe.get("qc"), "duplex": duplex}
