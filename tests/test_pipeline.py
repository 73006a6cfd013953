"""Pipelines: UnlearnableClassifier(Pipeline) forgets raw rows through frozen preprocessing."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from sklearn_ssse import (
    ForgetSplit,
    SealError,
    UnlearnableClassifier,
    parameter_distance_scorer,
)

LR = dict(tol=1e-10, max_iter=5000)


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True)


def _pipe():
    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                         LogisticRegression(**LR))


def test_forget_through_a_pipeline_equals_forgetting_the_transformed_rows(wine):
    X, y = wine
    clf = UnlearnableClassifier(_pipe(), track_samples=True).fit(X, y)
    sk = _pipe().fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), sk.predict(X))
    np.testing.assert_allclose(clf.predict_proba(X), sk.predict_proba(X), atol=1e-12)
    assert clf.n_features_in_ == 13 and clf.score(X, y) == sk.score(X, y)
    Xt = clf.preprocessor_.transform(X)
    plain = UnlearnableClassifier(LogisticRegression(**LR), track_samples=True).fit(Xt, y)
    S = [0, 7, 70, 140]
    clf.forget(X[S], y[S])  # raw rows
    plain.forget(Xt[S], y[S])
    np.testing.assert_allclose(clf.get_parameters(), plain.get_parameters(), atol=1e-10)
    # the record names the fitted steps that still reflect the erased rows (not the stateless
    # FunctionTransformer)
    assert clf.erasure_log_[-1]["frozen_preprocessing"] == "standardscaler"
    with pytest.raises(ValueError, match="not among the rows"):
        clf.forget(X[S], y[S])


def test_certify_refine_and_tuning_through_a_pipeline(wine):
    X, y = wine
    clf = UnlearnableClassifier(_pipe(), keep_training_data=True).fit(X, y)
    S = np.arange(0, len(X), 20)
    keep = np.setdiff1d(np.arange(len(X)), S)
    clf.forget(X[S], y[S])
    kept = clf.certify()
    streamed = clf.certify(X[keep], y[keep])  # raw remaining rows
    assert streamed.residual_norm == pytest.approx(kept.residual_norm, rel=1e-10)
    clf.refine(X[keep], y[keep], tol=1e-9)
    # frozen preprocessing: the reference is the last step retrained on the transformed rows
    Xt = clf.preprocessor_.transform(X)
    ref = LogisticRegression(**LR).fit(Xt[keep], y[keep])
    W = clf.get_parameters().reshape(3, -1)
    R = np.c_[ref.coef_, ref.intercept_]
    np.testing.assert_allclose(W - W.mean(0), R - R.mean(0), atol=1e-6)
    search = GridSearchCV(UnlearnableClassifier(_pipe(), keep_training_data=True),
                          {"epsilon": [0.5, 1.0, 2.0]}, scoring=parameter_distance_scorer,
                          cv=ForgetSplit(n_splits=2, forget_size=0.05, random_state=0))
    search.fit(X, y)
    assert search.best_params_ == {"epsilon": 1.0}
    assert search.cv_results_["mean_test_score"].max() > -0.3


def test_sealed_and_saved_with_its_preprocessing(wine):
    X, y = wine
    clf = UnlearnableClassifier(_pipe()).fit(X, y)
    clf.forget(X[:3], y[:3])
    back = pickle.loads(pickle.dumps(clf))
    assert back.verify_seal()
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    back.preprocessor_[-1].mean_[0] += 1.0  # the frozen features changed (in place)
    with pytest.raises(SealError):
        back.verify_seal()
    with pytest.raises(SealError):  # and a saved copy of it is refused on load
        pickle.loads(pickle.dumps(back))


def test_from_fitted_pipeline_in_memory_and_streamed(wine):
    X, y = wine
    fitted = _pipe().fit(X, y)
    a = UnlearnableClassifier.from_fitted(fitted, X, y)
    chunks = [(X[i:i + 50], y[i:i + 50]) for i in range(0, len(X), 50)]
    b = UnlearnableClassifier.from_fitted(fitted, chunks)
    fit = UnlearnableClassifier(_pipe()).fit(X, y)
    for clf in (a, b):
        clf.forget(X[:4], y[:4])
    fit.forget(X[:4], y[:4])
    np.testing.assert_allclose(a.get_parameters(), fit.get_parameters(), atol=1e-9)
    np.testing.assert_allclose(b.get_parameters(), fit.get_parameters(), atol=1e-9)
    np.testing.assert_array_equal(fitted.predict(X), _pipe().fit(X, y).predict(X))  # untouched


def test_one_hot_encoded_text_columns(wine):
    """A DataFrame with a text column, one-hot encoded inside the Pipeline: raw rows in."""
    X, y = wine
    rng = np.random.default_rng(0)
    df = pd.DataFrame(X[:, :4], columns=list("abcd"))
    df["colour"] = rng.choice(["red", "white", "rose"], len(df))
    pre = ColumnTransformer([("num", StandardScaler(), list("abcd")),
                             ("cat", OneHotEncoder(sparse_output=False), ["colour"])])
    clf = UnlearnableClassifier(make_pipeline(pre, LogisticRegression(**LR)),
                                keep_training_data=True).fit(df, y)
    assert clf.n_features_in_ == 5 and list(clf.feature_names_in_) == [*"abcd", "colour"]
    clf.forget(df.iloc[:5], y[:5])
    assert clf.n_samples_ == len(df) - 5
    assert clf.erasure_log_[-1]["frozen_preprocessing"] == "columntransformer"
    assert clf.certify().kind == "estimate"


def test_a_refit_without_a_pipeline_drops_the_preprocessing(wine):
    X, y = wine
    clf = UnlearnableClassifier(_pipe()).fit(X, y)
    Xs = StandardScaler().fit_transform(X)
    clf.set_params(estimator=LogisticRegression(**LR)).fit(Xs, y)
    assert not hasattr(clf, "preprocessor_")
    np.testing.assert_array_equal(clf.predict(Xs),
                                  LogisticRegression(**LR).fit(Xs, y).predict(Xs))


def test_from_fitted_streams_dataframe_chunks_through_a_column_transformer(wine):
    """Streamed chunks reach the frozen transformers as they are (DataFrames keep their
    column names, which a ColumnTransformer selects by)."""
    X, y = wine
    df = pd.DataFrame(X[:, :4], columns=list("abcd"))
    df["colour"] = np.random.default_rng(1).choice(["red", "white"], len(df))
    pre = ColumnTransformer([("num", StandardScaler(), list("abcd")),
                             ("cat", OneHotEncoder(sparse_output=False), ["colour"])])
    fitted = make_pipeline(pre, LogisticRegression(**LR)).fit(df, y)
    chunks = [(df.iloc[i:i + 60], y[i:i + 60]) for i in range(0, len(df), 60)]
    streamed = UnlearnableClassifier.from_fitted(fitted, chunks)
    in_memory = UnlearnableClassifier.from_fitted(fitted, df, y)
    for clf in (streamed, in_memory):
        clf.forget(df.iloc[:4], y[:4])
    np.testing.assert_allclose(streamed.get_parameters(), in_memory.get_parameters(),
                               atol=1e-9)
