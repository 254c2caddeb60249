"""The expression classifier: a scikit-learn Pipeline from named face features to focused/happy/confused.

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

#: What the classifier predicts: the expression of a face that attends. Whether it attends at all (distracted,
#: drowsy, away) is the explicit rules' job, decided on gaze and eye closure, never learnt.
CLASSIFIER_STATES = ("focused", "happy", "confused")

#: The learned classifiers notebooks/03 compares; ``build_pipeline`` makes any of them.
CLASSIFIERS = ("logistic", "random_forest", "nearest_neighbors")
#: The transparent blendshape rule (``smartsession.classify.expression``) they must beat to ship; ``build_pipeline``
#: makes it too, so it is cross-validated and exported the same way.
RULE = "rule"

#: Types skops does not trust by default that a model of ours may legitimately contain.
#: Anything else in a model file is refused: it was not made by ``build_pipeline``.
ALLOWED_UNTRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree", "smartsession.classify.expression.ExpressionRule"})

#: Featurizer outputs the classifier leaves out. Where the head and eyes point is attention, which the rules
#: decide; and with few sources, pose, framing and face size would identify the source (every video has its own).
#: The mouth opens to talk, yawn or gasp as much as to laugh: with it, a surprised face read happy; the smile is
#: in the lip corners. ``_neutral`` is a constant of the blendshape model, not an expression.
UNUSED_FEATURES = ("face_size", "in_frame", "roll", "mar", "yaw", "pitch", "eye_x", "eye_y", "gaze_x", "gaze_y", "iris_x",
                   "iris_y", "upper_lid", "_neutral", "jawOpen", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
                   "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight")

SIDECAR_FORMAT = 1
RETRAIN = "retrain and export it with notebooks/03_train_evaluate.ipynb and notebooks/04_export_model.ipynb"


class ModelError(RuntimeError):
    """The state model is missing, tampered with or does not fit this version of SmartSession."""


def build_pipeline(feature_names: Sequence[str], classifier: str = "logistic", random_state: int = 0):
    """A fresh, unfitted Pipeline: select the named features, standardise, classify (``classifier`` one of
    ``CLASSIFIERS``), or select them and apply the expression rule (``classifier=RULE``; thresholds on raw values).

    The first step only selects columns by name, so the pipeline accepts any DataFrame that has the
    features; the live path skips it and feeds rows already in ``feature_names`` order.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    feature_names = [str(f) for f in feature_names]
    select = ColumnTransformer([("features", "passthrough", feature_names)], verbose_feature_names_out=False)
    if classifier == RULE:
        from smartsession.classify.expression import ExpressionRule

        return Pipeline([("select", select), ("classify", ExpressionRule(feature_names=tuple(feature_names)))])
    if classifier == "logistic":
        # Few people stand behind each class: strong regularisation and balanced class weights generalise
        # better to new faces than a flexible model.
        clf = LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000, random_state=random_state)
    elif classifier == "random_forest":
        clf = RandomForestClassifier(
            n_estimators=100, min_samples_leaf=3, class_weight="balanced", n_jobs=1, random_state=random_state,
        )
    elif classifier == "nearest_neighbors":
        clf = KNeighborsClassifier(n_neighbors=15)
    else:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join((RULE, *CLASSIFIERS))}")
    return Pipeline([("select", select), ("scale", StandardScaler()), ("classify", clf)])


def model_features(feature_names: Sequence[str]) -> list[str]:
    """The featurizer's names the classifier is trained on, in the featurizer's order."""
    return [str(f) for f in feature_names if f not in UNUSED_FEATURES]


@dataclass
class CrossValidation:
    """Out-of-fold predictions for every row of a feature table and the figures that summarise them."""

    predictions: Any  # DataFrame: source, frame, person, label, predicted, and p_<state> per class
    metrics: dict[str, Any]

    def confusion(self):
        """Counts of true (rows) by predicted (columns) state."""
        import pandas as pd

        table = pd.crosstab(self.predictions["label"], self.predictions["predicted"])
        return table.reindex(index=[s for s in CLASSIFIER_STATES if s in table.index],
                             columns=list(CLASSIFIER_STATES), fill_value=0)

    def per_person(self):
        """Rows and accuracy per held-out person: how the model does on someone it never saw."""
        p = self.predictions.assign(correct=self.predictions["label"] == self.predictions["predicted"])
        return p.groupby("person").agg(rows=("correct", "size"), accuracy=("correct", "mean")).sort_values("rows")


