"""The `koe` command line (also `python -m pipeline`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .recipe import RecipeError, load_recipe

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="koe: Japanese speech training data from text corpora."
)


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="output folder (default: out/<recipe name>)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N input rows")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="join a Ray cluster ('auto' or an address); default: start Ray locally")
    ] = None,
    executor: Annotated[str, typer.Option(help="'ray' (default) or 'inline' (this process, for debugging)")] = "ray",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a recipe key: a.b=value (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="redo every shard, even over output of another recipe")] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Render a recipe into WebDataset shards plus a manifest; resumes finished shards."""
    from .executors import make_executor
    from .run import OutputConflict, run_recipe

    try:
        config = load_recipe(recipe, set_ or [])
        runner = make_executor(executor, ray_address)
        summary = run_recipe(
            config, output or Path("out") / config.name, runner, limit=limit, force=force, show_progress=progress
        )
    except (RecipeError, OutputConflict, ValueError) as exc:
        _fail(str(exc))
    result = summary.to_dict()
    typer.echo(
        f"{result['inputs']} rows: {result['written']} written, {result['rejected']} rejected, "
        f"{result['failed']} failed; "
        f"{result['audio_hours'] * 3600:.1f} s of audio in {result['shards']} shard(s)"
    )
    for reason, count in result["rejects_by_reason"].items():
        typer.echo(f"  rejected {count}x: {reason}")
    if summary.shards_failed:
        _fail(f"{len(summary.shards_failed)} shard(s) failed; run again to retry: {', '.join(summary.shards_failed)}")


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
