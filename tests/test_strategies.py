"""Strategies: freezing that really freezes, exact head export, and scikit-learn estimator behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from transferkit import (
    DataError,
    FeatureExtractionClassifier,
    FineTuneClassifier,
    NotFittedError,
    ScratchClassifier,
    TransferkitError,
    WeightsInfo,
    create_backbone,
    from_arrays,
    from_folder,
)
from transferkit.heads import HEADS, head_to_module
from transferkit.strategies._train import TransferModel
from transferkit.training import TrainConfig, Trainer

from .conftest import TINY, tiny_backbone

BN = nn.modules.batchnorm._BatchNorm


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (BatchNorm running_mean/var, num_batches_tracked), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


def bn_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, BN)]


@pytest.fixture
def spy_adamw(monkeypatch):
    """Record every AdamW the training loop builds, with the backbone's requires_grad flags at that moment."""
    created: list[dict] = []
    real = torch.optim.AdamW

    class SpyAdamW(real):
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            created.append({"optimizer": self, "ids": {id(p) for g in self.param_groups for p in g["params"]},
                            "head_before": [p.detach().clone() for p in self.param_groups[0]["params"]],
                            "head_params": list(self.param_groups[0]["params"])})

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    return created


# -- freezing ---------------------------------------------------------------------------------------------

def test_frozen_backbone_is_bit_identical_after_the_head_stage(arrays, spy_adamw):
    images, labels = arrays
    bb = tiny_backbone()
    before = snapshot(bb.trunk)
    bn_modes: list[bool] = []
    requires_grad_seen: list[bool] = []

    def record(module: nn.Module, _inputs: object) -> None:
        bn_modes.append(module.training)
        requires_grad_seen.extend(p.requires_grad for p in module.parameters())

    for m in bn_modules(bb.trunk):
        m.register_forward_pre_hook(record)
    clf = FineTuneClassifier(bb, head_epochs=1, epochs=0, lr_head=1e-2, batch_size=12, augment="none",
                             progress=False).fit(images, labels)

    assert len(clf.history_) == 1 and clf.history_[0]["stage"] == "head"
    assert changed(before, clf.backbone_.trunk) == []  # weights and every BN buffer, bit for bit
    assert bn_modes and not any(bn_modes)  # BN in eval although the loop called model.train()
    assert requires_grad_seen and not any(requires_grad_seen)
    (record_,) = spy_adamw
    backbone_ids = {id(p) for p in clf.backbone_.parameters()}
    assert not record_["ids"] & backbone_ids  # frozen parameters are not in the optimizer...
    assert not {id(p) for p in record_["optimizer"].state} & backbone_ids  # ...and have no optimizer state
    assert record_["ids"] == {id(p) for p in clf.model_.head.parameters()}
    assert any(not torch.equal(b, p) for b, p in zip(record_["head_before"], record_["head_params"], strict=True))


def test_train_after_freeze_keeps_frozen_batchnorm_in_eval(backbone):
    model = TransferModel(backbone, nn.Linear(backbone.num_features, 3), "pre_logits")
    backbone.freeze()
    assert backbone.frozen_groups == [g.name for g in backbone.layer_groups()]
    assert not any(p.requires_grad for p in backbone.parameters())
    model.train()
    assert model.head.training
    assert all(not m.training for m in bn_modules(backbone))
    backbone.unfreeze()
    model.train()
    assert all(m.training for m in bn_modules(backbone))
    assert all(p.requires_grad for p in backbone.parameters())


def test_freeze_train_bn_keeps_batchnorm_learning(backbone):
    backbone.freeze(train_bn=True)
    backbone.train()
    bns = bn_modules(backbone)
    assert bns and all(m.training for m in bns)
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    bn_params = {id(p) for m in bns for p in m.parameters(recurse=False)}
    assert trainable and {id(p) for p in trainable} == bn_params
    before = snapshot(backbone.trunk)
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    backbone(torch.randn(4, 3, 32, 32)).square().mean().backward()
    optimizer.step()
    moved = changed(before, backbone.trunk)
    assert any(k.endswith("running_mean") for k in moved)
    assert any(k.endswith("num_batches_tracked") for k in moved)
    bn_names = {n for n, m in backbone.trunk.named_modules() if isinstance(m, BN)}
    assert all(k.rsplit(".", 1)[0] in bn_names for k in moved)  # only BatchNorm learned


