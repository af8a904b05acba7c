"""YAML from users (recipes, `--set` values, speaker banks), read so that no document can blow up.

PyYAML's safe loader still expands aliases (a few hundred bytes can expand to gigabytes: an alias
bomb), recurses once per nesting level (a deep document is a RecursionError) and lets Python's int
conversion raise on a number of thousands of digits. Each of these is one `ValueError` here, a
line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_ALIASES = 32  # a recipe may reuse an anchor; a document of thousands of aliases is an alias bomb


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents whose aliases could expand to an exponential size."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (an alias bomb?)")
        return super().compose_node(parent, index)


def parse_yaml(text: str, origin: str) -> Any:
    """The document in `text`; `ValueError` starting with `origin` when it is not one that can be read."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{origin}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ValueError(f"{origin}: YAML nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"{origin}: unreadable YAML value ({exc})") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """The YAML document in `path` (a `what`: 'recipe', 'speaker bank'); one-line `ValueError`s."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} file not found") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    return parse_yaml(text, str(path))
