"""The docs name only files that exist: every backticked path in README.md and docs/*.md.

A full path (`dfnas/nas/arch.py`, `tests/...`, `benchmarks/...`) must exist from the repository
root; a short one (`spaces/spos.py`, `darts_ops.py`) must be the end of some file's path. `<op>`
and `*` are wildcards; a `::test_name` suffix is ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("dfnas", "tests", "scripts", "tools", "benchmarks", "csrc")  # full paths start with one of these
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
# A backticked word with a slash or a source-file ending, e.g. `dfnas/nas/arch.py`, `_fake.py`.
PATH = re.compile(r"`([\w<>*./-]*(?:/[\w<>*.-]+)+/?|[\w<>*.-]*\w\.(?:py|h|cpp|cu))(?:::\w+)?`")
SOURCE_ENDINGS = (".py", ".h", ".cpp", ".cu")
IGNORED = {"__pycache__", "build", "dist"}


def _files() -> list[str]:
    """Every file's path from the root (not under dot folders, build outputs or caches)."""
    return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
            if p.is_file() and not any(part.startswith(".") or part in IGNORED
                                       for part in p.relative_to(ROOT).parts[:-1])]


def _exists(path: str, files: list[str]) -> bool:
    """`<op>` and `*` match within one path part; a short path matches the end of a file's path."""
    pattern = re.compile("".join("[^/]*" if part in ("*", "<op>") else re.escape(part)
                                 for part in re.split(r"(<op>|\*)", path.rstrip("/"))))
    if path.split("/")[0] in TOP:
        return any(pattern.fullmatch(f) or f.startswith(path.rstrip("/") + "/") for f in files)
    depth = path.count("/") + 1
    return any(pattern.fullmatch("/".join(f.split("/")[-depth:])) for f in files)


def _missing(doc: Path, files: list[str]) -> list[str]:
    paths = [p for p in PATH.findall(doc.read_text())
             if (p.split("/")[0] in TOP or p.endswith(SOURCE_ENDINGS)) and not p.startswith(("./", "/"))]
    return [p for p in paths if not _exists(p, files)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_backticked_paths_exist(doc):
    assert not _missing(doc, _files())
