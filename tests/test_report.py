"""`koe report`: an HTML page of plots about an output."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.conftest import koe


class Page(HTMLParser):
    """What a browser would find in the page: figure captions, plots, and anything it would fetch."""

    def __init__(self):
        super().__init__()
        self.captions: list[str] = []
        self.svgs = 0
        self.fetches: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.svgs += tag == "svg"
        self._in_caption = tag == "figcaption"
        if tag in ("script", "link", "img", "iframe") or "src" in attributes:
            self.fetches.append(tag)

    def handle_endtag(self, tag):
        self._in_caption = self._in_caption and tag != "figcaption"

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)


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
    koe("report", str(demo_copy), "--html", str(demo_copy / "again.html"))
    assert (demo_copy / "again.html").read_bytes() == html.read_bytes()  # the same output, the same page


def test_the_duplex_report_shows_turn_taking(duplex_output, tmp_path):
    koe("report", str(duplex_output), "--html", str(tmp_path / "r.html"))
    captions = " | ".join(read_page(tmp_path / "r.html").captions)
    assert "Turn-taking: gap before each turn" in captions and "turns overlap" in captions
    assert "Aizuchi per minute of dialogue" in captions


def test_a_folder_that_is_no_output_gets_a_clear_error(tmp_path):
    result = koe("report", str(tmp_path), check=False)
    assert result.returncode == 2 and "not a finished koe output" in result.stderr


def test_the_captions_report_shows_the_clips_licenses(captions_output, tmp_path):
    koe("report", str(captions_output), "--html", str(tmp_path / "r.html"))
    captions = " | ".join(read_page(tmp_path / "r.html").captions)
    assert "Captioned clips per license" in captions and "Duration of the 5 samples" in captions
    assert "QC:" not in captions and "Speech per voice" not in captions  # no voices in a captions output
