"""The workspace the runner mounts: where the backup folder is, how paths are shown (relative to it), whether git
would commit the backups, and handing what we wrote back to its owner."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath


def workspace_of(environ: Mapping[str, str]) -> Path:
    value = environ.get("GITHUB_WORKSPACE", "").strip()
    return Path(value) if value else Path.cwd()


def unignored_backup_dir(backup_dir: Path) -> Path | None:
    """The git work tree holding `backup_dir` when the folder is in one and not ignored there, else None.

    Read from the work tree's ignore files (chrono_ci/action/gitignore.py): the image has no git. Silent when
    anything is unreadable: this is a warning, never a reason to fail a backup.
    """
    from chrono_ci.action.gitignore import is_ignored, work_tree_of

    try:
        folder = backup_dir.resolve()
        root = work_tree_of(folder)
        if root is None:
            return None
        relative = Path(os.path.relpath(folder, root))
        # A file inside the folder: a `backups/` pattern only matches the folder itself once it exists.
        sample = PurePosixPath(relative.as_posix()) / "postgres_backup_2000-01-01_00-00-00.sql.zst"
        ignored = is_ignored(root, sample)
    except (OSError, ValueError):
        return None
    return None if ignored else root


def hand_over_to_workspace_owner(backup_dir: Path, workspace: Path) -> None:
    """Give what we wrote in the workspace to its owner.

    The container runs as root, the later steps of the job as the runner's user: root-owned 0600 archives in a
    0700 folder would be unreadable to an upload step. Ownership changes; the private modes stay.
    """
    if os.geteuid() != 0 or not backup_dir.is_dir():
        return
    try:
        owner = workspace.stat()
        folder, top = backup_dir.resolve(), workspace.resolve()
        folder.relative_to(top)
        targets = [*folder.iterdir()]
    except (OSError, ValueError):
        return
    if owner.st_uid == 0:
        return
    while folder != top:  # the backup folder and the folders made above it, up to the workspace itself
        targets.append(folder)
        folder = folder.parent
    for path in targets:
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == 0:
                os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def display_path(path: Path, workspace: Path) -> str:
    """Relative to the workspace when inside it: the container's /github/workspace is another path on the
    runner, and a later step's working directory is the workspace, so a relative path works there too."""
    with contextlib.suppress(ValueError):
        return Path(path).relative_to(workspace).as_posix() or "."
    return str(path)
