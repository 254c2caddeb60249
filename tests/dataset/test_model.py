"""The shipped state model: it loads with its checks, predicts real faces, and refuses files it should not trust.

Real model files written with skops to tmp_path; real faces through real MediaPipe.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer

from smartsession.classify.model import (
    CLASSIFIER_STATES,
    DEFAULT_MODEL_PATH,
    ModelError,
    build_pipeline,
    load_state_model,
    model_features,
    save_state_model,
)
from smartsession.dataset import build, media
from smartsession.features import FEATURE_NAMES, face_vector
from smartsession.vision.frames import read_image, read_video
from smartsession.vision.landmarks import FaceLandmarker


@pytest.fixture(scope="module")
def model():
    return load_state_model()


@pytest.fixture(scope="module")
def fitted(committed_table):
    names = model_features(build.feature_columns(committed_table))
    pipeline = build_pipeline(names).fit(committed_table, committed_table["label"].to_numpy(dtype=object))
    return pipeline, names


@pytest.mark.slow
def test_shipped_model_loads_with_its_sidecar(model, committed_table):
    assert set(model.classes_) == set(CLASSIFIER_STATES)
    assert set(model.feature_names) <= set(FEATURE_NAMES)
    assert [FEATURE_NAMES[i] for i in model.feature_index] == list(model.feature_names)
    assert model.info["training_data_sha256"] == build.table_sha256()
    metrics = model.info["metrics"]
    assert metrics["cv"].startswith("leave one person out")
    assert set(metrics["per_class"]) == {"focused", "happy", "confused"}
    lo, hi = metrics["balanced_accuracy_95ci_by_person"]
    assert 0 <= lo <= metrics["balanced_accuracy"] <= hi <= 1


def test_predict_proba_accepts_a_table_a_dict_and_a_live_row(model, committed_table):
    proba = model.predict_proba(committed_table)
    assert proba.shape == (len(committed_table), len(model.classes_))
    assert np.allclose(proba.sum(axis=1), 1.0)
    row = committed_table.iloc[7]
    as_dict = model.predict_proba({name: row[name] for name in model.feature_names})
    full_vector = row[list(FEATURE_NAMES)].to_numpy(dtype=float)
    as_live_row = model.predict_proba(full_vector[model.feature_index])
    assert np.allclose(as_dict, proba[7]) and np.allclose(as_live_row, proba[7])
    # the fast numpy path computes exactly what the scikit-learn pipeline computes
    assert np.allclose(proba, model.pipeline.predict_proba(committed_table), atol=1e-12)


def test_bad_input_gets_a_clear_error(model):
    with pytest.raises(ValueError, match="missing"):
        model.predict_proba({"ear": 0.3})
    with pytest.raises(ValueError, match="feature_names order"):
        model.predict_proba(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        model.predict_proba(np.full(len(model.feature_names), np.nan))


def test_shipped_model_reads_real_faces(model):
    """A posed happy photo reads happy; the neutral start of a face video reads focused."""
    with FaceLandmarker(static_image_mode=True) as landmarker:
        found = landmarker.detect(read_image(media.pyfeat_file("0-f15-hao-ph.jpg")))
    assert model.predict(face_vector(found)[model.feature_index])[0] == "happy"

    states = []
    with FaceLandmarker(static_image_mode=False) as landmarker:
        for vf in read_video(media.pyfeat_file("single_face.mp4"), max_frames=12):
            found = landmarker.detect(vf.rgb, t=vf.t)
            states.append(model.predict(face_vector(found)[model.feature_index])[0])
    assert states.count("focused") >= 10, states


def test_round_trip_save_and_load(tmp_path, fitted, committed_table):
    pipeline, names = fitted
    path = save_state_model(pipeline, tmp_path, names, {"note": "test"}, data_sha256="abc")
    assert path == tmp_path / "state_classifier.skops" and path.with_suffix(".json").exists()
    loaded = load_state_model(path)
    assert list(loaded.classes_) == list(pipeline.classes_)
    assert np.allclose(loaded.predict_proba(committed_table), pipeline.predict_proba(committed_table))
    assert loaded.info["metrics"] == {"note": "test"} and loaded.info["training_data_sha256"] == "abc"


def test_missing_model_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelError, match="03_train_evaluate"):
        load_state_model(tmp_path / "nothing.skops")


def test_refuses_a_model_trained_on_features_the_featurizer_does_not_compute(tmp_path, committed_table):
    table = committed_table.rename(columns={"brow_furrow": "brow_knit"})
    names = model_features(build.feature_columns(table))
    pipeline = build_pipeline(names).fit(table, table["label"].to_numpy(dtype=object))
    path = save_state_model(pipeline, tmp_path, names, {})
    with pytest.raises(ModelError, match="brow_knit.*retrain"):
        load_state_model(path)


def test_refuses_a_model_file_changed_after_export(tmp_path, fitted):
    pipeline, names = fitted
    path = save_state_model(pipeline, tmp_path, names, {})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="changed after export"):
        load_state_model(path)


def test_refuses_untrusted_types_even_with_a_matching_checksum(tmp_path, fitted):
    """A file whose sidecar was forged to match still may not smuggle in a callable such as os.system."""
    pipeline, names = fitted
    evil = copy.deepcopy(pipeline)
    evil.steps[1] = ("scale", FunctionTransformer(func=os.system))
    path = save_state_model(evil, tmp_path, names, {})
    with pytest.raises(ModelError, match="posix.system|nt.system"):
        load_state_model(path)


def test_refuses_a_model_from_another_scikit_learn(tmp_path, fitted):
    pipeline, names = fitted
    path = save_state_model(pipeline, tmp_path, names, {})
    sidecar = path.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    info["versions"]["scikit-learn"] = "0.24.2"
    sidecar.write_text(json.dumps(info))
    with pytest.raises(ModelError, match="scikit-learn 0.24.2"):
        load_state_model(path)


def test_save_refuses_names_that_do_not_match_the_pipeline(tmp_path, fitted):
    pipeline, names = fitted
    with pytest.raises(ModelError, match="pass the names"):
        save_state_model(pipeline, tmp_path, list(reversed(names)), {})


def test_default_path_is_inside_the_package():
    assert DEFAULT_MODEL_PATH.parent.name == "models"
    assert DEFAULT_MODEL_PATH.parent.parent.name == "smartsession"
    assert DEFAULT_MODEL_PATH.exists() and DEFAULT_MODEL_PATH.with_suffix(".json").exists()
