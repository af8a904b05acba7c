#!/usr/bin/env python3
"""Resolve koe's GPU environments (cluster/envs/) with pip's resolver, and check their lock files.

Each environment is an input file `cluster/envs/ENV.in` (what it needs, by hand) and a lock `ENV.txt` (every
package of the resolved set pinned with ==, generated from the .in by this script). cluster/install_env.sh
installs a lock as it is.

    python cluster/check_envs.py                 # every lock: resolves as it is, is closed, and meets its .in
    python cluster/check_envs.py cosyvoice vllm  # only these environments
    python cluster/check_envs.py --fresh         # also resolve each .in from scratch and show what moved
    python cluster/check_envs.py --lock [ENV...] # (re)write the locks from their .in files

Resolution is pip's (`pip install --dry-run --ignore-installed --report`), for the cluster's nodes: CPython 3.11
on x86_64 Linux with glibc 2.35 or newer, wheels only (--only-binary=:all: with --platform). Two markers in a
requirement's trailing comment extend that:
    # sdist          the package has no wheel and is built from source on the node (install_env.sh); the check
                     downloads its sdist and hands pip a metadata-only wheel of the same name and version that
                     states the requirements the sdist declares (egg-info/requires.txt, else PKG-INFO)
    # index: URL     install_env.sh takes this pin from URL (e.g. the onnxruntime CUDA 12 feed); its
                     dependencies are resolved from the same version on the main index

pip runs isolated from this machine's pip configuration (PIP_CONFIG_FILE=/dev/null, no PIP_* variables), from
a pinned pip in a throwaway virtual environment, against one index: https://pypi.org/simple unless
--index-url or KOE_ENVS_INDEX_URL says otherwise. Nothing is cached between runs (pip's cache is a temporary
folder of the run, shared by its resolutions).

Exit status: 0 all good; 1 an environment does not resolve or a lock is wrong (each problem is named);
2 usage; 3 the package index cannot be reached (nothing was checked).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email.parser
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

ENVS = Path(__file__).resolve().parent / "envs"
SHARED_INPUTS = {"koe-actor.in", "cosyvoice-common.in"}  # included by the others, not environments
DEFAULT_INDEX = "https://pypi.org/simple"
PIP_VERSION = "26.3"  # the resolver that wrote the locks; a run uses it whatever pip this machine has
PYTHON_VERSION = "3.11"
# The nodes run Ray's images, which are Ubuntu-based: the manylinux tags a glibc 2.35 system (Ubuntu 22.04)
# runs, which newer ones run too (vLLM 0.33's llguidance has no x86_64 wheel older than manylinux_2_31);
# manylinux2014 brings manylinux2010 and manylinux1 with it
GLIBC = "2.35"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)] + ["manylinux2014_x86_64"]
# the environment markers of those nodes, for following requirements the way pip does
TARGET = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_version": f"{PYTHON_VERSION}.0",
    "platform_release": "",
    "platform_version": "",
}
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_NO_INDEX = 0, 1, 2, 3


class NoIndex(Exception):
    """The package index did not answer."""


@dataclass
class Line:
    """One requirement of an .in or lock file, with its markers."""

    text: str  # the requirement as written, without the comment
    requirement: Requirement
    sdist: bool = False
    index: str | None = None

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def pinned(self) -> str | None:
        """The version of an exact `name==version` pin, else None."""
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            return specs[0].version
        return None


@dataclass
class Outcome:
    env: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def read_requirements(path: Path, seen: tuple[Path, ...] = ()) -> list[Line]:
    """Requirement lines of a requirements file, following `-r FILE`; comments and blank lines skipped."""
    if path in seen:
        raise ValueError(f"{path.name}: includes itself")
    lines: list[Line] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text, _, comment = raw.partition("#") if not raw.lstrip().startswith("#") else ("", "", raw)
        text = text.strip()
        if not text:
            continue
        if text.startswith(("-r ", "--requirement ")):
            lines += read_requirements(path.parent / text.split(None, 1)[1], (*seen, path))
            continue
        if text.startswith("-"):
            raise ValueError(f"{path.name}:{number}: options are not supported here: {text}")
        try:
            requirement = Requirement(text)
        except Exception as exc:
            raise ValueError(f"{path.name}:{number}: {exc}") from None
        index = re.search(r"\bindex:\s*(\S+)", comment)
        lines.append(Line(text, requirement, re.search(r"\bsdist\b", comment) is not None, index and index[1]))
    return lines


def environments() -> list[str]:
    return sorted(p.stem for p in ENVS.glob("*.in") if p.name not in SHARED_INPUTS)


# --- the package index -------------------------------------------------------------------------


def index_url(args) -> str:
    return (args.index_url or os.environ.get("KOE_ENVS_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def ca_bundle() -> str | None:
    """The CA bundle this machine's tools are told to use, if any (pip's own config is not read)."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(name)
        if path and Path(path).is_file():
            return path
    return None


