"""`koe report`: an HTML page of plots about an output."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from html.parser import HTMLParser

import numpy as np
import soundfile as sf

from pipeline.audio import resample
from pipeline.report import LISTEN_RATE, LISTEN_SECONDS
from pipeline.stats import collect
from tests.conftest import koe


class Page(HTMLParser):
    """What a browser would find in the page: figure captions, plots, players, and anything it would fetch."""

    def __init__(self):
        super().__init__()
        self.captions: list[str] = []
        self.svgs = 0
        self.fetches: list[str] = []
        self.players: list[dict] = []  # each <audio>: its attributes and the text of its table row
        self._in_caption = False
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.svgs += tag == "svg"
        self._in_caption = tag == "figcaption"
        source = attributes.get("src") or ""
        if tag in ("script", "link", "img", "iframe") or (source and not source.startswith("data:")):
            self.fetches.append(tag)
        if tag == "tr":
            self._row = []
        if tag == "audio":
            self.players.append({**attributes, "row": self._row})

    def handle_endtag(self, tag):
        self._in_caption = self._in_caption and tag != "figcaption"

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)
        if self._row is not None:
            self._row.append(data)


def read_page(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_the_demo_report_has_the_plots(demo_copy):
    result = koe("report", str(demo_copy))
    html = demo_copy / "report.html"
    assert str(html) in result.stdout
    page = read_page(html)
    captions = " | ".join(page.captions)
    for expected in (
        "Duration of the 10 samples",
        "Speech per voice (7 voices)",
        "Audio per source",
        "What became of the input rows",
        "Reject reasons (7 rows)",
        "QC: DNSMOS P.808 MOS",
        "QC: similarity to the speaker's reference",
        "QC: morae per second",
    ):
        assert expected in captions, expected
    assert "Turn-taking" not in captions  # sft has no timeline
    assert page.svgs == len(page.captions) >= 9
    assert page.fetches == []  # self-contained: opens offline
    text = html.read_text(encoding="utf-8")
    assert "missing column 'conversations'" in text  # reject reasons are labels of the plot
    assert "<script" not in text.lower() and len(page.players) == 7  # the players' audio is in the bytes compared
    koe("report", str(demo_copy), "--html", str(demo_copy / "again.html"))
    assert (demo_copy / "again.html").read_bytes() == html.read_bytes()  # the same output, the same page


def test_the_duplex_report_shows_turn_taking(duplex_output, tmp_path):
    koe("report", str(duplex_output), "--html", str(tmp_path / "r.html"))
    captions = " | ".join(read_page(tmp_path / "r.html").captions)
    assert "Turn-taking: gap before each turn" in captions and "turns overlap" in captions
    assert "Aizuchi per minute of dialogue" in captions
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    table = page[page.index("Turn-taking, measured from the audio") :]
    from pipeline.duplex_stats import HUMAN, duplex_stats

    heard = duplex_stats(duplex_output).heard
    for name, (low, high) in HUMAN.items():  # each figure heard, beside its human range
        assert f"<th>{name.replace('_', ' ')}</th><td" in table and f"{low:g}\u2013{high:g}" in table
        assert f"{getattr(heard, name):.3f}" in table


def test_a_folder_that_is_no_output_gets_a_clear_error(tmp_path):
    result = koe("report", str(tmp_path), check=False)
    assert result.returncode == 2 and "not a finished koe output" in result.stderr


def test_the_captions_report_shows_the_clips_licenses(captions_output, tmp_path):
    koe("report", str(captions_output), "--html", str(tmp_path / "r.html"))
    captions = " | ".join(read_page(tmp_path / "r.html").captions)
    assert "Captioned clips per license" in captions and "Duration of the 5 samples" in captions
    assert "QC:" not in captions and "Speech per voice" not in captions  # no voices in a captions output


def test_the_captions_report_plays_one_clip_per_license(captions_output, tmp_path):
    koe("report", str(captions_output), "--html", str(tmp_path / "r.html"))
    page = read_page(tmp_path / "r.html")
    licenses = {sample.clip.license_name for sample in collect(captions_output).samples}
    assert sorted(p["row"][0] for p in page.players) == sorted(licenses)
    for player in page.players:
        document, audio, rate = _members(captions_output, player["data-key"])
        row = "".join(player["row"])
        assert document["clip"]["license_name"] in row and document["clip"]["credit"] in row
        assert document["caption"] in row
        heard, heard_rate = _heard(player)
        expected = min(document["audio"]["duration"], LISTEN_SECONDS)
        assert heard_rate == LISTEN_RATE and abs(len(heard) / heard_rate - expected) < 0.01
    assert page.fetches == []


def _members(output, key: str) -> tuple[dict, np.ndarray, int]:
    """A sample's JSON and audio (frames x channels) as the shards hold them."""
    for tar in sorted((output / "shards").glob("*.tar")):
        with tarfile.open(tar) as archive:
            names = archive.getnames()
            if f"{key}.json" in names:
                document = json.loads(archive.extractfile(f"{key}.json").read())
                audio, rate = sf.read(io.BytesIO(archive.extractfile(f"{key}.flac").read()), always_2d=True)
                return document, audio, rate
    raise AssertionError(f"{key} is in no shard")


