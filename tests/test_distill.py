"""`transferkit distill` (issue 19): soft targets move a student toward its teacher, the small-CNN student is a
normal bundle, licences travel with the teacher, bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit import FeatureExtractionClassifier, FineTuneClassifier, WeightsInfo, from_arrays, from_folder
from transferkit.backbones import create_backbone
from transferkit.bundle import update_bundle_meta
from transferkit.strategies.distill import DistillationLoss, fit_distilled

from .conftest import COLORS, make_image, tiny_backbone
from .test_cli import assert_user_error, cli, one_json


def test_the_loss_is_hintons_kl_times_t_squared_plus_hard_cross_entropy():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    hard = np.array([0, -1])
    logits = torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0]])
    loss = DistillationLoss(hard, soft, temperature=2.0, alpha=0.25)(logits, torch.tensor([0, 1]))
    p_t = torch.softmax(torch.log(torch.from_numpy(soft)) / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(logits / 2, -1))).sum(1).mean()
    ce = torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0]))  # the unlabelled row brings no hard term
    assert float(loss) == pytest.approx(float(0.25 * 4 * kl + 0.75 * ce), rel=1e-5)
    # a student that already matches the teacher has nothing left to learn from it
    matched = DistillationLoss(hard, soft, temperature=3.0, alpha=1.0)(torch.log(torch.from_numpy(soft)),
                                                                        torch.tensor([0, 1]))
    assert float(matched) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(Exception, match="alpha"):
        DistillationLoss(hard, soft, alpha=1.5)


def _bars(n_per_class: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a horizontal bar, 1: a vertical one, 2: both; on a random colour (the same for every class), so one
    labelled image per class says little and the teacher's targets on unlabelled images say much."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            a = rng.integers(0, 256, 3)[None, None, :] + rng.normal(0, 20, (size, size, 3))
            row, col = rng.integers(1, size - 3, 2)
            if c in (0, 2):
                a[row:row + 2, :, :] = 255
            if c in (1, 2):
                a[:, col:col + 2, :] = 255
            images.append(np.clip(a, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def test_distillation_moves_the_student_toward_the_teacher():
    """One label per class and 60 unlabelled items: the teacher's soft targets on them bring the student much closer
    to the teacher (KL and agreement on unseen items) than the same student trained on the labels alone."""
    x, y = _bars(21, seed=1)
    test_x, test_y = _bars(20, seed=2)
    teacher_of = np.eye(3, dtype=np.float32) * 0.8 + 0.2 / 3  # a confident teacher that knows the rule
    labelled = np.array([0, 21, 42])
    hard = np.full(len(y), -1)
    hard[labelled] = y[labelled]
    classes = ["horizontal", "vertical", "cross"]

    def student() -> FineTuneClassifier:
        backbone = create_backbone("small-cnn:3x12x12-w8", pretrained=False)
        return FineTuneClassifier(backbone, pretrained=False, schedule="full", head_epochs=0, epochs=6,
                                  lr_head=3e-3, lr_backbone=3e-3, augment="none", batch_size=16, progress=False)

    distilled = fit_distilled(student(), from_arrays(x), hard, teacher_of[y], classes, temperature=2.0, alpha=0.9)
    labels_only = fit_distilled(student(), from_arrays(x[labelled]), y[labelled], None, classes, alpha=0.0,
                                epochs=6 * 5)  # the same optimizer steps: 5 batches of 16 vs 1 batch of 3
    target = teacher_of[test_y]

    def kl(model: FineTuneClassifier) -> float:
        q = np.clip(model.predict_proba(test_x), 1e-8, 1)
        return float(np.mean(np.sum(target * (np.log(target) - np.log(q)), 1)))

    def agreement(model: FineTuneClassifier) -> float:
        return float(np.mean(model.predict_proba(test_x).argmax(1) == test_y))

    assert kl(distilled) < kl(labels_only) - 0.3
    assert agreement(distilled) > agreement(labels_only) + 0.15
    assert distilled.fit_info_["distillation"] == {"temperature": 2.0, "alpha": 0.9, "labelled_items": 3,
                                                   "unlabelled_items": 60}


@pytest.fixture
def teacher(tmp_path: Path, image_folder: Path) -> Path:
    root = tmp_path / "teacher"
    FeatureExtractionClassifier(tiny_backbone(), progress=False).fit(from_folder(image_folder)).save(root)
    return root


def test_cli_distill_writes_a_student_bundle_predict_and_evaluate_accept(capsys, tmp_path, image_folder, teacher):
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for i, color in enumerate(COLORS.values()):
        make_image(color, seed=777 + i).save(unlabeled / f"u{i}.png")
    out = tmp_path / "student"
    code, stdout, err = cli(capsys, "distill", teacher, image_folder, "--student", "small-cnn", "--unlabeled",
                            unlabeled, "--out", out, "--epochs", "2", "--json", "--no-progress")
    assert code == 0, err
    r = one_json(stdout)
    assert r["student"] == "small-cnn:3x24x24" and r["unlabelled_items"] == 3 and r["labelled_items"] == 19
    assert set(r["models"]) == {"teacher", "student", "labels_only"}
    assert r["models"]["student"]["parameters"] < r["models"]["teacher"]["parameters"]
    assert all(m["latency_ms"] > 0 and 0 <= m["accuracy"] <= 1 for m in r["models"].values())
    assert json.loads((out / "distill.json").read_text())["models"] == r["models"]
    meta = json.loads((out / "transferkit.json").read_text())
    assert meta["strategy"] == "fine-tune" and meta["backbone"]["arch_spec"] == "small-cnn:3x24x24"
    assert meta["distillation"]["teacher"]["bundle"] == str(teacher)
    assert [e["role"] for e in meta["licence_chain"]] == ["weights", "teacher"]
    assert meta["licence_chain"][1]["via"] == [f"bundle:{teacher}"]

    code, stdout, err = cli(capsys, "predict", out, image_folder / "red" / "0.png", "--json", "--no-progress")
    assert code == 0, err and one_json(stdout)["predictions"][0]["label"] in COLORS
    code, stdout, err = cli(capsys, "evaluate", out, image_folder, "--json", "--no-progress")
    assert code == 0, err
    assert one_json(stdout)["images"] == 24


def test_commercial_refuses_a_non_commercial_teacher_and_export_does_too(capsys, tmp_path, image_folder, teacher):
    update_bundle_meta(teacher, licence="CC-BY-NC-4.0", licence_chain=[
        {"source": "hub:someone/tiny", "licence": "CC-BY-NC-4.0", "role": "weights", "via": []}])
    out = tmp_path / "refused"
    line = assert_user_error(cli(capsys, "distill", teacher, image_folder, "--student", "small-cnn", "--out", out,
                                 "--commercial", "--no-progress"), "CC-BY-NC-4.0")
    assert "the distillation teacher hub:someone/tiny" in line and not out.exists()
    assert_user_error(cli(capsys, "export", teacher, "--out", tmp_path / "t.onnx", "--commercial"),
                      "does not allow commercial use")
    # the student's own weights are checked too, before any data is read
    update_bundle_meta(teacher, licence="Apache-2.0", licence_chain=[
        {"source": "packaged:efficientnet_lite0", "licence": "Apache-2.0", "role": "weights", "via": []}])
    assert_user_error(cli(capsys, "distill", teacher, "no-such-data", "--student", "timm:convnextv2_atto.fcmae",
                          "--out", out, "--commercial"), r"timm:convnextv2_atto\.fcmae is licensed CC-BY-NC-4\.0")


def test_bad_input_is_one_line(capsys, tmp_path, image_folder, teacher):
    out = tmp_path / "out"
    assert_user_error(cli(capsys, "distill", tmp_path / "ghost", image_folder, "--student", "small-cnn", "--out",
                          out), "ghost")
    other = tmp_path / "other"
    for name in ("cyan", "magenta"):
        (other / name).mkdir(parents=True)
        for i in range(3):
            make_image((0, 200, 200), seed=i).save(other / name / f"{i}.png")
    assert_user_error(cli(capsys, "distill", teacher, other, "--student", "small-cnn", "--out", out,
                          "--no-progress"), "classes the model was not trained on: cyan, magenta")
    assert_user_error(cli(capsys, "distill", teacher, image_folder, "--student", "small-cnn:5x9", "--out", out,
                          "--no-progress"), "small-cnn spec must be")
    assert_user_error(cli(capsys, "distill", teacher, image_folder, "--student", "small-cnn", "--out", out,
                          "--temperature", "0"), "--temperature")
    assert not out.exists()


def student_meta(directory: Path) -> dict:
    return json.loads((directory / "transferkit.json").read_text())


def test_small_cnn_backbone_rebuilds_from_its_spec_and_counts_its_weights():
    backbone = create_backbone("small-cnn:1x28x28-w8")
    assert backbone.layers == ["block1", "block2", "pre_logits"] and backbone.num_features == 32
    assert backbone(torch.zeros(2, 1, 28, 28)).shape == (2, 32)
    assert backbone.weights.licence == "none (random init)" and backbone.preprocessing.input_size == (1, 28, 28)
    twin = create_backbone(backbone.arch_spec, pretrained=False)
    twin.trunk.load_state_dict(backbone.trunk.state_dict())
    assert {g.name for g in twin.layer_groups()} == {"block1", "block2", "block3"}
    backbone.weights = WeightsInfo("small-cnn", False, "none", "random init")
    assert sum(p.numel() for p in backbone.parameters()) == sum(p.numel() for p in twin.parameters())


def test_a_word_vector_student_learns_a_text_teacher(tmp_path):
    from transferkit import from_texts, load_bundle
    from transferkit.jobs.distill import DistillConfig, distill

    from .test_text import WORDS, make_texts

    vectors = tmp_path / "v.txt"
    rng = np.random.default_rng(0)
    vectors.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=8))}\n" for w in WORDS))
    texts, labels = make_texts(10)
    teacher = tmp_path / "teacher"
    FeatureExtractionClassifier(f"vectors:{vectors}", progress=False, cache=False).fit(texts, labels).save(teacher)
    more, _ = make_texts(10, seed=1)
    (tmp_path / "more.txt").write_text("".join(f"{t}\n" for t in more))  # --unlabeled FILE.txt: one text per line
    test_texts, test_labels = make_texts(5, seed=2)
    r = distill(DistillConfig(teacher=str(teacher), data=from_texts(texts[::5], labels[::5]), out=str(tmp_path / "s"),
                              student=f"vectors:{vectors}", unlabeled=str(tmp_path / "more.txt"), epochs=1,
                              test=from_texts(test_texts, test_labels), latency_runs=2, progress=False))
    assert r["labelled_items"] == 4 and r["unlabelled_items"] == 20
    student = load_bundle(tmp_path / "s", progress=False)
    assert student.modality_ == "text" and student.predict(test_texts).shape == (10,)
    assert student.fit_info_["distillation"]["unlabelled_items"] == 20
    assert {e["role"] for e in student_meta(tmp_path / "s")["licence_chain"]} == {"weights", "teacher"}


def test_restrict_vocabulary_keeps_the_used_words_and_their_vectors(tmp_path):
    from transferkit.backbones.vectors import restrict_vocabulary

    from .test_text import WORDS

    vectors = tmp_path / "v.txt"
    rng = np.random.default_rng(0)
    table = {w: rng.normal(size=4) for w in [*WORDS, *(f"spare{i}" for i in range(50)), "tractor"]}
    vectors.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in v)}\n" for w, v in table.items()))
    full = create_backbone(f"vectors:{vectors}")
    train = ["i like this sweet apple", "the car is very fast"]
    small = restrict_vocabulary(full, train)
    used = set(" ".join(train).split())
    assert sorted(small.encoder.vocab, key=small.encoder.vocab.get) == [w for w in table if w in used]  # table order
    assert sum(p.numel() for p in small.parameters()) == 10 * 4 < sum(p.numel() for p in full.parameters())
    with torch.no_grad():  # the training texts embed exactly as before; a word outside them is now unknown
        for text in train:
            assert torch.allclose(small(small.encoder([text])), full(full.encoder([text])), atol=1e-6)
        assert small.encoder.report(["tractor apple"])["oov_tokens"] == 1
    assert small.weights.licence == full.weights.licence and small.spec == full.spec
    with pytest.raises(Exception, match="Only word-vector backbones"):
        restrict_vocabulary(tiny_backbone(), train)


def test_cli_distill_restrict_vocabulary_shrinks_a_word_vector_student(capsys, tmp_path, image_folder, teacher):
    from transferkit import load_bundle

    from .test_text import WORDS, make_texts

    vectors = tmp_path / "v.txt"
    rng = np.random.default_rng(0)
    words = [*WORDS, *(f"spare{i}" for i in range(200))]
    vectors.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.normal(size=8))}\n" for w in words))
    texts, labels = make_texts(10)
    text_teacher = tmp_path / "text-teacher"
    FeatureExtractionClassifier(f"vectors:{vectors}", progress=False, cache=False).fit(texts, labels).save(
        text_teacher)
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels, strict=True)))
    runs = {}
    for flag in ((), ("--restrict-vocabulary",)):
        out = tmp_path / f"student{len(flag)}"
        code, stdout, err = cli(capsys, "distill", text_teacher, data, "--student", f"vectors:{vectors}", "--out",
                                out, "--epochs", "1", "--json", "--no-progress", *flag)
        assert code == 0, err
        runs[flag] = one_json(stdout)["models"]["student"]["parameters"]
    head = 8 * 2 + 2
    assert runs[()] == len(words) * 8 + head and runs[("--restrict-vocabulary",)] == len(WORDS) * 8 + head
    student = load_bundle(tmp_path / "student1", progress=False)  # the small table round-trips through the bundle
    assert len(student.backbone_.encoder.vocab) == len(WORDS) and student.predict(texts[:3]).shape == (3,)
    assert_user_error(cli(capsys, "distill", teacher, image_folder, "--student", "small-cnn", "--out",
                          tmp_path / "x", "--restrict-vocabulary", "--no-progress"), "restrict.vocabulary applies to word-vector")