def fetch(url: str, accept: str = "*/*", timeout: float = 30) -> tuple[bytes, str]:
    import ssl

    context = ssl.create_default_context(cafile=ca_bundle())
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "koe-check-envs"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.read(), response.headers.get("Content-Type", "")


def require_index(url: str) -> None:
    try:
        fetch(f"{url}/pip/", "application/vnd.pypi.simple.v1+json, text/html;q=0.1", timeout=20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NoIndex(f"the package index {url} cannot be reached ({reason})") from None


def sdist_requirements(url: str, line: Line) -> list[str]:
    """The install requirements an sdist states (egg-info/requires.txt), read from the index's copy."""
    name, version = line.requirement.name, line.pinned
    if version is None:
        raise ValueError(f"{line.text}: an sdist is pinned with ==")
    page, kind = fetch(f"{url}/{canonicalize_name(name)}/", "application/vnd.pypi.simple.v1+json, text/html;q=0.1")
    spelled = "[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", name))
    wanted = re.compile(rf"{spelled}-{re.escape(version)}\.(tar\.gz|zip)", re.I)
    if "json" in kind:
        files = [(f["filename"], f["url"], f.get("hashes", {})) for f in json.loads(page)["files"]]
    else:  # a PEP 503 HTML page
        files = [
            (Path(href.split("#")[0]).name, href, {})
            for href in re.findall(r'href="([^"]+)"', page.decode("utf-8", "replace"))
        ]
    for filename, link, hashes in files:
        if wanted.fullmatch(filename):
            data, _ = fetch(urllib.parse.urljoin(f"{url}/{canonicalize_name(name)}/", link), timeout=120)
            if "sha256" in hashes and hashlib.sha256(data).hexdigest() != hashes["sha256"]:
                raise ValueError(f"{filename}: sha256 differs from the index's")
            return parse_requires_txt(data, filename)
    raise ValueError(f"{name}=={version}: the index has no sdist {name}-{version}.tar.gz or .zip")


def parse_requires_txt(data: bytes, filename: str) -> list[str]:
    """An sdist's install requirements: its egg-info/requires.txt, else its PKG-INFO's Requires-Dist."""
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [name for name in archive.namelist() if not name.endswith("/")]
            files = {name.split("/", 1)[-1]: archive.read(name) for name in names}
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            files = {m.name.split("/", 1)[-1]: archive.extractfile(m).read() for m in members}
    requires = next((files[name] for name in sorted(files) if name.endswith(".egg-info/requires.txt")), None)
    if requires is None:
        if "PKG-INFO" not in files:
            raise ValueError(f"{filename}: neither egg-info/requires.txt nor PKG-INFO in the sdist")
        info = email.parser.Parser().parsestr(files["PKG-INFO"].decode("utf-8"))
        stated = [Requirement(r) for r in info.get_all("Requires-Dist") or []]
        return [str(r) for r in stated if r.marker is None or "extra" not in str(r.marker)]
    text = requires.decode("utf-8")
    requirements, section = [], ""
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("["):
            section = raw.strip("[]")
        elif raw and not section:
            requirements.append(raw)
        elif raw and section.startswith(":"):  # [:marker] holds requirements under that marker
            requirements.append(f"{raw}; {section[1:]}")
    return requirements


# --- pip ---------------------------------------------------------------------------------------