def _heard(player: dict) -> tuple[np.ndarray, int]:
    prefix = "data:audio/mpeg;base64,"
    assert player["src"].startswith(prefix) and "controls" in player
    audio, rate = sf.read(io.BytesIO(base64.b64decode(player["src"][len(prefix) :])), dtype="float32")
    assert audio.ndim == 1  # mono
    return audio, rate


def _check_players(output, page: Page, duplex: bool = False) -> list[int]:
    """Each player: a turn of the sample it names, no longer than the cap, beside that turn's words; its URI sizes."""
    sizes = []
    for player in page.players:
        document, audio, rate = _members(output, player["data-key"])
        turn = document["turns"][int(player["data-turn"])]
        row = "".join(player["row"])
        assert turn["speaker"] in row and turn["spoken_text"] in row and turn["reading"] in row
        assert turn["text"] in row
        heard, heard_rate = _heard(player)
        expected = min(turn["end"] - turn["start"], LISTEN_SECONDS)
        assert heard_rate == LISTEN_RATE and abs(len(heard) / heard_rate - expected) < 0.01
        channel = document["channels"].index(turn["role"]) if duplex else 0
        first, last = round(turn["start"] * rate), round((turn["start"] + expected) * rate)
        for index in range(audio.shape[1]):  # the clip is its speaker's own channel (duplex: not the other one)
            source = resample(audio[first:last, index].astype(np.float32), rate, LISTEN_RATE)[: len(heard)]
            similarity = np.corrcoef(source, heard[: len(source)])[0, 1] if source.std() > 0 else 0.0
            assert similarity > 0.9 if index == channel else similarity < 0.5, (player["data-key"], index, similarity)
        sizes.append(len(player["src"]))
    return sizes


def test_the_report_lets_a_person_hear_each_voice(demo_output, tmp_path):
    koe("report", str(demo_output), "--html", str(tmp_path / "r.html"))
    page = read_page(tmp_path / "r.html")
    voices = collect(demo_output).speaker_seconds()
    assert sorted(p["row"][0] for p in page.players) == sorted(voices)  # one player per voice, named first
    sizes = _check_players(demo_output, page)
    assert max(sizes) < 60_000  # 6 s of speech at most: well under 100 KB in the page
    assert page.fetches == []


def test_the_duplex_report_plays_each_voice_from_its_own_channel(duplex_output, tmp_path):
    koe("report", str(duplex_output), "--html", str(tmp_path / "r.html"))
    page = read_page(tmp_path / "r.html")
    assert sorted(p["row"][0] for p in page.players) == sorted(collect(duplex_output).speaker_seconds())
    _check_players(duplex_output, page, duplex=True)
    assert page.fetches == []