def _balanced_accuracy(y, predicted) -> float:
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A resample (or a small table) may lack a class the model still predicts: expected, not a problem.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y, predicted))


def bootstrap_by_person(predictions, statistic=None, n: int = 1000, random_state: int = 0) -> tuple[float, float]:
    """95% interval of ``statistic(labels, predicted)`` (default: balanced accuracy), resampling whole people.

    Frames of one video are not independent evidence: resampling people, not rows, keeps the interval honest.
    """
    statistic = statistic or _balanced_accuracy
    rng = np.random.default_rng(random_state)
    people = predictions["person"].unique()
    groups = {p: predictions[predictions["person"] == p] for p in people}
    values = []
    for _ in range(n):
        pick = rng.choice(people, size=len(people), replace=True)
        sample = [groups[p] for p in pick]
        y = np.concatenate([g["label"].to_numpy(object) for g in sample])
        if len(set(y)) < 2:
            continue
        values.append(statistic(y, np.concatenate([g["predicted"].to_numpy(object) for g in sample])))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def cross_validate(table, feature_names: Sequence[str], classifier: str = "logistic", random_state: int = 0) -> CrossValidation:
    """Leave-one-person-out cross-validation of ``build_pipeline(feature_names, classifier)`` on a feature table.

    Each person is predicted by a model that never saw them; intervals resample people (see
    :func:`bootstrap_by_person`).
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    y = table["label"].to_numpy(dtype=object)
    groups = table["person"].to_numpy(dtype=object)
    proba = cross_val_predict(build_pipeline(feature_names, classifier, random_state), table, y,
                              groups=groups, cv=LeaveOneGroupOut(), method="predict_proba")
    classes = sorted(set(y))
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    predictions = table[["source", "frame", "person", "label"]].copy()
    predictions["predicted"] = predicted
    for i, c in enumerate(classes):
        predictions[f"p_{c}"] = proba[:, i]
    labels = [s for s in CLASSIFIER_STATES if s in set(y)]
    precision, recall, _, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    lo, hi = bootstrap_by_person(predictions, random_state=random_state)
    metrics = {
        "classifier": classifier,
        "cv": "leave one person out",
        "people": int(len(set(groups))),
        "rows": int(len(y)),
        "balanced_accuracy": round(_balanced_accuracy(y, predicted), 4),
        "balanced_accuracy_95ci_by_person": [round(lo, 4), round(hi, 4)],
        "macro_f1": round(float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)), 4),
        "per_class": {
            label: {"precision": round(float(p), 4), "recall": round(float(r), 4), "support": int(n)}
            for label, p, r, n in zip(labels, precision, recall, support)
        },
    }
    return CrossValidation(predictions=predictions, metrics=metrics)


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
    try:
        selected = [str(f) for f in pipeline[0].get_feature_names_out()]
    except Exception as err:
        raise ModelError(f"save a fitted pipeline made by build_pipeline ({err})") from err
    if selected != feature_names:
        raise ModelError(
            f"the pipeline selects {selected} but feature_names says {feature_names}: pass the names it was built with"
        )
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
    """A loaded state classifier: probabilities over ``classes_`` from named features.

    ``feature_index`` holds the position of each of ``feature_names`` in the featurizer's output, so the
    live loop can pass ``vector[model.feature_index]`` straight to :meth:`predict_proba`.
    """

    pipeline: Any
    feature_names: tuple[str, ...]
    classes_: np.ndarray
    feature_index: np.ndarray
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # Everything after the name-based column selector: the live path feeds rows already in order.
        self._core = self.pipeline[1:]
        self._fast = _linear_form(self._core) or _forest_form(self._core) or _rule_form(self._core)

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
        if not np.isfinite(X).all():
            raise ValueError("features must be finite numbers; a face without features has no state to classify")
        if self._fast is not None:
            return self._fast(X)
        return self._core.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The most probable class per sample."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _rule_form(core) -> Any:
    """The expression rule's own ``predict_proba`` (plain numpy), without the Pipeline's per-call checks."""
    from smartsession.classify.expression import ExpressionRule

    steps = [step for _, step in core.steps]
    return steps[0].predict_proba if len(steps) == 1 and isinstance(steps[0], ExpressionRule) else None


def _forest_form(core) -> Any:
    """The fitted scale -> random forest steps as plain numpy (all trees walked at once), or None for other models.

    scikit-learn's forest costs ~15 ms of CPU for one row (input checks and a thread pool per call), more than the
    landmarker; walking every tree's arrays side by side costs a fraction of a millisecond. The tests check both
    agree.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in core.steps]
    if len(steps) != 2 or not isinstance(steps[0], StandardScaler) or not isinstance(steps[1], RandomForestClassifier) \
            or steps[1].n_outputs_ != 1:
        return None
    scaler, forest = steps
    mean = scaler.mean_ if scaler.with_mean else 0.0
    scale = scaler.scale_ if scaler.with_std else 1.0
    trees = [est.tree_ for est in forest.estimators_]
    width = max(t.node_count for t in trees)

    def stack(attr, fill):
        out = np.full((len(trees), width), fill, dtype=getattr(trees[0], attr).dtype)
        for i, t in enumerate(trees):
            out[i, :t.node_count] = getattr(t, attr)
        return out

    left, right = stack("children_left", -1), stack("children_right", -1)
    feature, threshold = np.maximum(stack("feature", 0), 0), stack("threshold", 0.0)
    value = np.zeros((len(trees), width, forest.n_classes_))
    for i, t in enumerate(trees):
        v = t.value[:, 0, :]
        value[i, :t.node_count] = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
    leaf = left < 0
    depth = max(t.max_depth for t in trees)
    rows = np.arange(len(trees))

    def predict_proba(X: np.ndarray) -> np.ndarray:
        # Trees compare float32 features with their thresholds, as scikit-learn does.
        z = ((X - mean) / scale).astype(np.float32).astype(np.float64)
        node = np.zeros((len(z), len(trees)), dtype=np.intp)
        for _ in range(depth):
            f, at_leaf = feature[rows, node], leaf[rows, node]
            go_left = np.take_along_axis(z, f, axis=1) <= threshold[rows, node]
            node = np.where(at_leaf, node, np.where(go_left, left[rows, node], right[rows, node]))
        return value[rows, node].mean(axis=1)

    return predict_proba


