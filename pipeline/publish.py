"""`koe publish`: a validated output to a Hub dataset repo, in commits a re-run can resume.

The repo's layout, per config (the recipe's name) and split:

    README.md                                   the card, over every config in the repo
    data/<config>/<split>/<shard>.tar           the shards (in numbered folders past 10,000)
    manifests/<config>/<split>/manifest.parquet every input row and what became of it
    manifests/<config>/<split>/summary.json     what the card says of this split
    manifests/<config>/<split>/attribution.csv  captions: every clip's credit line

The plan compares each file's sha256 with the repo's before anything is sent, so a re-run uploads
only what is missing or changed, and removes this split's files the output no longer has. Shards
go in commits of bounded size; the manifests and the card come last, in one commit, so the card
never describes shards that have not arrived. The token is huggingface_hub's own business (the
HF_TOKEN variable or `hf auth login`): koe never takes, prints or stores it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .card import render_card, summarize, summary_bytes
from .kinds import kind_named
from .shards import Output, file_sha256
from .stats import collect
from .validate import validate_output

FILES_PER_FOLDER = 10_000  # the Hub's limit on files in one folder
MAX_FILE_BYTES = 50 * 10**9  # the Hub's limit on one file
SHARD_BYTES_ADVICE = (100 * 10**6, 5 * 10**9)  # about 1 GB is what the Hub and its users expect
COMMIT_MAX_FILES = 50
COMMIT_MAX_BYTES = 20 * 10**9
CARD_PATH = "README.md"
REPO_TYPE = "dataset"


class PublishError(RuntimeError):
    """Why an output cannot be published as it is; nothing has been uploaded when it is raised."""


class HubUnreachable(PublishError):
    """No answer from the Hub at all: `--dry-run` then plans from the local output alone."""


@dataclass(frozen=True)
class RepoFile:
    """A file the repo holds after publishing: read from the output, or made here (card, summary)."""

    path_in_repo: str
    size: int
    sha256: str
    local: Path | None = None
    content: bytes | None = None

    @classmethod
    def made(cls, path_in_repo: str, content: bytes) -> RepoFile:
        return cls(path_in_repo, len(content), hashlib.sha256(content).hexdigest(), content=content)

    @classmethod
    def on_disk(cls, path_in_repo: str, local: Path, sha256: str | None = None) -> RepoFile:
        return cls(path_in_repo, local.stat().st_size, sha256 or file_sha256(local), local=local)

    def same_as(self, remote: RemoteFile | None) -> bool:
        """Whether the repo already holds these bytes at this path (LFS by sha256, others by git blob id)."""
        if remote is None or remote.size != self.size:
            return False
        if remote.sha256 is not None:
            return remote.sha256 == self.sha256
        from huggingface_hub.utils.sha import git_hash

        data = self.content if self.content is not None else self.local.read_bytes()
        return git_hash(data) == remote.blob_id


@dataclass(frozen=True)
class RemoteFile:
    size: int
    blob_id: str
    sha256: str | None  # LFS files only


@dataclass(frozen=True)
class Plan:
    """What publishing one split changes in the repo: the files not there yet, and those to remove."""

    repo_id: str
    revision: str
    config: str
    split: str
    data: list[RepoFile]  # shards to upload
    metadata: list[RepoFile]  # manifests, summary and card to upload: committed last, together
    unchanged: int  # files the repo already holds with the same bytes
    delete: list[str]  # this split's files in the repo that the output no longer has
    warnings: list[str]
    repo_exists: bool
    branch_exists: bool


def shard_paths(
    config: str, split: str, shards: list[str], per_folder: int = FILES_PER_FOLDER
) -> tuple[list[str], str]:
    """Repo paths of a split's shards and the glob that finds them; numbered folders once one would overflow."""
    base = f"data/{config}/{split}"
    if len(shards) <= per_folder:
        return [f"{base}/{shard}.tar" for shard in shards], f"{base}/*.tar"
    return [f"{base}/{i // per_folder:04d}/{shard}.tar" for i, shard in enumerate(shards)], f"{base}/*/*.tar"