class Pip:
    """A pinned pip in a throwaway virtual environment, run isolated from this machine's pip configuration."""

    def __init__(self, url: str, workdir: Path):
        self.url = url
        self.workdir = workdir
        self.cache = workdir / "cache"  # shared by this run's resolutions, removed with the run
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        self.env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        self.common = ["--isolated", "--index-url", url, "--cache-dir", str(self.cache), "--timeout", "60"]
        if ca_bundle():
            self.common += ["--cert", ca_bundle()]
        home = workdir / "pip-venv"
        venv.EnvBuilder(with_pip=True).create(home)
        self.python = str(home / "bin" / "python")
        self.run(["install", "--quiet", f"pip=={PIP_VERSION}"], check=True)

    def run(self, arguments: list[str], check: bool = False) -> subprocess.CompletedProcess:
        command = [self.python, "-m", "pip", *arguments[:1], *self.common, *arguments[1:]]
        done = subprocess.run(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800
        )
        if check and done.returncode:
            raise RuntimeError(f"pip {' '.join(arguments)} failed:\n{done.stdout[-3000:]}")
        return done

    def resolve(self, lines: list[Line], sdists: dict[str, list[str]], name: str) -> dict:
        """pip's resolution of `lines` for the cluster's nodes: the --report, or ResolutionFailed."""
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        (folder / "requirements.txt").write_text("".join(f"{line.text}\n" for line in lines), encoding="utf-8")
        stub_wheels(folder / "sdists", lines, sdists)
        abi = f"cp{PYTHON_VERSION.replace('.', '')}"
        target = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", abi]
        for platform in PLATFORMS:
            target += ["--platform", platform]
        done = self.run(
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--only-binary=:all:",
                *target,
                # wheels without PEP 658 metadata on the index (old torch releases): read the metadata
                # from the wheel with HTTP range requests instead of downloading it whole
                "--use-feature=fast-deps",
                "--find-links",
                str(folder / "sdists"),
                "--report",
                str(folder / "report.json"),
                "-r",
                str(folder / "requirements.txt"),
            ]
        )
        if done.returncode:
            texts = {str(number): line.text for number, line in enumerate(lines, 1)}
            explained = re.sub(
                r"-r \S+requirements\.txt \(line (\d+)\)", lambda m: texts.get(m[1], m[0]), pip_error(done.stdout)
            )
            raise ResolutionFailed(explained)
        return json.loads((folder / "report.json").read_text(encoding="utf-8"))


class ResolutionFailed(Exception):
    """pip found no set of versions, or could not read the index."""


def pip_error(output: str) -> str:
    """pip's explanation (the conflict and its causes), without progress, notices and version noise."""
    noise = (
        "WARNING: pip is using lazily",
        "[notice]",
        "Collecting ",
        "Obtaining dependency",
        "Downloading ",
        "ERROR: Ignored the following versions",
        "INFO: pip is looking at multiple versions",
        "Using cached",
    )
    lines = [line for line in output.splitlines() if line.strip() and not line.lstrip().startswith(noise)]
    start = next((i for i, line in enumerate(lines) if line.startswith("ERROR")), max(len(lines) - 25, 0))
    return "\n".join(lines[start:][:60])


# --- what a resolution means for a lock ---------------------------------------------------------


def installed(report: dict) -> dict[str, dict]:
    """The resolved set: canonical name -> the report's metadata of that package."""
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in report["install"]}


def closure(roots: list[Requirement], metadata: dict[str, dict]) -> set[str]:
    """Names reachable from `roots` through the resolved packages' requirements, as pip follows them."""
    seen: set[tuple[str, str]] = set()
    stack = [(canonicalize_name(r.name), extra) for r in roots if applies(r, "") for extra in ("", *r.extras)]
    while stack:
        name, extra = stack.pop()
        if (name, extra) in seen or name not in metadata:
            continue
        seen.add((name, extra))
        for text in metadata[name].get("requires_dist", []):
            requirement = Requirement(text)
            if applies(requirement, extra):
                child = canonicalize_name(requirement.name)
                stack += [(child, "")] + [(child, e) for e in requirement.extras]
    return {name for name, _ in seen}


