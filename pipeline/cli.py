"""The `koe` command line (also `python -m pipeline`)."""

from __future__ import annotations

import errno
import signal
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .recipe import RecipeError, load_recipe

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="koe: Japanese speech training data from text corpora."
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is: the run stops where it is, through the same clean-up."""


_sigterm_received = threading.Event()  # libraries on the way up may re-raise a plain KeyboardInterrupt


def _stop_on_sigterm() -> None:
    def stop(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: the clean-up is not interrupted
        _sigterm_received.set()
        raise Terminated

    signal.signal(signal.SIGTERM, stop)


RESUME_HINT = "finished shards are kept; run the same command again to resume"


RUN_HELP = (
    "Render a recipe into WebDataset shards plus a manifest; resumes, and regenerates selected rows.\n\n"
    "Re-running on an output finishes what is missing. With any of --ids, --ids-file, --sources, --speakers, "
    "--shards or --where, the selected rows are rendered again with new seeds: only the shards that hold them "
    "are rewritten, and every other sample stays byte-identical."
)


@app.command(help=RUN_HELP)
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="output folder (default: out/<recipe name>)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="only the first N input rows (with a selection: N selected rows)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="join a Ray cluster ('auto' or an address); default: start Ray locally")
    ] = None,
    executor: Annotated[str, typer.Option(help="'ray' (default) or 'inline' (this process, for debugging)")] = "ray",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a recipe key: a.b=value (repeatable)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="accept output of another recipe: redo every shard (or the selection)")
    ] = False,
    ids: Annotated[
        list[str] | None, typer.Option("--ids", help="regenerate these row ids or keys (repeatable)")
    ] = None,
    ids_file: Annotated[Path | None, typer.Option(help="regenerate the ids or keys listed in this file")] = None,
    sources: Annotated[list[str] | None, typer.Option("--sources", help="regenerate rows of these sources")] = None,
    speakers: Annotated[list[str] | None, typer.Option("--speakers", help="regenerate rows voiced by these")] = None,
    shards: Annotated[list[str] | None, typer.Option("--shards", help="regenerate rows of these shards")] = None,
    where: Annotated[
        str | None, typer.Option(help="regenerate rows matching a manifest query, e.g. \"status != 'written'\"")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="list what a regeneration would change and cost; change nothing")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Render a recipe into shards and a manifest; resume; regenerate selected rows (see RUN_HELP)."""
    from .errors import BackendSetupError
    from .executors import RayConnectError, make_executor
    from .run import OutputConflict, regeneration_preview, run_recipe
    from .select import Selection

    selection = Selection(
        ids=tuple(ids or ()),
        ids_file=ids_file,
        sources=tuple(sources or ()),
        speakers=tuple(speakers or ()),
        shards=tuple(shards or ()),
        where=where,
    )
    _stop_on_sigterm()
    try:
        config = load_recipe(recipe, set_ or [])
        destination = output or Path("out") / config.name
        if dry_run:
            _print_preview(regeneration_preview(config, destination, selection, limit))
            return
        runner = make_executor(executor, ray_address)
        summary = run_recipe(
            config, destination, runner, limit=limit, force=force, show_progress=progress, selection=selection
        )
    except (RecipeError, OutputConflict, BackendSetupError, ValueError) as exc:
        _fail(str(exc))
    except RayConnectError as exc:  # Ray could not be started or joined: one line that says why
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        signal_name, code = ("SIGTERM", 143) if _sigterm_received.is_set() else ("Ctrl-C", 130)
        _fail(f"stopped by {signal_name}: {RESUME_HINT}", code)
    except OSError as exc:  # a file or disk, not any row, is at fault
        culprit = exc.filename or "the output folder"
        if exc.errno == errno.ENOSPC:
            _fail(f"disk full writing {culprit}: free space, then run again; {RESUME_HINT}", 1)
        _fail(f"{culprit}: {exc.strerror or exc}; {RESUME_HINT}", 1)
    _print_summary(summary)
    if summary.shards_failed:
        _fail(f"{len(summary.shards_failed)} shard(s) failed; run again to retry: {', '.join(summary.shards_failed)}")


