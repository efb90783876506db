"""Whether git would ignore a path, decided from the work tree's own ignore files, without running git.

The image carries no git: git with its perl and curl was 120 MB of the image, for the one warning that backups are
not git-ignored. So the rules git follows are followed here, over what git reads from the work tree:

- the `.gitignore` of every folder from the top of the work tree down to the path, and `.git/info/exclude`;
- a `.gitignore` deeper down wins over one higher up, which wins over info/exclude; within one file the last
  matching line wins, and a `!pattern` line re-includes;
- nothing inside an ignored folder can be re-included, so the path's folders are judged first, top down.

The patterns themselves are matched by `pathspec`'s GitIgnoreSpec, which implements git's wildmatch rules.
Not read: the user's global ignore file (core.excludesFile), which lies outside the work tree; a container never
had the runner user's copy of it either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


def work_tree_of(path: Path) -> Path | None:
    """The top of the git work tree holding `path` (the nearest folder with a `.git` in it), or None."""
    probe = path.absolute()
    while not probe.is_dir() and probe.parent != probe:
        probe = probe.parent
    for folder in (probe, *probe.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _git_dir(work_tree: Path) -> Path | None:
    """The repository folder: `.git` itself, or where a `.git` file points (worktrees, submodules)."""
    dot_git = work_tree / ".git"
    if dot_git.is_dir():
        return dot_git
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = dot_git.read_text().splitlines()[0]
        if first.startswith("gitdir:"):
            target = Path(first.removeprefix("gitdir:").strip())
            return target if target.is_absolute() else work_tree / target
    return None


def _exclude_file(work_tree: Path) -> Path | None:
    git_dir = _git_dir(work_tree)
    if git_dir is None:
        return None
    common = git_dir
    # A linked worktree keeps info/exclude in the main repository's folder, named by its `commondir` file.
    with contextlib.suppress(OSError, UnicodeDecodeError):
        named = (git_dir / "commondir").read_text().strip()
        common = Path(named) if Path(named).is_absolute() else git_dir / named
    return common / "info" / "exclude"


@cache
def _spec(path: Path) -> GitIgnoreSpec | None:
    from pathspec import GitIgnoreSpec

    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return GitIgnoreSpec.from_lines(lines)


def _decisions(work_tree: Path, parts: tuple[str, ...], is_dir: bool) -> Iterator[bool | None]:
    """For the path `parts` below `work_tree`: what each ignore file says, the one that counts first."""
    exclude = _exclude_file(work_tree)
    for depth in range(len(parts) - 1, -1, -1):
        spec = _spec(work_tree.joinpath(*parts[:depth], ".gitignore"))
        if spec is not None:
            yield spec.check_file("/".join(parts[depth:]) + ("/" if is_dir else "")).include
    if exclude is not None:
        spec = _spec(exclude)
        if spec is not None:
            yield spec.check_file("/".join(parts) + ("/" if is_dir else "")).include


def is_ignored(work_tree: Path, relative: PurePosixPath, *, is_dir: bool = False) -> bool:
    """Whether git in `work_tree` would ignore `relative` (a path inside it), as `git check-ignore` would."""
    _spec.cache_clear()  # the files may have changed since the last question
    parts = relative.parts
    for length in range(1, len(parts) + 1):
        folder = length < len(parts) or is_dir
        verdict = next((said for said in _decisions(work_tree, parts[:length], folder) if said is not None), None)
        if verdict:
            return True
    return False
