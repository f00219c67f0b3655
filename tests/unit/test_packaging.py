"""Files the code reads at run time ship in the wheel: each lies inside the package and matches
a ``[tool.setuptools.package-data]`` glob (a checkout-only path breaks ``pip install autonomic``)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import autonomic
from autonomic.config import builtin_patterns_dir
from autonomic.demo import scenario

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(autonomic.__file__).resolve().parent


def _globs() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["tool"]["setuptools"]["package-data"]["autonomic"])


def _shipped(path: Path) -> bool:
    rel = path.resolve().relative_to(PACKAGE).as_posix()  # ValueError outside the package
    return any(fnmatch.fnmatch(rel, g) for g in _globs())


def test_the_builtin_pattern_library_ships_in_the_package() -> None:
    files = sorted(builtin_patterns_dir().glob("*.yaml"))
    assert len(files) >= 4
    assert all(_shipped(f) for f in files), [f.name for f in files if not _shipped(f)]


def test_the_demo_config_template_and_its_patterns_ship_in_the_package() -> None:
    files = [scenario._HERE / "demo.yaml", *sorted((scenario._HERE / "patterns").glob("*.yaml"))]
    assert len(files) >= 2 and all(f.exists() for f in files)
    assert all(_shipped(f) for f in files), [f.name for f in files if not _shipped(f)]


def test_a_file_outside_the_package_data_is_caught() -> None:
    assert not _shipped(PACKAGE / "patterns" / "notes.txt")