def _print_summary(summary) -> None:
    result = summary.to_dict()
    typer.echo(
        f"{result['inputs']} rows: {result['written']} written, {result['rejected']} rejected, "
        f"{result['failed']} failed; {result['audio_hours']:.3f} h of audio in {result['shards']} shard(s) "
        f"({result['shards_skipped']} already done, {result['regenerated']} row(s) regenerated)"
    )
    typer.echo(
        f"wall {result['wall_seconds']:.1f} s, render time {result['render_hours']:.3f} h, "
        f"GPU-hours {result['gpu_hours']:.3f}"
    )
    if result["stage_seconds"]:
        typer.echo("time per stage: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in result["stage_seconds"].items()))
    for reason, count in result["rejects_by_reason"].items():
        typer.echo(f"  rejected {count}x: {reason}")


def _print_preview(preview: dict) -> None:
    typer.echo(
        f"would regenerate {preview['rows']} row(s) {preview['by_status']} in {len(preview['shards'])} shard(s):"
    )
    for shard, count in preview["shards"].items():
        typer.echo(f"  {shard}: {count} row(s); the shard's other samples are kept byte-identical")
    typer.echo(f"about {preview['audio_hours']:.3f} h of audio")
    if preview["render_hours"] is not None:
        gpu = preview["render_hours"] * preview["gpus_per_render"]
        typer.echo(
            f"render time about {preview['render_hours']:.3f} h at the measured RTF {preview['measured_rtf']:.3f}"
            + (f" (about {gpu:.3f} GPU-hours)" if preview["gpus_per_render"] else "")
        )


@app.command()
def estimate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a recipe key: a.b=value (repeatable)")
    ] = None,
    sample: Annotated[int, typer.Option(min=1, help="rows read and made speakable to estimate from")] = 500,
    rows: Annotated[int | None, typer.Option(min=1, help="rows in the corpus, when it cannot be counted here")] = None,
    rtf: Annotated[float | None, typer.Option(min=0, help="render seconds per audio second per GPU actor")] = None,
    from_output: Annotated[Path | None, typer.Option(help="take the RTF measured on an earlier output")] = None,
    measure: Annotated[int, typer.Option(min=1, help="rows rendered here to measure the RTF (CPU backends)")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Forecast audio hours and GPU-hours of a recipe from its corpus and a measured real-time factor."""
    import json

    from .estimate import estimate as make_estimate

    try:
        config = load_recipe(recipe, set_ or [])
        result = make_estimate(config, sample=sample, rows=rows, rtf=rtf, from_output=from_output, measure=measure)
    except (RecipeError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(
        f"{result.sampled} row(s) sampled: {result.accepted_share:.0%} accepted, "
        f"about {result.seconds_per_sample:.1f} s of audio each"
    )
    if result.audio_hours is None:
        typer.echo("corpus size unknown here: pass --rows N for totals")
        return
    typer.echo(f"{result.rows} rows -> about {result.audio_hours:.2f} h of audio")
    typer.echo(f"real-time factor: {result.rtf if result.rtf is not None else '?'} ({result.rtf_source})")
    if result.render_hours is not None:
        typer.echo(f"render time about {result.render_hours:.2f} h; GPU-hours about {result.gpu_hours:.2f}")


@app.command()
def describe(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a recipe key: a.b=value (repeatable)")
    ] = None,
) -> None:
    """Print the chain the recipe will run, stage by stage: models, where they run, the checks and thresholds."""
    from .describe import describe as describe_recipe
    from .describe import format_steps

    try:
        config = load_recipe(recipe, set_ or [])
    except RecipeError as exc:
        _fail(str(exc))
    typer.echo(format_steps(describe_recipe(config)))


@app.command("duplex-stats")
def duplex_stats(
    directory: Annotated[Path, typer.Argument(help="output folder of a duplex `koe run`")],
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N dialogues")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Turn-taking measured from the audio (VAD IPUs per channel), beside the designed timeline and human ranges."""
    import json

    from .duplex_stats import duplex_stats as measure_output
    from .duplex_stats import format_stats

    try:
        stats = measure_output(directory, limit)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(stats.to_dict()) if as_json else format_stats(stats))