def _linear_form(core) -> Any:
    """The fitted scale -> multinomial logistic steps as plain numpy, or None for other models.

    scikit-learn's per-call validation costs about 2 ms of CPU for one row, a quarter of the landmarker
    itself; the same arithmetic on the fitted arrays costs microseconds. The tests check both agree.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in core.steps]
    if len(steps) != 2 or not isinstance(steps[0], StandardScaler) or not isinstance(steps[1], LogisticRegression) \
            or len(steps[1].classes_) < 3:
        return None
    scaler, clf = steps
    mean = scaler.mean_ if scaler.with_mean else 0.0
    scale = scaler.scale_ if scaler.with_std else 1.0
    coef, intercept = clf.coef_, clf.intercept_

    def predict_proba(X: np.ndarray) -> np.ndarray:
        scores = ((X - mean) / scale) @ coef.T + intercept
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    return predict_proba


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
    names = [str(f) for f in info.get("feature_names", [])]
    current = _current_feature_names()
    unknown_features = [f for f in names if f not in current]
    if not names or unknown_features:
        raise ModelError(
            f"{target} was trained on features this SmartSession does not compute "
            f"({unknown_features or 'none listed'}; the featurizer gives {current}): {RETRAIN}"
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
    index = np.array([current.index(f) for f in names], dtype=np.intp)
    return StateModel(pipeline=pipeline, feature_names=tuple(names), classes_=classes, feature_index=index, info=info)
