"""`koe speakers check`, `koe text`, and pinning a Hub revision (against a local server)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.corpora import pin_revisions
from pipeline.manifest import read_manifest
from pipeline.recipe import load_recipe
from pipeline.speakers import check_bank, load_bank
from tests.conftest import BANK, REPO, koe

ENTRY = {"name": "x", "gender": "f", "age_band": "30s", "license": "CC0", "source": "recorded for tests"}


def _bank(tmp_path, entries: list[dict]) -> object:
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump({"speakers": entries}, allow_unicode=True))
    return path


def _wav(path, seconds, rate=24000):
    sf.write(path, 0.1 * np.sin(np.arange(int(seconds * rate)) / 7), rate)
    return path.name


def test_embedded_bank_is_usable_only_with_the_embedded_backend():
    bank = load_bank(BANK)
    assert check_bank(bank, needs_reference=False) == {}
    problems = check_bank(bank, needs_reference=True)
    assert len(problems) == 20 and all("no reference_audio" in p[0] for p in problems.values())


def test_speakers_check_names_each_problem(tmp_path):
    entries = [
        {**ENTRY, "id": "good", "reference_audio": _wav(tmp_path / "good.wav", 5), "transcript": "こんにちは。"},
        {**ENTRY, "id": "short", "reference_audio": _wav(tmp_path / "short.wav", 1), "transcript": "はい。"},
        {**ENTRY, "id": "long", "reference_audio": _wav(tmp_path / "long.wav", 31), "transcript": "長い。"},
        {**ENTRY, "id": "silent", "reference_audio": _wav(tmp_path / "ok.wav", 4), "transcript": ""},
        {**ENTRY, "id": "gone", "reference_audio": "missing.wav", "transcript": "はい。"},
        {**ENTRY, "id": "nolicense", "license": " ", "reference_audio": "ok.wav", "transcript": "はい。"},
    ]
    (tmp_path / "garbage.wav").write_bytes(b"not audio")
    entries.append({**ENTRY, "id": "garbage", "reference_audio": "garbage.wav", "transcript": "はい。"})
    (tmp_path / "empty.wav").write_bytes(b"")
    entries.append({**ENTRY, "id": "empty", "reference_audio": "empty.wav", "transcript": "はい。"})
    path = _bank(tmp_path, entries)
    result = koe("speakers", "check", str(path), "--backend", "cosyvoice2", check=False)
    assert result.returncode == 2
    lines = dict(line.split("\t")[::2] for line in result.stdout.splitlines())
    assert lines["good"] == "ok"
    assert "reference audio is 1.0 s, needs 3-30 s" in lines["short"]
    assert "reference audio is 31.0 s" in lines["long"]
    assert lines["silent"] == "no transcript of the reference audio"
    assert "reference audio not found" in lines["gone"]
    assert lines["nolicense"] == "no license"
    assert "reference audio unreadable" in lines["garbage"]
    assert "reference audio unreadable" in lines["empty"]
    assert "7 of 8 speaker(s) not usable with cosyvoice2" in result.stderr


def test_speakers_check_accepts_the_shipped_bank_from_any_folder(tmp_path):
    result = koe("speakers", "check", cwd=tmp_path)  # outside the checkout: the embedded bank is still found
    assert "all 20 speakers usable with openjtalk" in result.stdout


def test_a_bank_that_cannot_be_read_is_one_line(tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"speakers: \xff\n")
    (tmp_path / "bomb.yaml").write_text("a: &a [x, x]\n" + "".join(f"b{i}: [*a, *a]\n" for i in range(40)))
    (tmp_path / "list.yaml").write_text("- just a list\n")
    cases = {"missing.yaml": "speaker bank file not found", "binary.yaml": "not UTF-8 text",
             "bomb.yaml": "alias bomb", "list.yaml": "invalid speaker bank"}
    for name, message in cases.items():
        result = koe("speakers", "check", str(tmp_path / name), check=False)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, name


def test_a_run_with_an_unusable_bank_stops_before_any_work(make_recipe, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    entries = [{**ENTRY, "id": f"s{i}", "reference_audio": "empty.wav", "transcript": "はい。"} for i in range(2)]
    recipe = make_recipe([{"id": "r", "conversations": [{"role": "user", "content": "はい。"}]}],
                         speakers={"bank": str(_bank(tmp_path, entries))})
    result = koe("run", str(recipe), "--output", str(tmp_path / "out"), "--executor", "inline", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "speaker bank not usable" in result.stderr and "reference audio unreadable" in result.stderr
    assert not (tmp_path / "out").exists()


def test_text_command_shows_what_the_tts_will_say():
    result = koe("text", "--json", "**AI**の価格は¥1,200です。")
    described = json.loads(result.stdout)
    assert described["spoken_text"] == "エーアイの価格は1200円です。"
    assert described["reading"] == "エーアイノカカクワセンニヒャクエンデス。"
    assert described["reject_reason"] is None and described["estimated_seconds"] > 1
    plain = koe("text", "```\nx = 1\n```")
    assert "reject_reason: mostly code" in plain.stdout


BULLETS = "- りんご\n- みかん"


def _text(args: list[str], stdin: str | None = None):
    """`koe text` in this process (typer's runner), with `stdin` as its standard input."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, ["text", *args], input=stdin)


def _one_turn_of_bullets(result) -> dict:
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # one JSON object: the whole list is one turn
    described = json.loads(lines[0])
    assert described["text"] == BULLETS
    assert "りんご" in described["spoken_text"] and "みかん" in described["spoken_text"]
    assert "-" not in described["spoken_text"] and described["reject_reason"] is None
    assert "リンゴ" in described["reading"] and "ミカン" in described["reading"]
    return described


def test_text_after_a_double_dash_may_start_with_a_dash():
    assert _text([BULLETS]).exit_code == 2  # without "--" the list is taken for an option
    described = _one_turn_of_bullets(_text(["--json", "--", BULLETS]))
    plain = _text(["--", BULLETS])
    assert plain.exit_code == 0 and f"spoken_text: {described['spoken_text']}\n" in plain.stdout
    assert _one_turn_of_bullets(_text(["--json", "--", "-", "りんご\n-", "みかん"])) == described  # words joined


def test_text_from_stdin_is_one_turn():
    described = _one_turn_of_bullets(_text(["-", "--json"], stdin=BULLETS + "\n"))  # the trailing newline dropped
    assert _one_turn_of_bullets(_text(["--json", "-"], stdin=BULLETS)) == described
    assert _one_turn_of_bullets(_text(["--json"], stdin=BULLETS + "\r\n")) == described  # no text: stdin (a pipe)
    plain = _text(["-"], stdin=BULLETS)
    assert plain.exit_code == 0 and f"reading: {described['reading']}\n" in plain.stdout
    assert _text(["--json", "--", "-"], stdin=BULLETS).exit_code == 0  # "-" after "--" is stdin too


def test_text_without_any_text_says_how_to_give_it():
    result = _text([], stdin="")
    assert result.exit_code == 2 and "koe text -- '- TEXT'" in result.stderr
    assert _text(["-"], stdin="\xff".encode("latin-1")).exit_code == 2  # not UTF-8
    command = [sys.executable, "-m", "pipeline", "text", "--json", "-"]  # the real command line, through a pipe
    piped = subprocess.run(command, input=BULLETS, capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(piped.stdout)["text"] == BULLETS


class _HubRevisions(BaseHTTPRequestHandler):
    """The one Hub endpoint `HfApi.dataset_info` calls: /api/datasets/<id>/revision/<rev>."""

    commits = {"main": "0123456789abcdef0123456789abcdef01234567"}

    def do_GET(self):
        revision = self.path.split("/revision/", 1)[-1].split("?", 1)[0]
        sha = self.commits.get(revision)
        body = json.dumps({"id": "llm-jp/hh-rlhf-12k-ja", "sha": sha} if sha else {"error": "not found"}).encode()
        self.send_response(200 if sha else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_hub(monkeypatch):
    import huggingface_hub.constants

    server = HTTPServer(("127.0.0.1", 0), _HubRevisions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield
    server.shutdown()
    thread.join()


def test_a_branch_is_pinned_to_its_commit(local_hub, make_recipe):
    recipe = load_recipe(make_recipe(), ["sources.0.dataset=llm-jp/hh-rlhf-12k-ja", "sources.0.revision=main"])
    pinned = pin_revisions(recipe)
    assert pinned.sources[0].revision == _HubRevisions.commits["main"]
    assert pinned.fingerprint() != recipe.fingerprint()
    already = load_recipe(make_recipe(), ["sources.0.dataset=a/b", f"sources.0.revision={'f' * 40}"])
    assert pin_revisions(already).sources[0].revision == "f" * 40  # a commit is not looked up


def test_an_unknown_revision_is_a_clear_error(local_hub, make_recipe):
    recipe = load_recipe(make_recipe(), ["sources.0.dataset=llm-jp/hh-rlhf-12k-ja", "sources.0.revision=v9"])
    with pytest.raises(ValueError, match="cannot resolve revision 'v9' of llm-jp/hh-rlhf-12k-ja"):
        pin_revisions(recipe)


def test_estimate_extrapolates_the_corpus_and_measures_the_rtf_here():
    from tests.conftest import DEMO_RECIPE

    result = json.loads(koe("estimate", str(DEMO_RECIPE), "--json", "--measure", "2").stdout)
    assert result["rows"] == 17 and result["sampled"] == 17
    assert result["accepted_share"] == pytest.approx(10 / 17)
    assert 2 < result["seconds_per_sample"] < 12
    assert result["audio_hours"] == pytest.approx(17 * (10 / 17) * result["seconds_per_sample"] / 3600)
    assert 0 < result["rtf"] < 1 and result["rtf_source"] == "measured here on 2 rows"
    assert result["gpu_hours"] == 0  # the embedded backend holds no GPU


def test_estimate_for_a_gpu_recipe_takes_the_rtf_from_an_earlier_output(demo_output):
    from pipeline.estimate import estimate

    overrides = ["profile=embedded", "tts.num_gpus=1", "tts.backend=bench.latency_tts_double"]
    recipe = load_recipe(REPO / "recipes" / "sft_magpie.yaml", overrides)
    unknown = estimate(recipe, rows=132_000)
    assert unknown.rtf is None and "needs a GPU" in unknown.rtf_source and unknown.gpu_hours is None
    measured = estimate(recipe, rows=132_000, from_output=demo_output)
    rows = read_manifest(demo_output / "manifest.parquet").to_pylist()
    written = [r for r in rows if r["status"] == "written"]
    expected_rtf = sum(r["render_seconds"] for r in written) / sum(r["duration"] for r in written)
    assert measured.rtf == pytest.approx(expected_rtf)
    assert measured.gpu_hours == pytest.approx(measured.audio_hours * expected_rtf)
    given = estimate(recipe, rows=132_000, rtf=0.17)
    assert given.gpu_hours == pytest.approx(given.audio_hours * 0.17)
