"""Project hygiene that users and CI hit first: the install files agree, the README's commands are real.

These read files only; every other test exercises real parts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, (
        f"only in pyproject: {sorted(wanted - listed)}; only in environment.yml: {sorted(listed - wanted)}"
    )


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    start, test = blocks[0].strip(), blocks[1].strip()
    assert "smartsession serve" in start and "pip install" in start
    assert test == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci and "apt-get" in ci


def test_console_script_lists_every_room():
    out = subprocess.run(
        [sys.executable, "-m", "smartsession", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("analyze", "serve", "hub", "class", "simulate", "report"):
        assert re.search(rf"^\s+{command}\b", out, flags=re.M), f"`smartsession {command}` missing:\n{out}"


def test_command_line_starts_without_heavy_imports():
    # Every `smartsession ...` start (and each hub subprocess) pays for what registering the commands imports.
    code = (
        "import sys, smartsession.cli; smartsession.cli.build_parser(); "
        "print(sorted(m for m in ('mediapipe', 'sklearn', 'voila', 'pandas', 'plotly', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "smartsession").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


@pytest.mark.parametrize("command", ["serve", "hub"])
def test_help_shows_every_option_once_with_its_traits_help(command):
    import importlib

    from smartsession.options import trait_help

    module = importlib.import_module(f"smartsession.{'serve.options' if command == 'serve' else 'hub.cli'}")
    out = subprocess.run(
        [sys.executable, "-m", "smartsession", command, "--help"], capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": "2000"},
    ).stdout
    for option in module.OPTIONS:
        lines = [line for line in out.splitlines() if re.match(rf"\s+--{option.name}(?![\w-])", line)]
        assert len(lines) == 1, f"--{option.name} shown {len(lines)} times"
        text = trait_help(option, module.CLASSES).replace("%%", "%")
        shown = " ".join(f"--{option.name} {option.metavar or ''} {text}".split())
        assert text and shown in " ".join(out.split()), f"--{option.name} does not show its trait's help"


def test_serve_app_and_its_command_line_do_not_import_each_other():
    cli = (ROOT / "smartsession" / "serve" / "cli.py").read_text()
    app = (ROOT / "smartsession" / "serve" / "app.py").read_text()
    assert "smartsession.serve.cli" not in app
    assert "from smartsession.serve.app" not in cli.split("def run", 1)[0]


def test_constraints_pin_every_dependency_within_its_bounds():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(text)
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req.specifier}"
    readme = (ROOT / "README.md").read_text()
    assert "-c constraints.txt" in readme and "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()


def test_readme_commands_after_the_install_run_from_its_venv():
    # The first command installs into .venv without activating it: a later `smartsession ...` line would not be
    # on the PATH of someone following the README, so each says .venv/bin/smartsession.
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    lines = [line.strip() for block in blocks[1:] for line in block.splitlines()]
    bare = [line for line in lines if re.match(r"(smartsession|python|pip|pytest)\b", line)]
    assert not bare, bare
    assert any(line.startswith(".venv/bin/smartsession simulate") for line in lines)
