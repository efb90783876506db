"""The installed size of chrono-ci: a fresh venv, the package (a wheel, or a source folder) with the given extras,
then `du` of its site-packages and the number of distributions, pip and setuptools left out.

    .venv/bin/python bench/install_size.py dist/chrono_ci-*.whl '' '[all]'
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

LEFT_OUT = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")


def measure(package: str, extras: str) -> tuple[int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="chrono-ci-size-") as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", f"{package}{extras}"], check=True
        )
        site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        entries = [path for path in site.iterdir() if not path.name.startswith(LEFT_OUT)]
        size = subprocess.run(["du", "-sk", *map(str, entries)], capture_output=True, text=True, check=True)
        kib = sum(int(line.split()[0]) for line in size.stdout.splitlines())
        dists = sorted(path.name.removesuffix(".dist-info") for path in entries if path.name.endswith(".dist-info"))
        return kib, dists


def main() -> None:
    package, *extras = sys.argv[1:]
    for extra in extras or [""]:
        kib, dists = measure(str(Path(package).resolve()), extra)
        print(f"chrono-ci{extra or ''}: {kib / 1024:.0f} MiB in {len(dists)} distributions: {' '.join(dists)}")


if __name__ == "__main__":
    main()