@app.command()
def validate(directory: Annotated[Path, typer.Argument(help="output folder of `koe run`")]) -> None:
    """Re-read every shard, decode every FLAC, reconcile with the manifest; non-zero exit on problems."""
    from .validate import validate_output

    report = validate_output(directory)
    if not report.ok:
        typer.secho(f"{directory}: {len(report.problems)} problem(s):", fg=typer.colors.RED, err=True)
        for problem in report.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(code=1)
    typer.echo(
        f"{directory}: OK, {report.samples} samples in {report.shards} shard(s), {report.audio_seconds:.1f} s of audio"
    )


def _print_plan(plan) -> None:
    state = " (new repo)" if not plan.repo_exists else " (new branch from main)" if not plan.branch_exists else ""
    typer.echo(f"{plan.repo_id}@{plan.revision}{state}: {plan.config}/{plan.split}")
    pending = plan.data + plan.metadata
    for f in pending:
        typer.echo(f"  upload  {f.path_in_repo}  {f.size / 1e6:.2f} MB")
    for path in plan.delete:
        typer.echo(f"  delete  {path}  (no longer in the output)")
    typer.echo(
        f"{len(pending)} file(s) to upload ({sum(f.size for f in pending) / 1e6:.1f} MB), "
        f"{plan.unchanged} already on the Hub, {len(plan.delete)} to delete"
    )
    for warning in plan.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


@app.command()
def publish(
    directory: Annotated[Path, typer.Argument(help="output folder of `koe run`")],
    repo_id: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME (created if missing)")],
    split: Annotated[str, typer.Option(help="the split these samples are in the dataset's config")] = "train",
    private: Annotated[bool, typer.Option(help="create the repo private (an existing public repo is refused)")] = False,
    revision: Annotated[str, typer.Option(help="branch to commit to (created from main if missing)")] = "main",
    dry_run: Annotated[bool, typer.Option(help="list what would be uploaded and deleted; change nothing")] = False,
) -> None:
    """Validate an output and upload it to a Hub dataset repo with a dataset card; re-run to resume.

    The config is the recipe's name. Shards go to data/<config>/<split>/, the manifest and a summary to
    manifests/<config>/<split>/, and README.md describes every config in the repo. Files already on the
    Hub with the same checksum are not sent again. The token comes from HF_TOKEN or `hf auth login`;
    HF_ENDPOINT points at another Hub.
    """
    from huggingface_hub.errors import HfHubHTTPError

    from .publish import PublishError, execute, plan_publish

    if "/" not in repo_id:
        _fail(f"--repo-id {repo_id!r}: expected ORG/NAME")
    try:
        plan = plan_publish(directory, repo_id, split=split, revision=revision, offline=dry_run)
        _print_plan(plan)
        if dry_run:
            return
        commits = execute(plan, private=private, echo=typer.echo)
    except PublishError as exc:
        _fail(str(exc))
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            _fail(f"the Hub refused: {exc}\nno token, or one without write access: set HF_TOKEN or run `hf auth login`")
        _fail(f"the Hub refused: {exc}\nre-run the same command to resume: finished commits are kept")
    if not commits:
        typer.echo(f"{repo_id}@{revision} already holds {plan.config}/{plan.split}: nothing to do")
    else:
        typer.echo(f"published {plan.config}/{plan.split} to {repo_id}@{revision} in {len(commits)} commit(s)")


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="output folder of `koe run`")],
    html: Annotated[Path | None, typer.Option("--html", help="where to write it (default: DIR/report.html)")] = None,
) -> None:
    """Write an HTML report with plots: durations, hours per voice and source, rejects, QC scores, turn-taking."""
    from .report import write_report

    try:
        path = write_report(directory, html or directory / "report.html")
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"report: {path}")