def test_freezing_a_subset_leaves_the_rest_learning(arrays, spy_adamw):
    images, labels = arrays
    bb = tiny_backbone()
    groups = bb.layer_groups()
    frozen, trainable = groups[:2], groups[2:]
    before = {g.name: [snapshot(m) for m in g.modules] for g in groups}
    model = TransferModel(bb, nn.Linear(bb.num_features, 3), "pre_logits")
    config = TrainConfig(schedule="two-stage", head_epochs=0, epochs=1, unfreeze_top=len(trainable), lr_head=1e-2,
                         lr_backbone=1e-2, weight_decay=0.0, augment="none", batch_size=12)
    history = Trainer(config, torch.device("cpu"), progress=False).fit(model, from_arrays(images, labels))
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    for g in frozen:
        assert all(changed(s, m) == [] for s, m in zip(before[g.name], g.modules, strict=True)), g.name
    for g in trainable:
        assert any(changed(s, m) for s, m in zip(before[g.name], g.modules, strict=True)), g.name
    (record,) = spy_adamw
    assert record["ids"] >= {id(p) for g in trainable for p in g.parameters()}
    assert not record["ids"] & {id(p) for g in frozen for p in g.parameters()}
    # the loop hands the backbone back unfrozen
    assert bb.frozen_groups == [] and all(p.requires_grad for p in bb.parameters())


def test_unknown_group_is_refused_with_the_known_ones(backbone):
    with pytest.raises(TransferkitError, match="blocks.0"):
        backbone.freeze(["block.0"])


# -- exact export of the logistic head -------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [3, 2])
@pytest.mark.parametrize("scaled", [True, False])
def test_logistic_head_exports_to_an_exact_torch_module(n_classes, scaled):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 20)
    X = rng.normal(size=(len(y), 16)) + y[:, None] * rng.normal(size=16)
    if scaled:  # the scaler's statistics must travel into the module too
        X = X * 3 + 5
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)) if scaled else \
        make_pipeline(LogisticRegression(max_iter=1000))
    head.fit(X, y)
    module, config = head_to_module(head)
    assert config["out_features"] == n_classes and config["in_features"] == 16
    with torch.inference_mode():
        proba = module(torch.as_tensor(X, dtype=torch.float32)).softmax(-1).numpy()
    np.testing.assert_allclose(proba, head.predict_proba(X), atol=1e-5)


def test_heads_without_an_exact_torch_form_are_not_exported():
    X, y = np.random.default_rng(0).normal(size=(20, 4)), np.repeat([0, 1], 10)
    assert head_to_module(KNeighborsClassifier(3).fit(X, y)) is None


# -- scikit-learn estimator behaviour ----------------------------------------------------------------------

ALL = [FeatureExtractionClassifier, FineTuneClassifier, ScratchClassifier]


@pytest.mark.parametrize("cls", ALL)
def test_get_set_params_and_clone(cls):
    est = cls(backbone="timm:does_not_exist", seed=3)  # __init__ only stores: nothing is validated yet
    params = est.get_params()
    assert params["backbone"] == "timm:does_not_exist" and params["seed"] == 3
    assert est.set_params(seed=7) is est and est.seed == 7
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    with pytest.raises(ValueError):
        est.set_params(not_a_parameter=1)


@pytest.mark.parametrize("cls", ALL)
def test_predict_before_fit_raises_not_fitted(cls, arrays):
    images, _ = arrays
    est = cls(backbone=TINY)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(images)
    with pytest.raises(NotFittedError):
        est.predict_proba(images)
    assert isinstance(NotFittedError("x"), AttributeError)  # what scikit-learn's checks expect


def test_feature_extraction_on_a_folder(image_folder):
    ds = from_folder(image_folder)
    clf = FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(ds)
    assert list(clf.classes_) == ["blue", "green", "red"]
    pred = clf.predict(ds)
    assert set(pred) <= set(clf.classes_) and pred.dtype.kind == "U"
    truth = np.asarray(ds.classes)[ds.labels]
    assert clf.score(ds) == pytest.approx(np.mean(pred == truth))
    assert clf.score(ds) > 0.6  # colour classes are easy even for random features
    assert clf.head_module_ is not None  # logistic is served by its exact torch form
    proba = clf.predict_proba(ds)
    np.testing.assert_allclose(proba, clf.head_.predict_proba(clf.transform(ds)), atol=1e-5)
    # the same images as a list of paths with class-name labels
    paths = list(ds.items)
    assert clf.score(paths, truth) == clf.score(ds)
    assert list(clf.predict(paths[:3])) == list(pred[:3])


def test_feature_extraction_on_arrays(arrays):
    images, labels = arrays
    clf = FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(images, labels)
    assert list(clf.classes_) == [0, 1, 2]  # integer labels stay integers, as in scikit-learn
    assert clf.score(images, labels) > 0.6
    assert clf.fit_info_["train_images"] == len(images)
    assert clf.transform(images).shape == (len(images), clf.backbone_.num_features)


@pytest.mark.parametrize("head", list(HEADS))
def test_every_named_head_fits_and_predicts_probabilities(head, arrays):
    images, labels = arrays
    clf = FeatureExtractionClassifier(tiny_backbone(), head=head, progress=False).fit(images, labels)
    proba = clf.predict_proba(images)
    assert proba.shape == (len(images), 3)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


