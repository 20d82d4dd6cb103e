"""Fine-tune/scratch through the strategies and the CLI: settings reach the loop, runs resume, own sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.cli import main

from .conftest import TINY, tiny_backbone

FAST = ["--backbone", TINY, "--random-init", "--image-size", "32", "--no-progress", "--json"]


def test_strategy_settings_reach_the_training_config(arrays):
    images, labels = arrays
    clf = tk.FineTuneClassifier(tiny_backbone(), schedule="gradual", head_epochs=1, epochs=1, lr_decay=0.3,
                                label_smoothing=0.1, augment="medium", batch_size=12, progress=False)
    clf.fit(images, labels)
    used = clf.fit_info_["train_config"]
    assert used["schedule"] == "gradual" and used["lr_decay"] == 0.3 and used["label_smoothing"] == 0.1
    assert clf.fit_info_["plan"][0]["name"] == "head"
    assert len(clf.history_) == len(clf.fit_info_["plan"])


def test_early_stopping_holds_out_validation_data_itself(arrays):
    images, labels = arrays
    clf = tk.FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=2, early_stopping=1,
                                validation_fraction=0.25, batch_size=12, progress=False).fit(images, labels)
    assert clf.fit_info_["val_images"] == 9 and clf.fit_info_["train_images"] == 27
    assert all("val_accuracy" in row for row in clf.history_)


def test_cli_fine_tune_reports_settings_and_writes_curves(image_folder, tmp_path, capsys):
    out = tmp_path / "ft"
    code = main(["fit", str(image_folder), "--strategy", "fine-tune", "--out", str(out), "--epochs", "1",
                 "--head-epochs", "1", "--schedule", "two-stage", "--lr-decay", "0.5", "--augment", "strong",
                 "--val-fraction", "0.34", "--no-baseline", *FAST])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_config"]["lr_decay"] == 0.5 and result["train_config"]["augment"] == "strong"
    assert [s["name"] for s in result["plan"]] == ["head", "fine-tune"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == result["epochs_run"] == 2 and "val_accuracy" in rows[0]
    assert (out / "training_curves.png").is_file()
    assert not (out / "checkpoints").exists()  # finished runs keep the bundle, not the checkpoints


def interrupted_after_second_checkpoint(monkeypatch, args: list[str]) -> int:
    """``transferkit ARGS`` stopped by Ctrl-C right after its second checkpoint (the exit code)."""
    from transferkit.training import Trainer

    original = Trainer._checkpoint
    calls = {"n": 0}

    def crash(self, *a, **k):
        original(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_checkpoint", crash)
    try:
        return main(args)
    finally:
        monkeypatch.setattr(Trainer, "_checkpoint", original)


def test_cli_resume_continues_an_interrupted_run(image_folder, tmp_path, capsys, monkeypatch):

    out = tmp_path / "run"
    args = ["fit", str(image_folder), "--strategy", "scratch", "--out", str(out), "--epochs", "3",
            "--val-fraction", "0.34", *FAST]
    assert interrupted_after_second_checkpoint(monkeypatch, args) == 130
    assert (out / "checkpoints" / "latest").is_file()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs_run"] == 3
    assert [r["epoch"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3]


def test_cli_resume_of_a_run_killed_before_its_first_checkpoint(image_folder, tmp_path, capsys):
    """kill -9 early leaves no checkpoint, only half-written temporaries: --resume clears them and runs it all."""
    out = tmp_path / "run"
    (out / "checkpoints" / ".step-00000001.tmp").mkdir(parents=True)
    (out / ".saving").mkdir()  # a bundle save killed before its JSON
    stale = [out / ".metrics.jsonl.q7_x0k2m.tmp", out / "checkpoints" / ".latest.abcdefgh.tmp",
             out / ".saving" / "model.safetensors", out / "checkpoints" / ".step-00000001.tmp" / "state.json"]
    for path in stale:
        path.write_bytes(b"half")
    args = ["fit", str(image_folder), "--strategy", "fine-tune", "--epochs", "1", "--val-fraction", "0.34",
            "--no-baseline", *FAST]
    for where in (out, tmp_path / "never-started"):
        assert main([*args, "--out", str(where), "--resume"]) == 0
        captured = capsys.readouterr()
        (note,) = captured.err.strip().splitlines()
        assert f"nothing to resume in {str(where)!r}" in note and "starting from the beginning" in note
        assert json.loads(captured.out)["epochs_run"] == 3
    assert not any(p.exists() for p in stale) and not (out / ".saving").exists()


def test_cli_refuses_resume_for_feature_extraction_and_unknown_settings(image_folder, tmp_path, capsys):
    assert main(["fit", str(image_folder), "--out", str(tmp_path / "x"), "--resume", *FAST[:3]]) == 2
    assert "--resume applies to fine-tune" in capsys.readouterr().err


def test_pretrain_then_transfer_from_the_bundle(tmp_path, capsys):
    """Your own source model: pretrain on some classes, reuse it as bundle:DIR on the others."""
    source = tmp_path / "source"
    code = main(["pretrain", "embedded", "--arch", TINY, "--classes", "0-4", "--per-class", "6", "--epochs", "1",
                 "--image-size", "32", "--out", str(source), "--no-progress", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reuse_as"] == f"bundle:{source}"
    meta = json.loads((source / "transferkit.json").read_text())
    assert meta["classes"] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    assert main(["fit", "embedded", "--classes", "5-9", "--per-class", "6", "--backbone", f"bundle:{source}",
                 "--out", str(tmp_path / "target"), "--no-progress", "--json", "--baseline-epochs", "2",
                 "--baseline", "arch", "--verdict-protocol", "holdout"]) == 0
    target = json.loads(capsys.readouterr().out)
    # the verdict's baseline is the source's architecture at the source's input size, trained from scratch
    assert target["verdict"]["baseline"]["image_size"] == 32
    assert target["verdict"]["verdict"] in ("positive", "neutral", "negative")
    assert target["backbone"] == f"bundle:{source}"
    bb = tk.create_backbone(f"bundle:{source}")
    assert bb.preprocessing.image_size == (32, 32)  # the source's own preprocessing travels with it
    assert np.isfinite(target["accuracy"])


@pytest.mark.parametrize("bad", [["--lr-decay", "x"], ["--augment", "extreme"], ["--schedule", "sideways"]])
def test_bad_training_options_are_one_line_errors(image_folder, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(image_folder), "--strategy", "fine-tune", "--out", str(tmp_path / "y"), *bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_lr_find_sets_the_head_rate_and_reports_it(image_folder, tmp_path, capsys):
    assert main(["fit", str(image_folder), "--strategy", "fine-tune", "--out", str(tmp_path / "lr"), "--epochs", "1",
                 "--head-epochs", "1", "--lr-find", "--val-fraction", "0.34", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    suggested = result["lr_find"]["suggested_lr"]
    assert 1e-6 <= suggested <= 1.0
    assert result["train_config"]["lr_head"] == suggested


def test_lr_find_run_resumes_with_the_rate_it_found(image_folder, tmp_path, capsys, monkeypatch):

    args = ["fit", str(image_folder), "--strategy", "fine-tune", "--out", str(tmp_path / "lr"), "--epochs", "2",
            "--head-epochs", "1", "--lr-find", "--val-fraction", "0.34", "--no-baseline", *FAST]
    assert main([*args[:5], str(tmp_path / "whole"), *args[6:]]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert interrupted_after_second_checkpoint(monkeypatch, args) == 130
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # it was refused as "other training settings": no search on resume
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["lr_find"]["resumed"] and resumed["train_config"] == whole["train_config"]
    assert resumed["accuracy"] == whole["accuracy"]