@app.command()
def qc(directory: Annotated[Path, typer.Argument(help="output folder of `koe run`")]) -> None:
    """Measure every voiced turn of an output again and print each score's spread, to choose thresholds.

    Writes the scores per turn to DIR/qc_scores.parquet. Then re-render what fails a new threshold with
    `koe run RECIPE --where "qc_dnsmos < 3.0"` (the manifest holds each sample's worst scores).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .rescore import distributions, rescore_output

    try:
        rows = rescore_output(directory)
    except ValueError as exc:
        _fail(str(exc))
    if not rows:
        _fail(f"{directory}: no rendered turns to measure")
    table = distributions(rows)
    quantiles = list(next(iter(table.values())))
    typer.echo(f"{len(rows)} turns; quantiles of each score:")
    typer.echo(f"{'score':28}" + "".join(f"{q:>9}" for q in quantiles))
    for name, values in table.items():
        typer.echo(f"{name:28}" + "".join(f"{values[q]:>9.3f}" for q in quantiles))
    failing = [row for row in rows if row["problem"]]
    typer.echo(f"{len(failing)} turn(s) fail the run's thresholds now")
    for row in failing[:20]:
        typer.echo(f"  {row['key']} turn {row['turn']}: {row['problem']}")
    pq.write_table(pa.Table.from_pylist(rows), directory / "qc_scores.parquet")
    typer.echo(f"scores per turn: {directory / 'qc_scores.parquet'}")


class ExportLayout(str, Enum):
    moshi = "moshi"
    jmoshi = "jmoshi"


@app.command()
def export(
    layout: Annotated[ExportLayout, typer.Argument(help="moshi or jmoshi")],
    directory: Annotated[Path, typer.Argument(help="output folder of a duplex `koe run`")],
    dest: Annotated[Path, typer.Argument(help="folder to write")],
    min_seconds: Annotated[
        float | None,
        typer.Option(min=1, help="pack consecutive dialogues into files of at least this many seconds"),
    ] = None,
) -> None:
    """A duplex output in the layout of full-duplex training code, with manifest.jsonl.

    moshi (kyutai moshi-finetune): stereo WAVs (left the assistant) with alignment JSONs beside them.
    jmoshi (J-Moshi): audio/<key>.wav (left A = the system) and text/<key>.json word lists.
    """
    from .export import export as write_layout

    try:
        summary = write_layout(layout.value, directory, dest, min_seconds)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"{dest}: {summary.samples} file(s), {summary.seconds / 3600:.3f} h, manifest {dest / 'manifest.jsonl'}")


@app.command("ingest-mono")
def ingest_mono(
    inputs: Annotated[Path, typer.Argument(help="a mono dialogue recording (.wav/.flac) or a folder of them")],
    dest: Annotated[Path, typer.Argument(help="folder for the stereo FLACs, their JSONs and manifest.jsonl")],
    diarizer: Annotated[str, typer.Option(help="vad-embedding (runs anywhere) or pyannote (local checkpoint)")] = (
        "vad-embedding"
    ),
    checkpoint: Annotated[
        Path | None, typer.Option(help="pyannote: the local folder of a diarization pipeline (its config.yaml)")
    ] = None,
    num_speakers: Annotated[int | None, typer.Option(help="speakers in each recording, when known")] = None,
    device: Annotated[
        str | None, typer.Option(help="pyannote: auto (the GPU when torch sees one), cpu or cuda")
    ] = None,
    sample_rate: Annotated[int, typer.Option(help="output sample rate")] = 24000,
) -> None:
    """Real mono dialogues to two-channel stereo: the two main speakers on separate channels (as Moshi did).

    Overlaps of the two go to both channels; other speakers are silenced; every region is listed in
    the recording's JSON. Re-running skips recordings already done.
    """
    from collections import Counter

    from .diarize import make_diarizer
    from .errors import BackendSetupError
    from .ingest_mono import ingest_mono as run_ingest

    given = {"checkpoint": checkpoint, "num_speakers": num_speakers, "device": device}
    options = {k: v for k, v in given.items() if v is not None}
    try:
        summary = run_ingest(inputs, dest, make_diarizer(diarizer, **options), sample_rate)
    except (ValueError, BackendSetupError) as exc:
        _fail(str(exc))
    counts = Counter(row["status"] for row in summary.rows)
    typer.echo(
        f"{dest}: {len(summary.rows)} recording(s): "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + f" ({summary.kept} already done); manifest {dest / 'manifest.jsonl'}"
    )


speakers_app = typer.Typer(no_args_is_help=True, help="The speaker bank.")
app.add_typer(speakers_app, name="speakers")


@speakers_app.command("check")
def speakers_check(
    bank: Annotated[
        Path | None, typer.Argument(help="speaker bank YAML (default: the embedded bank of koe's checkout)")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="the TTS backend the bank is for (voice cloning needs recordings)")
    ] = "openjtalk",
) -> None:
    """Check every speaker: reference audio readable and 3-30 s, transcript, license and source present."""
    from .speakers import EMBEDDED_BANK, check_bank, load_bank
    from .tts import needs_reference_audio

    bank = bank or EMBEDDED_BANK
    try:
        loaded = load_bank(bank)
        problems = check_bank(loaded, needs_reference_audio(backend))
    except ValueError as exc:
        _fail(str(exc))
    for speaker in loaded.speakers:
        status = "; ".join(problems[speaker.id]) if speaker.id in problems else "ok"
        typer.echo(f"{speaker.id}\t{speaker.name}\t{status}")
    if problems:
        _fail(f"{bank}: {len(problems)} of {len(loaded.speakers)} speaker(s) not usable with {backend}")
    typer.echo(f"{bank}: all {len(loaded.speakers)} speakers usable with {backend}")


TEXT_HELP = (
    "Show what the TTS will be asked to say for one turn: the spoken text, its reading, or why it is rejected.\n\n"
    "Text that starts with '-' (a markdown list) goes after '--': koe text -- '- りんご'. "
    "'-' reads the turn from stdin (all of it, newlines included, is one turn; trailing newlines dropped), "
    "and so does no text at all when stdin is not a terminal: koe text < turn.md."
)


def _read_stdin() -> str:
    import sys

    if sys.stdin is None:  # started with standard input closed
        _fail("no standard input to read the text from")
    data = typer.get_binary_stream("stdin").read()
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        _fail(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start})")


def _text_argument(words: list[str]) -> str:
    """The turn `koe text` describes: its words joined by spaces, or stdin for '-' or for none (not a terminal)."""
    import sys

    if words == ["-"]:
        return _read_stdin()
    if words:
        return " ".join(words)
    if sys.stdin is not None and not sys.stdin.isatty() and (content := _read_stdin()):
        return content
    _fail("give the text: koe text 'TEXT', koe text -- '- TEXT' when it starts with '-', or koe text - < FILE")


@app.command(help=TEXT_HELP)
def text(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TEXT",
            help="the turn, as a corpus would hold it (several words are joined by spaces); '-': read stdin",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (for scripts)")] = False,
    max_turn_chars: Annotated[int, typer.Option(help="the recipe's text.max_turn_chars")] = 600,
) -> None:
    """Show what the TTS will be asked to say: the spoken text, its reading, or why it is rejected (see TEXT_HELP)."""
    import json

    from .readings import describe_text

    result = describe_text(_text_argument(words or []), max_turn_chars=max_turn_chars)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for field in ("spoken_text", "reading", "estimated_seconds", "reject_reason"):
        typer.echo(f"{field}: {result.get(field)}")