def shard_size_warnings(sizes: list[int]) -> list[str]:
    """Advice on shard sizes; an empty list when they suit the Hub."""
    if not sizes:
        return []
    low, high = SHARD_BYTES_ADVICE
    median = sorted(sizes)[len(sizes) // 2]
    if max(sizes) > high:
        return [
            f"the largest shard is {max(sizes) / 1e9:.1f} GB; about 1 GB suits the Hub: lower output.rows_per_shard"
        ]
    if sum(sizes) > 10 * high and median < low:
        return [f"shards are {median / 1e6:.0f} MB (median); about 1 GB suits the Hub: raise output.rows_per_shard"]
    return []


def _remote_files(api, repo_id: str, revision: str) -> tuple[dict[str, RemoteFile], bool, bool]:
    """The repo's files at `revision` (main's when the branch is new), and whether repo and branch exist."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    def listing(ref: str) -> dict[str, RemoteFile]:
        entries = api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=ref, recursive=True)
        return {
            e.path: RemoteFile(e.size, e.blob_id, e.lfs.sha256 if e.lfs else None)
            for e in entries
            if hasattr(e, "blob_id")
        }

    try:
        try:
            return listing(revision), True, True
        except RepositoryNotFoundError:
            return {}, False, False
        except RevisionNotFoundError:
            return listing("main"), True, False
    except HfHubHTTPError:
        raise
    except Exception as exc:  # the client's transport errors (connection refused, DNS, timeouts) share no base
        raise HubUnreachable(f"the Hub could not be reached ({type(exc).__name__}: {exc})") from None


def _other_summaries(api, repo_id: str, ref: str, remote: dict[str, RemoteFile], ours: str) -> list[dict[str, Any]]:
    """The summaries of the repo's other configs and splits, so that the card keeps describing them."""
    paths = sorted(p for p in remote if p.startswith("manifests/") and p.endswith("/summary.json") and p != ours)
    summaries = []
    for path in paths:
        local = api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=ref)
        summaries.append(json.loads(Path(local).read_text(encoding="utf-8")))
    return summaries


def plan_publish(
    directory: Path, repo_id: str, split: str = "train", revision: str = "main", api: Any = None, offline: bool = False
) -> Plan:
    """Validate the output and work out what publishing it changes; reads the repo, writes nothing.

    With `offline`, an unreachable Hub is no error: the plan lists every file as new, and says so."""
    report = validate_output(directory)
    if not report.ok:
        shown = "\n  ".join(report.problems[:10])
        more = f"\n  ... and {len(report.problems) - 10} more" if len(report.problems) > 10 else ""
        raise PublishError(f"{directory} does not validate (run `koe validate {directory}`):\n  {shown}{more}")
    facts = collect(directory)
    if facts.run.state != "complete":
        raise PublishError(f"{directory}: the run is incomplete (shards failed); finish it with `koe run` first")
    if not facts.samples:
        raise PublishError(f"{directory}: no written samples to publish")
    config = facts.recipe["name"]
    too_big = [r.shard for r in facts.shards if r.tar_bytes > MAX_FILE_BYTES]
    if too_big:
        raise PublishError(f"shards over the Hub's 50 GB file limit: {', '.join(too_big)}; lower output.rows_per_shard")
    api = api or _hub_api()
    unreachable = None
    try:
        remote, repo_exists, branch_exists = _remote_files(api, repo_id, revision)
    except HubUnreachable as exc:
        if not offline:
            raise
        remote, repo_exists, branch_exists, unreachable = {}, False, False, str(exc)
    output = Output(Path(directory))
    paths, data_files = shard_paths(config, split, [r.shard for r in facts.shards])
    data = [
        RepoFile.on_disk(path, output.tar_path(record.shard), record.tar_sha256)
        for path, record in zip(paths, facts.shards, strict=True)
    ]
    folder = f"manifests/{config}/{split}"
    summary = summarize(facts, config, split, data_files)
    metadata = [
        RepoFile.on_disk(f"{folder}/manifest.parquet", output.manifest_path),
        RepoFile.made(f"{folder}/summary.json", summary_bytes(summary)),
    ]
    for name, content in kind_named(facts.kind).published_files(facts).items():
        metadata.append(RepoFile.made(f"{folder}/{name}", content))
    others = _other_summaries(api, repo_id, revision if branch_exists else "main", remote, f"{folder}/summary.json")
    card = render_card(repo_id, revision, [summary, *others])
    metadata.append(RepoFile.made(CARD_PATH, card.encode("utf-8")))
    ours = {f.path_in_repo for f in data + metadata}

    def to_upload(files: list[RepoFile]) -> list[RepoFile]:
        return [f for f in files if not f.same_as(remote.get(f.path_in_repo))]

    data_to_upload, metadata_to_upload = to_upload(data), to_upload(metadata)
    return Plan(
        repo_id,
        revision,
        config,
        split,
        data=data_to_upload,
        metadata=metadata_to_upload,
        unchanged=len(data) + len(metadata) - len(data_to_upload) - len(metadata_to_upload),
        delete=sorted(p for p in remote if p.startswith((f"data/{config}/{split}/", f"{folder}/")) and p not in ours),
        warnings=shard_size_warnings([r.tar_bytes for r in facts.shards])
        + ([f"{unreachable}: planned from the local output alone, every file listed as new"] if unreachable else []),
        repo_exists=repo_exists,
        branch_exists=branch_exists,
    )