def test_a_user_sklearn_estimator_is_cloned_and_used(arrays):
    images, labels = arrays
    knn = KNeighborsClassifier(n_neighbors=3)
    clf = FeatureExtractionClassifier(tiny_backbone(), head=knn, progress=False).fit(images, labels)
    assert isinstance(clf.head_, KNeighborsClassifier) and clf.head_ is not knn
    assert not hasattr(knn, "classes_")  # the user's estimator was not fitted in place
    assert clf.head_module_ is None
    np.testing.assert_allclose(clf.predict_proba(images).sum(1), 1.0)
    assert clf.score(images, labels) > 0.6


def test_unknown_head_suggests_the_closest(arrays):
    images, labels = arrays
    with pytest.raises(TransferkitError, match="Did you mean: logistic"):
        FeatureExtractionClassifier(tiny_backbone(), head="logistik", progress=False).fit(images, labels)


@pytest.mark.parametrize("cls", ALL)
def test_single_class_dataset_is_refused(cls, arrays):
    images, _ = arrays
    with pytest.raises(DataError, match="one class"):
        cls(backbone=tiny_backbone(), progress=False).fit(images[:6], np.zeros(6, dtype=int))


def test_grid_search_over_heads(arrays):
    images, labels = arrays
    search = GridSearchCV(FeatureExtractionClassifier(tiny_backbone(), progress=False),
                          {"head": ["logistic", "linear"]}, cv=2)
    search.fit(images, labels)
    assert search.best_params_["head"] in ("logistic", "linear")
    assert search.score(images, labels) > 0.6


def test_fine_tune_runs_both_stages_and_records_history(arrays):
    images, labels = arrays
    bb = tiny_backbone()
    before = snapshot(bb.trunk)
    clf = FineTuneClassifier(bb, head_epochs=1, epochs=1, batch_size=12, image_size=28, progress=False)
    clf.fit(images[::2], labels[::2], validation=from_arrays(images[1::2], labels[1::2]))
    assert [row["stage"] for row in clf.history_] == ["head", "fine-tune"]
    assert all(np.isfinite(row["loss"]) and 0 <= row["val_accuracy"] <= 1 for row in clf.history_)
    assert changed(before, clf.backbone_.trunk)  # the second stage trained the backbone
    assert changed(before, bb.trunk) == [] and clf.backbone_ is not bb  # fit left the caller's object alone
    assert clf.predict_proba(images).shape == (len(images), 3)
    assert clf.fit_info_["train_images"] == len(images[::2])
    assert clf.backbone_.preprocessing.image_size == (28, 28) and bb.preprocessing.image_size == (32, 32)


def test_scratch_trains_a_random_init(arrays):
    images, labels = arrays
    assert ScratchClassifier().pretrained is False
    assert "pretrained" not in ScratchClassifier().get_params()
    clf = ScratchClassifier(TINY, epochs=1, image_size=32, batch_size=12, progress=False).fit(images, labels)
    assert [row["stage"] for row in clf.history_] == ["full"]  # every group from the first step
    assert not clf.backbone_.weights.pretrained
    init = create_backbone(TINY, pretrained=False)  # the seeded random init it started from
    assert init.trunk.state_dict().keys() == clf.backbone_.trunk.state_dict().keys()
    assert changed(snapshot(init.trunk), clf.backbone_.trunk)
    assert clf.predict(images[:4]).shape == (4,)


def test_scratch_ignores_the_weights_of_a_backbone_object(arrays):
    images, labels = arrays
    bb = tiny_backbone()
    with torch.no_grad():
        for p in bb.trunk.parameters():
            p.fill_(0.01)
    bb.weights = WeightsInfo(**{**bb.weights.to_dict(), "pretrained": True, "origin": "stand-in pretrained"})
    clf = ScratchClassifier(bb, epochs=1, batch_size=12, progress=False).fit(images, labels)
    assert not clf.backbone_.weights.pretrained
    assert clf.backbone_.preprocessing == bb.preprocessing  # the architecture and its input size are kept
    init = create_backbone(TINY, pretrained=False)
    init_params = dict(init.trunk.named_parameters())
    far_from_init = [k for k, v in clf.backbone_.trunk.named_parameters()
                     if not torch.allclose(v, init_params[k], atol=0.05)]
    assert not far_from_init  # one epoch from the random init, not from the 0.01-filled weights


def test_integer_labels_come_back_as_integers_like_scikit_learn(arrays, tmp_path):
    from sklearn.metrics import accuracy_score

    images, labels = arrays
    clf = FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(images, labels)
    predicted = clf.predict(images)
    assert predicted.dtype.kind == "i" and set(predicted) <= {0, 1, 2}
    assert accuracy_score(labels, predicted) == clf.score(images, labels)
    clf.save(tmp_path / "b")
    from transferkit import load_bundle

    assert np.array_equal(load_bundle(tmp_path / "b", progress=False).predict(images), predicted)
