"""TF-IDF + logistic regression: the text baseline a pretrained encoder must beat.

What a practitioner does without transfer: sublinear word 1-2-gram TF-IDF (Salton & Buckley, "Term-weighting
approaches in automatic text retrieval", 1988) and an L2-regularised logistic regression: linear models over word
bigrams are strong baselines for topic and sentiment classification (Wang & Manning, "Baselines and Bigrams", ACL
2012). ``C`` is chosen by stratified k-fold cross-validation on the training texts (the vectoriser refitted inside
each fold), since the best regularisation moves with the number of labels by orders of magnitude.

Character n-grams within word boundaries (``char_wb`` 2-5) are added by default: on the Debian package descriptions
of bench/text.py, scored on pool texts outside the training subset (bench/baselines.py --evaluate-on validation; 3
seeds, six candidate Cs from 0.3 to 100), they gained 5 points at 10 texts per class and 2 at 100 (0.552 vs 0.501,
0.740 vs 0.723); dropping terms seen once (``min_df=2``) lost 3-4 points at 10 per class. Cross-validated accuracy
was flat for C from 1 to 100, so three candidates a decade apart are enough, and each costs a path of fits.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from .._errors import TransferkitError
from ..data import check_trainable
from ._base import TransferClassifier, as_dataset, class_values, full_proba

#: the inverse regularisation strengths cross-validation picks from
DEFAULT_CS = (0.3, 3.0, 30.0)
#: ``C`` when some class has a single text, so no stratified fold can hold it out
FALLBACK_C = 10.0


def blas_threads(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """A block run with at most ``threads`` BLAS and OpenMP threads (None: as they are)."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