def applies(requirement: Requirement, extra: str) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({**TARGET, "extra": extra})


def stub_wheels(folder: Path, lines: list[Line], sdists: dict[str, list[str]]) -> None:
    """A metadata-only wheel per sdist, stating the sdist's own requirements, for pip's resolver to pick up.

    The resolver reads only metadata in a dry run, so it treats the sdist as the wheel it will be built into,
    and requirements on it (hydra-core's on antlr4-python3-runtime) are met by the pin.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for line in lines:
        if not line.sdist or line.name not in sdists:
            continue
        dist, version = line.name.replace("-", "_"), line.pinned
        info = f"{dist}-{version}.dist-info"
        metadata = f"Metadata-Version: 2.1\nName: {line.requirement.name}\nVersion: {version}\n"
        metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in sdists[line.name])
        files = {
            f"{info}/METADATA": metadata,
            f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: koe-check-envs\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        }
        files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
        with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as wheel:
            for name, text in files.items():
                wheel.writestr(name, text)


def lock_header(env: str, url: str) -> str:
    return f"""\
# {env}: the lock of cluster/envs/{env}.in, every package of the resolved set pinned.
# Generated by `python cluster/check_envs.py --lock {env}`: pip {PIP_VERSION}'s resolver for CPython {PYTHON_VERSION}
# on manylinux x86_64 with glibc >= {GLIBC}, wheels only, from {url}.
# Do not edit: change the .in and regenerate. `python cluster/check_envs.py` checks that this set resolves as
# it is and meets the .in. `cluster/install_env.sh {env}` installs it as it is (pip --no-deps), and koe with
# --no-deps beside it.
# "# sdist": no wheel; install_env.sh builds it, and its requirements (read from the sdist) are resolved here.
# "# index: URL": install_env.sh takes this pin from URL; its dependencies were resolved from the same version
# on the index above.
"""


def write_lock(env: str, inputs: list[Line], report: dict, url: str) -> str:
    metadata = installed(report)
    special = {line.name: line for line in inputs if line.sdist or line.index}
    pins = {name: f"{meta['name']}=={meta['version']}" for name, meta in metadata.items()}
    for name, line in special.items():
        markers = (["sdist"] if line.sdist else []) + ([f"index: {line.index}"] if line.index else [])
        pins[name] += "  # " + " ".join(markers)
    header = lock_header(env, url)
    return header + "".join(f"{pins[name]}\n" for name in sorted(pins))


def check_env(env: str, pip: Pip, fresh: bool, lock: bool) -> Outcome:
    outcome = Outcome(env)
    started = time.monotonic()
    try:
        inputs = read_requirements(ENVS / f"{env}.in")
        sdists = {line.name: sdist_requirements(pip.url, line) for line in inputs if line.sdist}
        lock_path = ENVS / f"{env}.txt"
        if lock or fresh:
            report = pip.resolve(inputs, sdists, env)
            text = write_lock(env, inputs, report, pip.url)
            if lock:
                lock_path.write_text(text, encoding="utf-8")
                outcome.notes.append(f"wrote {lock_path} ({len(report['install'])} packages)")
            elif lock_path.is_file():
                outcome.notes += drift(read_requirements(lock_path), installed(report))
        if not lock_path.is_file():
            outcome.problems.append(f"no lock {lock_path.name}: run python cluster/check_envs.py --lock {env}")
            return outcome
        outcome.problems += check_lock(env, inputs, read_requirements(lock_path), sdists, pip)
    except ResolutionFailed as exc:
        outcome.problems.append(f"pip's resolver:\n{exc}")
    except (ValueError, OSError, urllib.error.URLError) as exc:
        outcome.problems.append(str(exc))
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome


def check_lock(env: str, inputs: list[Line], lock: list[Line], sdists: dict[str, list[str]], pip: Pip) -> list[str]:
    problems = []
    pins = {}
    for line in lock:
        if line.pinned is None or line.requirement.marker or line.requirement.extras:
            problems.append(f"{env}.txt: {line.text!r} is not a plain name==version pin")
        pins[line.name] = line
    wanted = {line.name: line for line in inputs}
    for name, line in wanted.items():
        pin = pins.get(name)
        if pin is None:
            if applies(line.requirement, ""):
                problems.append(f"{env}.txt lacks {line.requirement.name}, which {env}.in asks for")
        elif (pin.sdist, pin.index) != (line.sdist, line.index):
            problems.append(f"{env}.txt: {pin.text} does not carry the sdist/index marker its .in line has")
    if problems:
        return problems
    # The pins together with the .in's own requirements: pip either accepts exactly this set or names the clash.
    metadata = installed(pip.resolve([*lock, *inputs], sdists, env))
    expected = set(pins)
    for name in sorted(set(metadata) - expected):
        needs = f"{metadata[name]['name']}=={metadata[name]['version']}"
        problems.append(f"{env}.txt is not closed: the resolution also needs {needs}")
    needed = closure([line.requirement for line in inputs], metadata)
    for name in sorted(expected - needed):
        problems.append(f"{env}.txt pins {pins[name].text}, which nothing in {env}.in needs")
    return problems


def drift(lock: list[Line], metadata: dict[str, dict]) -> list[str]:
    """How a fresh resolution of the .in differs from the lock (new releases since it was written)."""
    pinned = {line.name: line.pinned for line in lock}
    fresh = {name: meta["version"] for name, meta in metadata.items()}
    moved = [f"{n} {pinned[n]} -> {fresh[n]}" for n in sorted(set(pinned) & set(fresh)) if pinned[n] != fresh[n]]
    moved += [f"{n} (new) {fresh[n]}" for n in sorted(set(fresh) - set(pinned))]
    moved += [f"{n} {pinned[n]} (gone)" for n in sorted(set(pinned) - set(fresh))]
    if not moved:
        return ["a fresh resolution of the .in gives the lock exactly"]
    return ["a fresh resolution of the .in differs from the lock (regenerate with --lock to take it):", *moved]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("envs", nargs="*", help=f"environments (default: all of {', '.join(environments())})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lock", action="store_true", help="resolve each .in and write its lock, then check it")
    mode.add_argument("--fresh", action="store_true", help="also resolve each .in from scratch and show the drift")
    parser.add_argument("--index-url", help=f"the package index (default: $KOE_ENVS_INDEX_URL or {DEFAULT_INDEX})")
    parser.add_argument("--envs-dir", type=Path, help="the folder of .in and lock files (default: cluster/envs)")
    parser.add_argument("--jobs", type=int, default=3, help="resolutions at once (default 3)")
    args = parser.parse_args(argv)
    global ENVS
    ENVS = (args.envs_dir or ENVS).resolve()
    unknown = sorted(set(args.envs) - set(environments()))
    if unknown:
        parser.error(f"unknown environment(s) {', '.join(unknown)}; known: {', '.join(environments())}")
    envs = args.envs or environments()
    if not envs:
        parser.error(f"no environment (.in file) in {ENVS}")
    url = index_url(args)
    started = time.monotonic()
    try:
        require_index(url)
        workdir = Path(tempfile.mkdtemp(prefix="koe-check-envs-"))
        try:
            pip = Pip(url, workdir)
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                outcomes = list(pool.map(lambda env: check_env(env, pip, args.fresh, args.lock), envs))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except NoIndex as exc:
        print(f"check_envs: {exc}: nothing was checked", file=sys.stderr)
        return EXIT_NO_INDEX
    except RuntimeError as exc:  # pip itself could not be set up
        if "Could not find a version" in str(exc) or "connection" in str(exc).lower():
            print(f"check_envs: {url} did not serve pip {PIP_VERSION}: nothing was checked\n{exc}", file=sys.stderr)
            return EXIT_NO_INDEX
        raise
    failed = [o for o in outcomes if o.problems]
    for outcome in outcomes:
        verdict = "FAILED" if outcome.problems else "ok"
        print(f"{outcome.env}: {verdict} ({outcome.seconds:.0f} s)")
        for note in outcome.notes:
            print(f"  {note}")
        for problem in outcome.problems:
            print("  " + problem.replace("\n", "\n    "))
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} environments ok in {time.monotonic() - started:.0f} s")
    return EXIT_PROBLEM if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
