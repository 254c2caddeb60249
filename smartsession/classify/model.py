"""The state classifier: a scikit-learn Pipeline from named landmark features to focused/happy/confused/distracted.

Trained in notebooks/03, exported by notebooks/04 with skops (no pickle) plus a JSON sidecar whose feature
names, versions and checksum are checked when the analyser loads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

MODEL_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_NAME = "state_classifier.skops"
DEFAULT_MODEL_PATH = MODEL_DIR / MODEL_NAME

#: What the classifier predicts; the other states come from the analyser's explicit rules.
CLASSIFIER_STATES = ("focused", "happy", "confused", "distracted")

#: The classifier choices notebooks/03 compares; ``build_pipeline`` makes any of them.
CLASSIFIERS = ("logistic", "gradient_boosting", "random_forest")

#: Types skops does not trust by default that a model of ours may legitimately contain.
#: Anything else in a model file is refused: it was not made by ``build_pipeline``.
ALLOWED_UNTRUSTED_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})

SIDECAR_FORMAT = 1
RETRAIN = "retrain and export it with notebooks/03_train_evaluate.ipynb and notebooks/04_export_model.ipynb"


class ModelError(RuntimeError):
    """The state model is missing, tampered with or does not fit this version of SmartSession."""


def build_pipeline(feature_names: Sequence[str], classifier: str = "logistic", random_state: int = 0):
    """A fresh, unfitted Pipeline: select the named features, standardise, classify.

    The first step selects columns by name, so the pipeline accepts any DataFrame that has the
    features; the live path skips it and feeds rows already in ``feature_names`` order.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if classifier == "logistic":
        # Few people stand behind each class, so a strong prior towards simple boundaries (C<1) and
        # balanced class weights generalise better to new faces than a flexible model.
        clf = LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000, random_state=random_state)
    elif classifier == "gradient_boosting":
        clf = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.1, max_leaf_nodes=15, l2_regularization=1.0,
            class_weight="balanced", random_state=random_state,
        )
    elif classifier == "random_forest":
        clf = RandomForestClassifier(
            n_estimators=200, min_samples_leaf=3, class_weight="balanced", n_jobs=1, random_state=random_state,
        )
    else:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    select = ColumnTransformer([("features", "passthrough", list(feature_names))], verbose_feature_names_out=False)
    return Pipeline([("select", select), ("scale", StandardScaler()), ("classify", clf)])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_path(path: str | Path) -> Path:
    path = Path(path)
    return path / MODEL_NAME if path.suffix != ".skops" else path


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    from smartsession import __version__

    return {"smartsession": __version__, "scikit-learn": sklearn.__version__, "skops": skops.__version__}


def save_state_model(
    pipeline,
    path: str | Path,
    feature_names: Sequence[str],
    metrics: Mapping[str, Any],
    data_sha256: str | None = None,
) -> Path:
    """Write a fitted pipeline to ``path`` (a ``.skops`` file or a folder) plus its ``.json`` sidecar.

    ``metrics`` are the cross-validation figures to ship with the model; ``data_sha256`` identifies the
    feature table it was trained on. Returns the path of the ``.skops`` file.
    """
    import skops.io as sio

    feature_names = [str(f) for f in feature_names]
    fitted = list(getattr(pipeline, "feature_names_in_", feature_names))
    missing = sorted(set(feature_names) - set(fitted))
    if missing:
        raise ModelError(f"the pipeline was not fitted on the features {missing}; fit it on the full feature table")
    target = _model_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, target)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "feature_names": feature_names,
        "classes": [str(c) for c in pipeline.classes_],
        "versions": _versions(),
        "model_sha256": _sha256(target),
        "training_data_sha256": data_sha256,
        "metrics": json.loads(json.dumps(metrics, default=float)),
    }
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return target


