"""Loading the code location prints no warnings of shaper's making, from a checkout in a folder
of any name.

Dagster names a dg project after its folder unless [tool.dg.project] says otherwise, and logged a
mismatch warning for every component when that was not shaper_pipelines; and Dagster 1.13 warns
about beta and deprecated parameters. The check loads a copy of the project, in a folder named
otherwise, the way `dagster definitions validate -w workspace.yaml` does (in-process, under the
workspace's location name), with every Python warning turned on and sent through logging."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from shaper_pipelines_tests.conftest import PROJECT

FROM = """
    import shaper_pipelines
    print("SHAPER_FROM", shaper_pipelines.__file__, flush=True)
"""
LOADS = {
    # As `dagster dev` and `dagster definitions validate -w workspace.yaml` load it: in a workspace,
    # under its location name.
    "workspace": FROM + """
    import sys, warnings
    # Dagster's own command-line deprecation, not shaper's configuration.
    warnings.filterwarnings("ignore", message="Function `definitions_validate_command` is superseded")
    sys.argv = ["dagster", "definitions", "validate", "-w", "workspace.yaml"]
    from dagster._cli import main
    main()
""",
    # As `shaper run` and the tests load it: in-process, every job resolved (Dagster binds the
    # resources to the jobs and to the sensors that target them), every module imported directly.
    "in_process": FROM + """
    import importlib, pkgutil
    from shaper_pipelines.definitions import defs
    definitions = defs()
    definitions.resolve_all_job_defs()
    definitions.resolve_all_asset_specs()
    import shaper_pipelines.defs
    for module in pkgutil.walk_packages(shaper_pipelines.defs.__path__, "shaper_pipelines.defs."):
        importlib.import_module(module.name)
    print("LOADED", flush=True)
""",
}

# A Python warning (as printed, or as logged by the validate command's captureWarnings) or a log
# record at WARNING or above.
NOISE = re.compile(r"\w+Warning\b|- (WARNING|ERROR|CRITICAL) -")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("how", sorted(LOADS))
def test_the_code_location_loads_quietly_from_a_folder_not_named_shaper_pipelines(tmp_path, how):
    checkout = tmp_path / "checkout-xyz"
    checkout.mkdir()
    for name in ("pyproject.toml", "workspace.yaml", "dagster.yaml"):
        shutil.copy2(PROJECT / name, checkout / name)
    for name in ("shaper_pipelines", "profiles_data"):
        shutil.copytree(PROJECT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SHAPER_DATABASE_URL")}
    env.update(PYTHONPATH=str(checkout), SHAPER_HOME=str(tmp_path / "shaper_home"), PYTHONWARNINGS="always")
    result = subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(LOADS[how])], cwd=checkout,
                            env=env, capture_output=True, text=True, timeout=600)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, output[-5000:]
    # The copy was loaded, not the checkout the tests run from.
    assert f"SHAPER_FROM {checkout / 'shaper_pipelines' / '__init__.py'}" in output, output[-5000:]
    done = "Validation successful for code location shaper_pipelines" if how == "workspace" else "LOADED"
    assert done in output, output[-5000:]
    noise = [line for line in output.splitlines() if NOISE.search(line)]
    assert noise == [], "\n".join(noise[:20])
