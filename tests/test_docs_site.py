"""The docs site: docs/ built by MkDocs (mkdocs.yml) with --strict, so that a broken link fails CI, and the README
kept a short front door that links every page.

The builds are real (`python -m mkdocs build --strict`, about two seconds each): the tree as it is must build
without a warning, and a copy with one fault planted (a link to no page, an anchor no heading makes, a page the
nav forgets) must not.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SITE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Documentation"]
README_MAX_LINES = 200  # a few screens


def _mkdocs_yml() -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return loaded


def _nav_pages(nav: Any) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.fail("MkDocs and its Material theme are needed: pip install -e '.[all]' --group dev (the docs group).")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    built = {path.parent.name or "index" for path in (tmp_path / "site").rglob("index.html")}
    assert {page.stem for page in DOCS.glob("*.md")} <= built | {"index"}
    assert (tmp_path / "site" / "schemas" / "results.schema.json").is_file()  # linked from results.md


@pytest.mark.parametrize(
    ("fault", "warning"),
    [
        ("[the plan](recoverry.md)", "contains a link 'recoverry.md', but the target is not found"),
        ("[refused](recovery.md#what-a-restore-refuses)", "does not contain an anchor '#what-a-restore-refuses'"),
        ("[codes](#no-such-heading)", "contains a link '#no-such-heading'"),
        (None, 'are not included in the "nav" configuration'),
    ],
    ids=["missing page", "missing anchor", "missing anchor on the page", "page not in the nav"],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, fault: str | None, warning: str) -> None:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    if fault is None:
        (project / "docs" / "orphan.md").write_text("# Orphan\n\nNo nav entry leads here.\n", encoding="utf-8")
    else:
        page = project / "docs" / "security.md"
        page.write_text(page.read_text(encoding="utf-8") + f"\nSee {fault}.\n", encoding="utf-8")
    done = build(project, tmp_path / "site")
    assert done.returncode != 0, done.stderr[-3000:]
    assert warning in done.stderr, done.stderr[-3000:]


def test_the_nav_lists_every_page_and_only_pages_that_exist() -> None:
    config = _mkdocs_yml()
    assert config["docs_dir"] == "docs" and config["theme"]["name"] == "material" and config["strict"] is True
    pages = list(_nav_pages(config["nav"]))
    assert len(pages) == len(set(pages)), "a page is in the nav twice"
    assert set(pages) == {path.name for path in DOCS.glob("*.md")}
    assert pages[0] == "index.md"


def test_the_readme_is_a_short_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "README.md is the front door: move the detail into docs/"
    assert "./dev demo" in text and "./dev test" in text
    assert "docker run" in text and "pip install" in text and "/chrono-ci@v1" in text


def test_the_readme_links_every_page_of_the_site() -> None:
    linked = set(re.findall(r"\]\(" + re.escape(SITE) + r"([a-z0-9-]*/?)[)#]", README.read_text(encoding="utf-8")))
    pages = {"index.md" if not url else url.rstrip("/") + ".md" for url in linked}
    assert pages >= set(_nav_pages(_mkdocs_yml()["nav"])), "README.md's Documentation should link every page"


def test_ci_builds_the_site_strictly_and_a_workflow_publishes_it() -> None:
    import yaml

    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in ci
    assert 'mkdocs" build --strict' in (ROOT / "dev").read_text(encoding="utf-8")
    docs = yaml.safe_load((ROOT / ".github" / "workflows" / "docs.yml").read_text(encoding="utf-8"))
    on = docs[True] if True in docs else docs["on"]  # PyYAML reads the key `on` as a boolean
    assert on["push"]["branches"] == ["main"]
    steps = [step for job in docs["jobs"].values() for step in job["steps"]]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    assert any("mkdocs build --strict" in step.get("run", "") for step in steps)
    assert docs["permissions"] == {"contents": "read"}
    deploy = next(job for job in docs["jobs"].values() if "actions/deploy-pages" in str(job["steps"]))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