@dataclass
class StateModel:
    """A loaded state classifier: probabilities over ``classes_`` from named features."""

    pipeline: Any
    feature_names: tuple[str, ...]
    classes_: np.ndarray
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # Everything after the name-based column selector: the live path feeds rows already in order.
        self._core = self.pipeline[1:]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one row per sample, columns in ``classes_`` order.

        ``X`` is a DataFrame with the feature columns, a dict of feature values (one sample), or a
        numpy row/matrix whose columns are in ``feature_names`` order (the fast live path).
        """
        if isinstance(X, Mapping):
            missing = [f for f in self.feature_names if f not in X]
            if missing:
                raise ValueError(f"features missing from the sample: {missing}")
            X = np.array([[X[f] for f in self.feature_names]], dtype=float)
        if hasattr(X, "columns"):
            missing = [f for f in self.feature_names if f not in X.columns]
            if missing:
                raise ValueError(f"feature columns missing from the table: {missing}")
            X = X[list(self.feature_names)].to_numpy(dtype=float)
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected rows of {len(self.feature_names)} features in feature_names order, got shape {X.shape}"
            )
        return self._core.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The most probable class per sample."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _current_feature_names() -> list[str]:
    from smartsession.features import LandmarkFeaturizer

    return [str(f) for f in LandmarkFeaturizer().get_feature_names_out()]


def load_state_model(path: str | Path | None = None) -> StateModel:
    """Load and check the shipped state model (or the one at ``path``).

    Raises ``ModelError`` saying what to do when the file is missing, was changed after export, holds
    types a SmartSession model never contains, or was made for other features or library versions.
    """
    import skops.io as sio

    target = _model_path(path) if path is not None else DEFAULT_MODEL_PATH
    sidecar_path = target.with_suffix(".json")
    if not target.exists() or not sidecar_path.exists():
        raise ModelError(f"no state model at {target} (and its {sidecar_path.name} sidecar): {RETRAIN}")
    try:
        info = json.loads(sidecar_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"the model sidecar {sidecar_path} is unreadable ({err}): {RETRAIN}") from err
    if info.get("format") != SIDECAR_FORMAT:
        raise ModelError(f"{sidecar_path} has sidecar format {info.get('format')!r}, expected {SIDECAR_FORMAT}: {RETRAIN}")
    if _sha256(target) != info.get("model_sha256"):
        raise ModelError(f"{target} does not match the checksum in {sidecar_path.name}: it was changed after export; {RETRAIN}")
    try:
        untrusted = sio.get_untrusted_types(file=target)
    except Exception as err:
        raise ModelError(f"{target} is not a readable skops file ({err}): {RETRAIN}") from err
    refused = sorted(set(untrusted) - ALLOWED_UNTRUSTED_TYPES)
    if refused:
        raise ModelError(f"{target} contains types a SmartSession model never holds, refusing to load it: {refused}; {RETRAIN}")
    saved, current = info.get("versions", {}), _versions()
    for lib in ("scikit-learn",):
        if saved.get(lib, "").split(".")[:2] != current[lib].split(".")[:2]:
            raise ModelError(
                f"{target} was exported with {lib} {saved.get(lib)}, this environment has {current[lib]}: "
                f"install {lib}=={saved.get(lib)} or {RETRAIN}"
            )
    expected = _current_feature_names()
    if list(info.get("feature_names", [])) != expected:
        have, want = info.get("feature_names", []), expected
        raise ModelError(
            f"{target} was trained on other features than this SmartSession computes "
            f"(only in the model: {sorted(set(have) - set(want))}, only in the featurizer: "
            f"{sorted(set(want) - set(have))}, or a different order): {RETRAIN}"
        )
    try:
        pipeline = sio.load(target, trusted=sorted(untrusted))
    except Exception as err:
        raise ModelError(f"could not load {target} ({err}): {RETRAIN}") from err
    classes = np.asarray(pipeline.classes_)
    if [str(c) for c in classes] != list(info.get("classes", [])):
        raise ModelError(f"{target} predicts {list(classes)} but its sidecar says {info.get('classes')}: {RETRAIN}")
    unknown = [str(c) for c in classes if c not in CLASSIFIER_STATES]
    if unknown:
        raise ModelError(f"{target} predicts states the analyser does not know: {unknown}; {RETRAIN}")
    return StateModel(pipeline=pipeline, feature_names=tuple(expected), classes_=classes, info=info)
