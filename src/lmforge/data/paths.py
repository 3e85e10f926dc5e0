"""Turn the user's ``--source.paths`` (files, directories, glob patterns) into a sorted file list.

Sorting everything makes a run reproducible: the same paths always give the same documents
in the same order, whatever order the file system lists them in. A path that does not exist
or a pattern that matches nothing is a mistake in the command, so it raises at once rather
than quietly producing a smaller corpus.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator

from lmforge.data.document import SourceOptions
from lmforge.errors import DataError

_GLOB_CHARS = ("*", "?", "[")


def walk_files(root: str, suffixes: tuple[str, ...] | None = None,
               skip_dir_names: Iterable[str] = ()) -> Iterator[str]:
    """Regular files under ``root`` sorted by path, skipping hidden entries (``.git``...).

    ``suffixes`` keeps only names ending in one of them (None keeps every file);
    directories named in ``skip_dir_names`` are not entered.
    """
    skip = set(skip_dir_names)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in skip]
        for name in filenames:
            if name.startswith(".") or (suffixes is not None and not name.endswith(suffixes)):
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found.append(path)
    yield from sorted(found)


def expand_paths(patterns: list[str], kind: str, suffixes: tuple[str, ...] | None,
                 options: SourceOptions = SourceOptions()) -> list[str]:
    """Expand files, directories (recursively, filtered by ``suffixes``) and globs, deduplicated.

    Files named explicitly or matched by a glob are always taken; ``suffixes`` only filters
    what a directory walk finds. Something that is neither a file nor a directory (a FIFO, a
    device: reading it could block forever) is refused. Errors name the paths option as
    ``options`` spell it.
    """
    where = options.paths
    if not patterns:
        raise DataError(f"{options.kind_is(kind)} needs input files: pass {where} FILE, DIR or 'GLOB'")
    files: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if any(c in pattern for c in _GLOB_CHARS):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise DataError(f"glob '{pattern}' matches no files: check the pattern "
                                f"(and quote it so the shell does not expand it)")
        elif os.path.exists(pattern):
            matches = [pattern]
        else:
            raise DataError(f"path '{pattern}' does not exist: check {where}")
        found: list[str] = []
        for match in matches:
            if os.path.isdir(match):
                found.extend(walk_files(match, suffixes))
            elif os.path.isfile(match):
                found.append(match)
            else:
                raise DataError(f"'{match}' is not a regular file or a directory (a FIFO, a device, a broken "
                                f"link?): point {where} at files")
        if not found:
            wanted = "files" if suffixes is None else "files ending in " + ", ".join(suffixes)
            raise DataError(f"'{pattern}' holds no {wanted}: point {where} at your data")
        for path in found:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files
