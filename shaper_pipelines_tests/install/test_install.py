"""The README's commands are polite to the machine they run on: system packages are listed before
anything is installed and can be declined, pip's failures stop the install, and no process is
ended by name.

Each test runs the real ``scripts/install`` from a copy of the project in a temporary directory,
so the project's own .venv is never touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shaper_pipelines_tests.conftest import PROJECT

# Tools the script itself uses; everything else is left off PATH so the packages look missing.
BASE_TOOLS = ["bash", "sha256sum", "cut", "id", "ls", "grep", "dirname", "touch", "cat", "env"]


def _project_copy(tmp_path: Path, pyproject: str) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT / "scripts" / "install", root / "scripts" / "install")
    (root / "pyproject.toml").write_text(pyproject)
    return root


def _path_without_packages(tmp_path: Path) -> tuple[str, Path]:
    """A PATH holding only the script's own tools, plus an apt-get and a sudo that record being
    called (a stand-in only for the calls this test must prove never happen)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in BASE_TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    for tool in ("apt-get", "sudo"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\n")
        (bin_dir / tool).chmod(0o755)
    return str(bin_dir), calls


def test_missing_system_packages_are_listed_and_can_be_declined(tmp_path):
    pyproject = (PROJECT / "pyproject.toml").read_text()
    root = _project_copy(tmp_path, pyproject)
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    os.symlink(sys.executable, venv_bin / "python")
    # Already installed as far as the script can tell: this test is about the system packages.
    digest = hashlib.sha256(pyproject.encode()).hexdigest()[:16]
    (root / ".venv" / f".installed-{digest}-test").touch()
    path, calls = _path_without_packages(tmp_path)

    result = subprocess.run(["bash", str(root / "scripts" / "install"), "test"], capture_output=True, text=True,
                            env={"PATH": path, "PYTHON": sys.executable, "SHAPER_SYSTEM_PACKAGES": "no"},
                            stdin=subprocess.DEVNULL, timeout=60)

    assert result.returncode == 1, result.stderr
    for package in ("prometheus", "stress-ng", "chromium", "chromium-driver"):
        assert f"  {package}: " in result.stderr, result.stderr
    assert "apt-get install --no-install-recommends" in result.stderr
    assert not calls.exists(), calls.read_text()


def test_a_pip_failure_stops_the_install_with_pips_own_message(tmp_path):
    root = _project_copy(tmp_path, '[project]\nname = "shaper-install-check"\nversion = "0"\n'
                                   'dependencies = ["shaper-no-such-package-anywhere==0.0.1"]\n')
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True, timeout=120)

    result = subprocess.run(["bash", str(root / "scripts" / "install")], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable}, stdin=subprocess.DEVNULL, timeout=300)

    assert result.returncode != 0, result.stderr
    assert "shaper-no-such-package-anywhere" in result.stderr, result.stderr
    assert not list((root / ".venv").glob(".installed-*")), "a failed install must not be stamped as done"


def test_the_commands_end_no_process_by_name():
    for script in ("install", "test", "demo"):
        text = (PROJECT / "scripts" / script).read_text()
        for word in ("pkill", "killall"):
            assert word not in text, f"scripts/{script} uses {word}"
