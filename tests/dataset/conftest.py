"""Fixtures for the dataset and model tests: the committed feature table and one rebuilt from real media.

The rebuild runs real MediaPipe on the real sample media once per session (about 10-30 s).
"""

from __future__ import annotations

import numpy as np
import pytest

from smartsession.dataset import build


@pytest.fixture(scope="session")
def committed_table():
    return build.read_feature_table()


@pytest.fixture(scope="session")
def rebuilt_table():
    return build.build_feature_table()


@pytest.fixture(scope="session")
def assert_same_table():
    return _assert_same_table


def _assert_same_table(actual, expected):
    """Same rows, labels and provenance; features equal up to float noise.

    MediaPipe's arithmetic differs slightly between CPU instruction sets, so another machine may give
    landmarks a few 1e-4 apart: tolerances are 1% (ratios) and 0.01 absolute, far below any label change.
    """
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in build.META_COLUMNS:
        assert actual[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    features = build.feature_columns(expected)
    a = actual[features].to_numpy(dtype=float)
    e = expected[features].to_numpy(dtype=float)
    worst = np.abs(a - e).max(axis=0)
    assert np.allclose(a, e, rtol=1e-2, atol=1e-2), dict(zip(features, worst.round(5)))