def _hub_api():
    from huggingface_hub import HfApi

    return HfApi()  # endpoint from HF_ENDPOINT, token from HF_TOKEN or the saved login


def _batches(files: list[RepoFile]) -> list[list[RepoFile]]:
    batches: list[list[RepoFile]] = []
    size = 0
    for f in files:
        if not batches or len(batches[-1]) >= COMMIT_MAX_FILES or size + f.size > COMMIT_MAX_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(f)
        size += f.size
    return batches


def _add(f: RepoFile):
    from huggingface_hub import CommitOperationAdd

    return CommitOperationAdd(f.path_in_repo, str(f.local) if f.local is not None else f.content)


def execute(plan: Plan, private: bool, api: Any = None, echo: Callable[[str], None] = print) -> list[str]:
    """Create the repo and branch if needed, then commit what the plan says; returns the commit ids made."""
    from huggingface_hub import CommitOperationDelete

    api = api or _hub_api()
    api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if private and not api.repo_info(plan.repo_id, repo_type=REPO_TYPE).private:
        raise PublishError(f"{plan.repo_id} exists and is public; --private does not change that: nothing uploaded")
    if plan.revision != "main":
        api.create_branch(plan.repo_id, repo_type=REPO_TYPE, branch=plan.revision, exist_ok=True)
    commits = []
    where = f"{plan.config}/{plan.split}"
    total, done = len(plan.data), 0
    for batch in _batches(plan.data):
        message = f"koe: {where} shards {done + 1}-{done + len(batch)} of {total}"
        info = api.create_commit(
            plan.repo_id,
            [_add(f) for f in batch],
            commit_message=message,
            repo_type=REPO_TYPE,
            revision=plan.revision,
        )
        done += len(batch)
        commits.append(info.oid)
        echo(f"{message}: {sum(f.size for f in batch) / 1e6:.1f} MB, commit {info.oid[:10]}")
    operations = [_add(f) for f in plan.metadata]
    operations += [CommitOperationDelete(path) for path in plan.delete]
    if operations:
        message = f"koe: {where} manifests and dataset card"
        info = api.create_commit(
            plan.repo_id, operations, commit_message=message, repo_type=REPO_TYPE, revision=plan.revision
        )
        commits.append(info.oid)
        echo(f"{message}: commit {info.oid[:10]}")
    return commits
