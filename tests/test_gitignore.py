"""The git-ignore check without git (chrono_ci/action/gitignore.py) says what `git check-ignore` says.

The image has no git, so the Action reads the ignore files itself; here, on a machine with git, every answer is
compared with git's own on the same work tree: nested .gitignore files, negations, anchored and directory-only
patterns, `**`, info/exclude, a linked worktree, and a re-include under an ignored folder (which git refuses).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from chrono_ci.action.gitignore import is_ignored, work_tree_of
from chrono_ci.action.workspace import unignored_backup_dir

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to compare with (apt install git)")

FILE = "postgres_backup_2000-01-01_00-00-00.sql.zst"

CASES = [
    "backups",
    "backups/sub",
    "data/backups",
    "nested/deeper/backups",
    "kept/backups",
    "anchored",
    "deep/anchored",
    "dumps",
    "logs/today",
    "logs/keep",
    "vendor/any/where/backups",
    "excluded-by-info",
    "re/included",
    "plain",
    "star.d/backups",
]


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "core.excludesFile=/dev/null", "-c", "safe.directory=*", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def make_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    assert git(root, "init", "-q").returncode == 0
    (root / ".gitignore").write_text(
        "# the usual\nbackups/\n/anchored\ndumps\nlogs/*\n!logs/keep\nre/\n!re/included\n**/any/**/backups\n"
    )
    (root / "kept").mkdir()
    (root / "kept" / ".gitignore").write_text("!backups/\n")
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / ".gitignore").write_text("*.zst\n")
    (root / "star.d").mkdir()
    (root / "star.d" / ".gitignore").write_text("!*\n")
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("excluded-by-info/\n")
    return root


def git_says(root: Path, relative: str) -> bool:
    done = git(root, "check-ignore", "-q", "--", relative)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


@pytest.mark.parametrize("folder", CASES)
def test_same_answer_as_git(tmp_path: Path, folder: str) -> None:
    root = make_tree(tmp_path / "repo")
    relative = f"{folder}/{FILE}"
    assert is_ignored(root, PurePosixPath(relative)) == git_says(root, relative), relative


def test_a_linked_worktree_reads_the_main_repositorys_info_exclude(tmp_path: Path) -> None:
    main = make_tree(tmp_path / "main")
    (main / "tracked").write_text("x\n")
    assert git(main, "add", "tracked").returncode == 0
    done = git(main, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    assert done.returncode == 0, done.stderr
    linked = tmp_path / "linked"
    assert git(main, "worktree", "add", "-q", str(linked)).returncode == 0
    assert (linked / ".git").is_file()
    assert work_tree_of(linked / "excluded-by-info" / "deep") == linked
    relative = f"excluded-by-info/{FILE}"
    assert git_says(linked, relative) is True
    assert is_ignored(linked, PurePosixPath(relative)) is True


def test_the_warnings_answer(tmp_path: Path) -> None:
    """unignored_backup_dir: the work tree when the folder would be committed, else None."""
    root = make_tree(tmp_path / "repo")
    assert unignored_backup_dir(root / "backups") is None
    assert unignored_backup_dir(root / "plain" / "backups") is None  # `backups/` matches at any depth
    assert unignored_backup_dir(root / "kept" / "backups") == root.resolve()
    assert unignored_backup_dir(root / "plain") == root.resolve()
    assert unignored_backup_dir(root) == root.resolve()
    assert unignored_backup_dir(tmp_path / "outside") is None  # no work tree at all
