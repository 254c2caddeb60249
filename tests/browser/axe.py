"""axe-core for the browser tests: fetched by name with ``npm pack``, checksummed, cached, injected into pages.

The tarball is never committed: ``axe_source()`` runs ``npm pack axe-core@AXE_VERSION`` once, checks its
SHA-256, and keeps ``axe.min.js`` under ``$SMARTSESSION_CACHE`` (default ``~/.cache/smartsession/axe-core``),
the same pattern as ``smartsession.dataset.media`` for the face media.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from smartsession.cache import cache_dir

AXE_VERSION = "4.14.1"
AXE_TARBALL = f"axe-core-{AXE_VERSION}.tgz"
AXE_TARBALL_SHA256 = "e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745"
#: WCAG 2.0 and 2.1, levels A and AA: what schools are asked to meet.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


class AxeError(RuntimeError):
    """axe-core could not be fetched or failed its checksum."""


def _cache_dir() -> Path:
    return cache_dir("axe-core")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def axe_source() -> str:
    """The text of ``axe.min.js`` from the checksummed axe-core tarball (fetched once, then cached)."""
    cache = _cache_dir()
    tarball = cache / AXE_TARBALL
    script = cache / f"axe-{AXE_VERSION}.min.js"
    if script.exists() and tarball.exists() and _sha256(tarball.read_bytes()) == AXE_TARBALL_SHA256:
        return script.read_text()
    npm = shutil.which("npm")
    if npm is None:
        # Like Chromium: skipped on a machine without it, required in CI (bash .ci/run installs it).
        message = "npm is not installed: `apt-get install npm` (it fetches axe-core for the accessibility tests)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp],
            capture_output=True, text=True, cwd=tmp, timeout=300,
        )
        packed = Path(tmp) / AXE_TARBALL
        if proc.returncode != 0 or not packed.exists():
            raise AxeError(f"`npm pack axe-core@{AXE_VERSION}` failed: {proc.stderr.strip()[-500:]}")
        data = packed.read_bytes()
        if _sha256(data) != AXE_TARBALL_SHA256:
            raise AxeError(f"{AXE_TARBALL} failed its SHA-256 check (got {_sha256(data)}); nothing was cached")
        with tarfile.open(packed) as tar:
            member = tar.extractfile("package/axe.min.js")
            if member is None:
                raise AxeError(f"{AXE_TARBALL} has no package/axe.min.js")
            text = member.read().decode()
    part = script.with_suffix(".part")
    part.write_text(text)
    part.replace(script)
    tarball.write_bytes(data)
    return text


def axe_violations(page_or_frame, *, exclude: list[str] | None = None) -> list[dict]:
    """Run axe-core's WCAG 2.0/2.1 A and AA rules on a Playwright page or frame; return the violations.

    ``exclude``: CSS selectors left out of this run (each use says why).
    """
    if not page_or_frame.evaluate("() => typeof window.axe !== 'undefined'"):
        page_or_frame.evaluate(axe_source())
    return page_or_frame.evaluate(
        """async ([tags, exclude]) => {
            const context = exclude.length ? {exclude: exclude.map(s => [s])} : document;
            const result = await axe.run(context, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary, html: n.html.slice(0, 200)})),
            }));
        }""",
        [WCAG_TAGS, exclude or []],
    )


def describe(violations: list[dict], where: str) -> str:
    """Every violation and every element it was found on, for the assertion message."""
    lines = [f"{where}: {len(violations)} axe-core WCAG 2.1 A/AA rule(s) broken"]
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}, {len(v['nodes'])} element(s)")
        for n in v["nodes"]:
            summary = " ".join((n["summary"] or "").split())
            lines.append(f"    {n['target']}: {summary}\n      {n['html']}")
    return "\n".join(lines)


def assert_no_violations(page_or_frame, where: str, **kwargs) -> None:
    violations = axe_violations(page_or_frame, **kwargs)
    assert not violations, describe(violations, where)
