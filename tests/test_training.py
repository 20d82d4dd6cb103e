"""The fine-tuning engine: plans, discriminative learning rates, schedules, LR finder, checkpoints, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferkit as tk
import transferkit.training.loop as loop_module
from transferkit.data.loader import backbone_batches
from transferkit.heads import build_head_module
from transferkit.strategies._train import TransferModel
from transferkit.training import (
    TrainConfig,
    Trainer,
    build_plan,
    load_checkpoint,
    lr_find,
    make_scheduler,
    param_groups,
)

from .conftest import COLORS, make_image, tiny_backbone


def small_dataset(per_class: int = 8) -> tk.ImageDataset:
    images, labels = [], []
    for c, color in enumerate(COLORS.values()):
        for i in range(per_class):
            images.append(np.asarray(make_image(color, seed=100 * c + i)))
            labels.append(c)
    return tk.from_arrays(np.stack(images), np.array(labels))


def small_model() -> TransferModel:
    torch.manual_seed(0)
    bb = tiny_backbone(32)
    head = build_head_module({"type": "linear", "in_features": bb.num_features, "out_features": 3})
    return TransferModel(bb, head, "pre_logits")


def test_plans_follow_the_schedules():
    bb = tiny_backbone()
    groups = [g.name for g in bb.layer_groups()]
    two = build_plan(bb, schedule="two-stage", head_epochs=2, epochs=3)
    assert [(s.epochs, s.trainable_groups) for s in two] == [(2, ()), (3, tuple(groups))]
    gradual = build_plan(bb, schedule="gradual", head_epochs=1, epochs=2)
    assert gradual[0].trainable_groups == ()
    assert [len(s.trainable_groups) for s in gradual[1:]] == list(range(1, len(groups) + 1))
    assert gradual[1].trainable_groups == (groups[-1],)  # top group first
    top2 = build_plan(bb, schedule="two-stage", unfreeze_top=2)
    assert top2[-1].trainable_groups == tuple(groups[-2:])
    with pytest.raises(tk.TransferkitError, match="^unfreeze_top must be between"):
        build_plan(bb, unfreeze_top=99)
    with pytest.raises(tk.TransferkitError, match="schedule"):
        build_plan(bb, schedule="sideways")


def test_a_plan_at_an_inner_layer_unfreezes_only_what_computes_it():
    bb = tiny_backbone()
    layer = "blocks.2"
    used = bb.groups_for(layer)
    assert used == [g.name for g in bb.layer_groups()][:len(used)] and 1 < len(used) < len(bb.layer_groups())
    gradual = build_plan(bb, schedule="gradual", layer=layer)
    assert gradual[1].trainable_groups == (used[-1],) and gradual[-1].trainable_groups == tuple(used)
    with pytest.raises(tk.TransferkitError, match=f"up to layer={layer!r}"):
        build_plan(bb, unfreeze_top=len(used) + 1, layer=layer)
    # every group it unfreezes gets a gradient from a forward pass at that layer; the others are not in the plan
    model = TransferModel(bb, build_head_module({"type": "linear", "in_features": bb.layer_dim(layer),
                                                 "out_features": 3}), layer)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    reached = {g.name for g in bb.layer_groups() if any(p.grad is not None for p in g.parameters())}
    assert reached == set(used)


def test_discriminative_learning_rates_decay_towards_the_input():
    model = small_model()
    bb = model.backbone
    names = tuple(g.name for g in bb.layer_groups())
    bb.unfreeze()
    groups = param_groups(bb, model.head, names, lr_head=1e-2, lr_backbone=1e-3, lr_decay=0.5, weight_decay=0.1)
    lrs = {g["name"]: g["lr"] for g in groups if "no decay" not in g["name"]}
    assert lrs["head"] == 1e-2
    assert lrs[names[-1]] == pytest.approx(1e-3)
    assert lrs[names[-2]] == pytest.approx(5e-4)
    assert lrs[names[1]] == pytest.approx(1e-3 * 0.5 ** (len(names) - 2))
    assert all(g["weight_decay"] == 0.0 for g in groups if "no decay" in g["name"])
    # frozen groups contribute no parameters, hence no optimizer state
    bb.freeze(list(names[:3]))
    frozen_ids = {id(p) for g in bb.layer_groups()[:3] for p in g.parameters()}
    groups = param_groups(bb, model.head, names[3:], lr_head=1e-2, lr_backbone=1e-3)
    assert not frozen_ids & {id(p) for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", ["cosine", "one-cycle", "constant"])
def test_schedulers_warm_up_and_keep_group_ratios(name):
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW([{"params": [params[0]], "lr": 1e-2}, {"params": [params[1]], "lr": 1e-3}])
    sched = make_scheduler(opt, name, total_steps=100, warmup_fraction=0.1)
    seen = []
    for _ in range(100):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    seen = np.array(seen)
    assert seen[0, 0] < seen[10, 0]  # warmup
    np.testing.assert_allclose(seen[:, 0] / seen[:, 1], 10.0, rtol=1e-6)
    if name != "constant":
        assert seen[-1, 0] < 0.1 * seen[:, 0].max()  # annealed


def test_lr_find_changes_nothing_in_the_model():
    model = small_model()
    model.backbone.freeze(train_bn=False)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    modes = {n: m.training for n, m in model.named_modules()}
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(8) % 3
    result = lr_find(model, [(x, y)] * 3, torch.nn.functional.cross_entropy, num_steps=20)
    assert len(result["lrs"]) > 5 and result["lrs"][0] < result["lrs"][-1]
    assert 1e-7 <= result["suggested_lr"] <= 1.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [p.requires_grad for p in model.parameters()]
    assert modes == {n: m.training for n, m in model.named_modules()}


def test_frozen_groups_are_bit_identical_after_the_head_stage():
    model = small_model()
    bb_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    cfg = TrainConfig(schedule="two-stage", head_epochs=2, epochs=0, batch_size=8, augment="light")
    Trainer(cfg, torch.device("cpu"), progress=False).fit(model, small_dataset())
    after = model.backbone.state_dict()
    assert all(torch.equal(bb_before[k], after[k]) for k in bb_before)  # weights and BN buffers
    assert any(not torch.equal(head_before[k], v) for k, v in model.head.state_dict().items())


def test_early_stopping_restores_the_best_weights(tmp_path, monkeypatch):
    scores = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.1])
    snapshots = {}

    def fake_validate(self, model, val, loss_fn):
        score = next(scores)
        snapshots[score] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val_accuracy": score, "val_loss": 1 - score}

    monkeypatch.setattr(Trainer, "validate", fake_validate)
    model = small_model()
    cfg = TrainConfig(schedule="full", epochs=6, batch_size=8, early_stopping=2, augment="none")
    history = Trainer(cfg, torch.device("cpu"), tmp_path, progress=False).fit(model, small_dataset(), small_dataset(2))
    assert len(history) == 4  # stopped after two epochs without improvement
    assert history[-1].get("early_stopped")
    best = snapshots[0.9]
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in rows] == [0.5, 0.9, 0.4, 0.3]
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("lose_latest", [False, True])
def test_resume_after_a_crash_ends_with_the_same_weights(tmp_path, monkeypatch, lose_latest):
    cfg = TrainConfig(schedule="gradual", head_epochs=1, epochs=1, batch_size=8, checkpoint_every=2,
                      augment="strong", lr_decay=0.5)
    data = small_dataset()
    reference = small_model()
    ref_history = Trainer(cfg, torch.device("cpu"), tmp_path / "a", progress=False).fit(reference, data)

    original = Trainer._checkpoint
    calls = {"n": 0}

    def crash_after_fourth(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated kill -9")

    monkeypatch.setattr(Trainer, "_checkpoint", crash_after_fourth)
    with pytest.raises(RuntimeError, match="simulated"):
        Trainer(cfg, torch.device("cpu"), tmp_path / "b", progress=False).fit(small_model(), data)
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    assert load_checkpoint(tmp_path / "b") is not None
    if lose_latest:  # killed while the newest checkpoint was being replaced: the one before it takes over
        latest = tmp_path / "b" / "checkpoints" / (tmp_path / "b" / "checkpoints" / "latest").read_text().strip()
        (latest / "state.safetensors").unlink()
    torch.manual_seed(1234)  # a different process state: everything must come from the checkpoint
    resumed = small_model()
    history = Trainer(cfg, torch.device("cpu"), tmp_path / "b", progress=False).fit(resumed, data, resume=True)
    ref, got = reference.state_dict(), resumed.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert [r["loss"] for r in history] == [r["loss"] for r in ref_history]


def test_resume_refuses_other_settings(tmp_path):
    data = small_dataset(4)
    Trainer(TrainConfig(schedule="full", epochs=1, batch_size=8), torch.device("cpu"), tmp_path, progress=False).fit(
        small_model(), data)
    with pytest.raises(tk.TransferkitError, match="other training settings"):
        Trainer(TrainConfig(schedule="full", epochs=2, batch_size=8), torch.device("cpu"), tmp_path,
                progress=False).fit(small_model(), data, resume=True)


def test_resume_with_no_checkpoint_runs_from_the_beginning_and_says_so(tmp_path, capsys):
    """A run killed before its first checkpoint has nothing to resume but the whole run (it was refused)."""
    cfg = TrainConfig(schedule="full", epochs=2, batch_size=8)
    data = small_dataset(4)
    fresh = Trainer(cfg, torch.device("cpu"), tmp_path / "fresh", progress=False).fit(small_model(), data)
    capsys.readouterr()
    resumed = Trainer(cfg, torch.device("cpu"), tmp_path / "killed", progress=False).fit(small_model(), data,
                                                                                        resume=True)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in fresh]
    (note,) = capsys.readouterr().err.strip().splitlines()
    assert "nothing to resume" in note and "starting from the beginning" in note
    with pytest.raises(tk.TransferkitError, match="run_dir"):
        Trainer(cfg, torch.device("cpu"), None, progress=False).fit(small_model(), data, resume=True)


def test_a_run_deletes_what_a_killed_run_left_half_written(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".step-00000003.tmp").mkdir(parents=True)
    (run / "checkpoints" / ".step-00000003.tmp" / "state.safetensors").write_bytes(b"half")
    stale = [run / ".metrics.jsonl.k2_9xq1a.tmp", run / ".training_curves.png.abcdefgh.tmp",
             run / "checkpoints" / ".latest.0a1b2c3d.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    (run / "notes.tmp").write_text("the user's")  # not an atomic-write temporary: kept
    Trainer(TrainConfig(schedule="full", epochs=1, batch_size=8), torch.device("cpu"), run, progress=False).fit(
        small_model(), small_dataset(4), resume=True)
    assert not any(p.exists() for p in stale) and not (run / "checkpoints" / ".step-00000003.tmp").exists()
    assert (run / "notes.tmp").read_text() == "the user's"


def test_a_damaged_checkpoint_is_reported_not_read(tmp_path):
    data = small_dataset(4)
    Trainer(TrainConfig(schedule="full", epochs=1, batch_size=8), torch.device("cpu"), tmp_path, progress=False).fit(
        small_model(), data)
    latest = tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text()
    (latest / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(tk.TransferkitError, match="damaged"):
        load_checkpoint(tmp_path)


def test_ctrl_c_saves_a_checkpoint_and_stops_cleanly(tmp_path, monkeypatch):
    import signal

    data = small_dataset()
    original = loop_module.Trainer._train_epoch

    def interrupting(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # delivered to our handler: the loop stops after the next step
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop_module.Trainer, "_train_epoch", interrupting)
    cfg = TrainConfig(schedule="full", epochs=2, batch_size=8)
    with pytest.raises(loop_module.Interrupted, match="resume=True"):
        Trainer(cfg, torch.device("cpu"), tmp_path, progress=False).fit(small_model(), data)
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["position"]["step"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_balanced_sampling_and_class_weights_run():
    images, labels = [], []
    for c, (n, color) in enumerate(zip([12, 3, 3], COLORS.values(), strict=True)):
        for i in range(n):
            images.append(np.asarray(make_image(color, seed=10 * c + i)))
            labels.append(c)
    data = tk.from_arrays(np.stack(images), np.array(labels))
    labels = torch.as_tensor(data.labels)
    plain = Trainer(TrainConfig(), torch.device("cpu"), progress=False)
    np.testing.assert_array_equal(np.bincount(data.labels[plain._epoch_order(labels, epoch=1).numpy()]), [12, 3, 3])
    trainer = Trainer(TrainConfig(balanced_sampling=True, class_weight="balanced"), torch.device("cpu"), progress=False)
    # over 20 epochs of 18 draws: the minority classes hold 6 of 18 items (1/3) but get about 2/3 of the draws
    drawn = np.concatenate([data.labels[trainer._epoch_order(labels, epoch=e).numpy()] for e in range(20)])
    counts = np.bincount(drawn, minlength=3)
    assert (counts[1] + counts[2]) / counts.sum() > 0.55
    assert abs(int(counts[1]) - int(counts[2])) < 0.25 * counts[1:].sum()  # and about equally often
    loss = trainer._loss(torch.as_tensor(data.labels), 3)
    assert loss.weight[1] > loss.weight[0]


def test_precise_bn_gives_exact_statistics_to_the_layers_that_trained_only():
    from transferkit.training.loop import recalibrate_batchnorm

    data = small_dataset()
    model = small_model()
    cfg = TrainConfig(schedule="two-stage", head_epochs=1, epochs=1, unfreeze_top=2, batch_size=8, augment="light",
                      precise_bn=1000)
    frozen_before = {n: m.running_mean.clone() for n, m in model.backbone.trunk.named_modules()
                     if isinstance(m, torch.nn.BatchNorm2d)}
    Trainer(cfg, torch.device("cpu"), progress=False).fit(model, data)
    norms = {n: m for n, m in model.backbone.trunk.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    trained = [n for n in norms if not torch.equal(norms[n].running_mean, frozen_before[n])]
    untouched = [n for n in norms if n not in trained]
    assert trained and untouched  # the top two groups trained, the rest kept the source statistics
    # The first trained layer sees the same inputs in eval mode (everything before it is frozen): its statistics
    # must be the exact mean over all training images through the inference transform, not a momentum average.
    first = trained[0]
    seen: list[torch.Tensor] = []
    hook = norms[first].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        model.eval()
        for batch in backbone_batches(model.backbone, data, batch_size=len(data)):
            model(batch["inputs"])
    hook.remove()
    torch.testing.assert_close(norms[first].running_mean, seen[0].mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert int(norms[first].num_batches_tracked) == 3  # 24 images in batches of 8, counted from zero
    frozen = small_model()
    frozen.backbone.freeze()
    assert recalibrate_batchnorm(frozen, data, torch.device("cpu"), max_images=8) == 0  # nothing trained


@pytest.mark.parametrize("total", [1, 2, 3, 20, 39])
def test_one_cycle_takes_any_number_of_steps(total):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-2)
    sched = make_scheduler(opt, "one-cycle", total_steps=total)  # 20 steps at 5% warmup divided by zero
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(np.isfinite(lrs)) and max(lrs) <= 1e-2 + 1e-12


def test_batchnorm_of_frozen_groups_learns_with_train_bn():
    model = small_model()
    stage = build_plan(model.backbone, schedule="two-stage")[0]  # the head stage: every group frozen
    loop_module.apply_stage(model.backbone, stage, train_bn=True)
    groups = param_groups(model.backbone, model.head, stage.trainable_groups, lr_head=1e-3, lr_backbone=1e-4)
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    bn = [p for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert bn and all(p.requires_grad and id(p) in in_optimizer for p in bn)
    loop_module.apply_stage(model.backbone, stage, train_bn=False)
    groups = param_groups(model.backbone, model.head, stage.trainable_groups, lr_head=1e-3, lr_backbone=1e-4)
    assert [g["name"] for g in groups] == ["head", "head (no decay)"]


def test_balanced_class_weight_ignores_a_class_without_images():
    trainer = Trainer(TrainConfig(class_weight="balanced"), torch.device("cpu"), progress=False)
    loss = trainer._loss(torch.tensor([0] * 6 + [1] * 2), num_classes=3)
    assert loss.weight.tolist() == pytest.approx([8 / 12, 8 / 4, 0.0])


def test_precise_bn_without_a_usable_batch_keeps_the_statistics():
    model = small_model()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.running_mean.fill_(0.5)
    before = [m.running_mean.clone() for m in norms]
    assert loop_module.recalibrate_batchnorm(model, small_dataset(1).subset([0]), torch.device("cpu"),
                                             max_images=1, batch_size=8, seed=0,
                                             autocast_ctx=loop_module.contextlib.nullcontext) == 0
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before, strict=True))


def test_each_epoch_gives_loader_workers_a_new_seed(monkeypatch):
    model = small_model()
    seeds = []
    original = loop_module.backbone_batches

    def recording(*args, **kwargs):
        if kwargs.get("augment", "none") != "none":  # the training loader, not validation
            seeds.append(kwargs["seed"])
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "backbone_batches", recording)
    cfg = TrainConfig(schedule="full", epochs=3, batch_size=8, augment="strong")
    Trainer(cfg, torch.device("cpu"), progress=False).fit(model, small_dataset())
    assert len(seeds) == 3 and len(set(seeds)) == 3  # a fixed seed repeated every epoch's augmentation in workers
    again = []
    seeds, again = again, seeds
    Trainer(cfg, torch.device("cpu"), progress=False).fit(small_model(), small_dataset())
    assert seeds == again  # and the same run gets the same ones


def test_early_stopping_needs_a_patience_of_at_least_one():
    with pytest.raises(tk.TransferkitError, match="patience in epochs, at least 1"):
        Trainer(TrainConfig(early_stopping=0), torch.device("cpu"), progress=False).fit(small_model(), small_dataset())


def test_a_stage_that_stops_early_hands_its_best_weights_to_the_next(monkeypatch):
    scores = iter([0.5, 0.9, 0.6, 0.7, 0.7])  # head stage: best after its 2nd epoch, then one bad epoch: stop
    monkeypatch.setattr(Trainer, "validate", lambda self, *a: {"val_accuracy": next(scores), "val_loss": 1.0})
    after_epoch, stage_starts = [], []
    train_epoch, make_optimizer = Trainer._train_epoch, Trainer._optimizer

    def epoch(self, net, model, *a, **k):
        row = train_epoch(self, net, model, *a, **k)
        after_epoch.append({k: v.clone() for k, v in model.state_dict().items()})
        return row

    def optimizer(self, model, stage):
        stage_starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return make_optimizer(self, model, stage)

    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    monkeypatch.setattr(Trainer, "_optimizer", optimizer)
    cfg = TrainConfig(schedule="two-stage", head_epochs=4, epochs=1, early_stopping=1, batch_size=8)
    history = Trainer(cfg, torch.device("cpu"), progress=False).fit(small_model(), small_dataset(), small_dataset(2))
    assert [r["stage"] for r in history] == ["head", "head", "head", "fine-tune"] and history[2]["early_stopped"]
    best, last = after_epoch[1], after_epoch[2]
    start = stage_starts[1]
    assert all(torch.equal(start[k], best[k]) for k in best)
    assert not all(torch.equal(start[k], last[k]) for k in last)


def test_strategies_curve_and_cli_read_their_training_defaults_from_one_place():
    import dataclasses

    from transferkit.cli._train_options import TRAIN_OPTIONS
    from transferkit.training import CURVE_FINE_TUNE_EPOCHS, FINE_TUNE_DEFAULTS, SCRATCH_DEFAULTS

    # the numbers a user gets by default (issue 17: defined once, unchanged)
    assert (FINE_TUNE_DEFAULTS.epochs, FINE_TUNE_DEFAULTS.weight_decay, FINE_TUNE_DEFAULTS.lr_head) == (3, 1e-4, 1e-3)
    assert (SCRATCH_DEFAULTS.epochs, SCRATCH_DEFAULTS.weight_decay, SCRATCH_DEFAULTS.lr_head) == (15, 5e-4, 2e-3)
    assert TrainConfig().epochs == 5 and CURVE_FINE_TUNE_EPOCHS == 6
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    fine_tune = tk.FineTuneClassifier()
    assert fine_tune.train_config() == FINE_TUNE_DEFAULTS
    assert {k: v for k, v in fine_tune.get_params().items() if k in fields} == {
        k: v for k, v in dataclasses.asdict(FINE_TUNE_DEFAULTS).items() if k in fine_tune.get_params()}
    assert tk.ScratchClassifier().train_config() == SCRATCH_DEFAULTS
    curve = tk.CurveConfig()
    assert (curve.epochs, curve.scratch_epochs, curve.batch_size) == (
        CURVE_FINE_TUNE_EPOCHS, SCRATCH_DEFAULTS.epochs, FINE_TUNE_DEFAULTS.batch_size)
    helps = {flag: kw.get("help", "") for flag, _, kw in TRAIN_OPTIONS}
    assert "default 0.001; scratch 0.002" in helps["--lr"]
    assert "default 0.0001; scratch 0.0005" in helps["--weight-decay"]