class TfidfClassifier(TransferClassifier):
    """TF-IDF features + logistic regression over texts, ``C`` by stratified cross-validation.

    Args:
        ngram_range: word n-grams (default unigrams and bigrams).
        char_ngrams: also add character n-grams within word boundaries (``char_wb``, 2-5), for typos and word forms.
        min_df: drop terms found in fewer training texts than this.
        sublinear_tf: ``1 + log(tf)`` instead of raw counts, so a repeated word does not dominate.
        C: inverse regularisation strength; None chooses it from ``Cs`` by cross-validated accuracy (ties: lower
            log-loss) when every class has >= 2 texts, else uses ``FALLBACK_C`` (10).
        Cs: the candidates for ``C``.
        cv: at most this many folds (fewer when the smallest class has fewer texts).
        class_weight: ``balanced`` weighs texts by inverse class frequency.
        max_iter: iterations of the logistic regression's solver.
        threads: BLAS/OpenMP threads while fitting and predicting (threadpoolctl; None: as they are). 1 by default:
            the matrices are small, and on a shared 2-core machine two spinning BLAS threads made a fit ~10x slower.
        seed: seed of the folds.

    Example:
        >>> clf = TfidfClassifier().fit(["great film", "dull plot", "loved it", "boring"], ["pos", "neg", "pos", "neg"])
        >>> clf.predict(["a great plot"])
        array(['pos'], dtype='<U3')
    """

    strategy_name = "tfidf"
    trains_backbone = False

    def __init__(
        self,
        ngram_range: tuple[int, int] = (1, 2),
        char_ngrams: bool = True,
        min_df: int = 1,
        sublinear_tf: bool = True,
        C: float | None = None,
        Cs: tuple[float, ...] = DEFAULT_CS,
        cv: int = 5,
        class_weight: str | None = None,
        max_iter: int = 2000,
        threads: int | None = 1,
        seed: int = 0,
    ):
        self.ngram_range = ngram_range
        self.char_ngrams = char_ngrams
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.threads = threads
        self.seed = seed

    @property
    def modality_(self) -> str:
        return "text"

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        words = TfidfVectorizer(ngram_range=tuple(self.ngram_range), min_df=self.min_df, sublinear_tf=self.sublinear_tf)
        if not self.char_ngrams:
            return words
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=self.min_df,
                                sublinear_tf=self.sublinear_tf)
        return FeatureUnion([("words", words), ("chars", chars)])

    def _logistic(self, C: float, warm_start: bool = False) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter, warm_start=warm_start)

    def _choose_C(self, texts: list[str], labels: np.ndarray) -> tuple[float, dict[str, Any]]:
        """``(C, report)``: the best of ``Cs`` over stratified folds, each fold vectorised once for every C."""
        from sklearn.model_selection import StratifiedKFold

        counts = np.bincount(labels)
        smallest = int(counts[counts > 0].min())
        folds = min(self.cv, smallest)
        if folds < 2:
            return FALLBACK_C, {"C": FALLBACK_C, "chosen_by": f"fixed: a class has {smallest} text"}
        accuracy = np.zeros((folds, len(self.Cs)))
        log_loss = np.zeros_like(accuracy)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        items = np.asarray(texts, dtype=object)
        for f, (train, held) in enumerate(splitter.split(items, labels)):
            vectorizer = self._vectorizer()
            x_train = vectorizer.fit_transform(items[train])
            x_held = vectorizer.transform(items[held])
            model = self._logistic(min(self.Cs), warm_start=True)
            for j in np.argsort(self.Cs):  # weaker regularisation each time, from the last solution: ~3x faster
                model.set_params(C=self.Cs[j]).fit(x_train, labels[train])
                proba = full_proba(model.predict_proba(x_held), model.classes_, len(counts))
                accuracy[f, j] = np.mean(proba.argmax(1) == labels[held])
                log_loss[f, j] = -np.mean(np.log(np.clip(proba[np.arange(len(held)), labels[held]], 1e-12, None)))
        mean_accuracy, mean_loss = accuracy.mean(0), log_loss.mean(0)
        best = min(range(len(self.Cs)), key=lambda j: (-round(mean_accuracy[j], 9), mean_loss[j]))
        return float(self.Cs[best]), {
            "C": float(self.Cs[best]), "chosen_by": f"{folds}-fold stratified cross-validation",
            "cv_accuracy": {str(C): round(float(a), 4) for C, a in zip(self.Cs, mean_accuracy, strict=True)},
            "cv_log_loss": {str(C): round(float(v), 4) for C, v in zip(self.Cs, mean_loss, strict=True)},
        }

    def fit(self, X: Any, y: Any = None) -> TfidfClassifier:
        """Choose ``C`` (unless given), then fit the vectoriser and the logistic regression on every training text.

        Args:
            X, y: a labeled :class:`TextDataset`, or a list of texts and their labels.

        Raises:
            DataError: no texts, no labels, or a single class.
            TransferkitError: invalid parameters.
        """
        start = time.perf_counter()
        if self.C is None and (not self.Cs or any(not float(c) > 0 for c in self.Cs)):
            raise TransferkitError(f"Cs must be positive numbers to choose C from. Got {self.Cs!r} instead.")
        if self.C is not None and not float(self.C) > 0:
            raise TransferkitError(f"C must be a positive number (or None to cross-validate). Got {self.C!r} instead.")
        ds = as_dataset(X, y, modality="text")
        check_trainable(ds)
        assert ds.labels is not None  # check_trainable
        labels = np.asarray(ds.labels)
        with blas_threads(self.threads):
            if self.C is not None:
                C, report = float(self.C), {"C": float(self.C), "chosen_by": "given"}
            else:
                C, report = self._choose_C(ds.items, labels)
            self.vectorizer_ = self._vectorizer()
            features = self.vectorizer_.fit_transform(ds.items)
            self.logistic_ = self._logistic(C).fit(features, labels)
        self.head_classes_ = np.asarray(self.logistic_.classes_, dtype=np.int64)
        self.C_ = C
        self.classes_ = class_values(ds, y)
        self.fit_info_ = {
            "strategy": self.strategy_name, "train_texts": len(ds), "modality": "text",
            "features": int(features.shape[1]), **report, "seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def _predict_proba_dataset(self, ds: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        with blas_threads(self.threads):
            proba = self.logistic_.predict_proba(self.vectorizer_.transform(ds.items))
        return full_proba(proba, self.head_classes_, len(self.classes_)), np.arange(len(ds)), []

    def save(self, directory: str | os.PathLike[str], **extra: Any) -> Any:
        """Not supported: TF-IDF is the verdict's baseline, not a model to keep."""
        raise TransferkitError("TfidfClassifier is a from-scratch baseline for the transfer verdict and is not saved "
                               "as a bundle; save the transfer model, or pickle this scikit-learn estimator yourself.")
