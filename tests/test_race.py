"""The fine-tuning race: successive halving bookkeeping, resuming from its state file, real fine-tunes, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.selection.race import budgets, race

from .conftest import TINY

LABELS = np.repeat(np.arange(3), 10)  # 30 items, 3 classes


class Labeled:
    """The least a race reads: labels, classes, content keys."""

    def __init__(self, labels: np.ndarray):
        self.labels, self.classes = labels, ["a", "b", "c"]

    def __len__(self) -> int:
        return len(self.labels)

    def content_key(self, i: int) -> str:
        return f"item-{i}"


class Table:
    """A trainer whose accuracy is a fixed function of (candidate, lr, epochs); counts its calls."""

    def __init__(self, quality: dict[str, dict[float, float]], fail_after: int | None = None):
        self.quality, self.fail_after, self.calls = quality, fail_after, []

    def __call__(self, candidate, lr, epochs, train, val):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a user stopping the race
        self.calls.append((candidate["backbone"], lr, epochs))
        assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
        accuracy = min(1.0, self.quality[candidate["backbone"]][lr] + 0.01 * epochs)
        return round(accuracy * len(val))


QUALITY = {"a": {1e-3: 0.30, 1e-2: 0.50}, "b": {1e-3: 0.70, 1e-2: 0.40}, "c": {1e-3: 0.20, 1e-2: 0.60},
           "d": {1e-3: 0.10, 1e-2: 0.15}}
CANDIDATES = [{"backbone": name, "layer": "pre_logits", "score": -i} for i, name in enumerate(QUALITY)]


def same(a, b):
    """Race results equal apart from their wall time."""
    return [{k: v for k, v in r.items() if k != "race_seconds"} for r in a] == \
        [{k: v for k, v in r.items() if k != "race_seconds"} for r in b]


def run(trainer, **kw):
    defaults = {"lrs": (1e-3, 1e-2), "folds": 3, "min_epochs": 1, "max_epochs": 9, "factor": 3, "progress": False}
    return race(Labeled(LABELS), CANDIDATES, trainer=trainer, **{**defaults, **kw})


def test_budgets_grow_by_the_factor_up_to_the_cap():
    assert budgets(1, 9, 3) == [1, 3, 9]
    assert budgets(2, 20, 2) == [2, 4, 8, 16]
    assert budgets(5, 5, 3) == [5]
    with pytest.raises(tk.DataError, match="min <= max"):
        budgets(4, 2, 3)
    with pytest.raises(tk.DataError, match="factor"):
        budgets(1, 9, 1)


def test_successive_halving_keeps_the_best_third_and_ranks_by_rung_then_accuracy():
    trainer = Table(QUALITY)
    rows = run(trainer)
    # 8 configurations at 1 epoch, the best 3 at 3 epochs, the best 1 at 9 epochs; 3 folds each.
    assert [e for *_, e in trainer.calls].count(1) == 8 * 3
    assert [(b, lr) for b, lr, e in trainer.calls if e == 3] == [("b", 1e-3)] * 3 + [("c", 1e-2)] * 3 + \
        [("a", 1e-2)] * 3
    assert {(b, lr) for b, lr, e in trainer.calls if e == 9} == {("b", 1e-3)}
    assert [r["backbone"] for r in rows] == ["b", "c", "a", "d"]
    assert [r["race_epochs"] for r in rows] == [9, 3, 3, 1]
    assert rows[0]["race_lr"] == 1e-3 and rows[1]["race_lr"] == 1e-2
    # Pooled over the 30 out-of-fold predictions: 3 folds of 10, each round(7.9) = 8 right, and round(1.6) = 2.
    assert rows[0]["race_accuracy"] == pytest.approx(24 / 30)
    assert rows[3]["race_accuracy"] == pytest.approx(6 / 30)
    assert [r["race_rank"] for r in rows] == [1, 2, 3, 4] and rows[3]["score"] == -3  # input keys kept
    again = Table(QUALITY)
    assert same(run(again, lrs=(1e-3, 1e-2, 1e-3)), rows) and len(again.calls) == len(trainer.calls)  # deduplicated


class Copied(Labeled):
    """``LABELS``'s 30 items and, after them, copies of items 0-5 (same content, same label)."""

    def __init__(self, keys: list[str] | None = None, labels: np.ndarray | None = None):
        super().__init__(np.r_[LABELS, LABELS[:6]] if labels is None else labels)
        self.keys = keys or [f"item-{i}" for i in (*range(30), *range(6))]

    def content_key(self, i: int) -> str:
        return self.keys[i]

    def subset(self, indices: np.ndarray) -> Copied:
        return Copied([self.keys[i] for i in indices], self.labels[indices])


def test_copies_are_raced_once_so_no_fold_validates_an_item_trained_on():
    # Table checks every fold splits exactly the 30 distinct items; the race is the one on them alone.
    defaults = {"lrs": (1e-3, 1e-2), "folds": 3, "progress": False}
    rows = race(Copied(), CANDIDATES, trainer=Table(QUALITY), **defaults)
    assert rows[0]["race_images"] == 30
    assert same(rows, race(Labeled(LABELS), CANDIDATES, trainer=Table(QUALITY), **defaults))


def test_a_stopped_race_resumes_from_its_state_without_retraining(tmp_path):
    state = tmp_path / "race.json"
    first = Table(QUALITY, fail_after=10)
    with pytest.raises(KeyboardInterrupt):
        run(first, state=state)
    assert len(json.loads(state.read_text())["runs"]) == 10  # every finished fine-tune was kept
    second = Table(QUALITY)
    rows = run(second, state=state)
    assert len(second.calls) == 8 * 3 + 3 * 3 + 3 - 10
    assert same(rows, run(Table(QUALITY)))  # the same answer as an uninterrupted race
    third = Table(QUALITY, fail_after=0)
    assert same(run(third, state=state), rows) and not third.calls  # all of it is in the state now
    other = Table(QUALITY)
    run(other, state=state, fine_tune_options={"lr_head": 1e-2})  # other settings: nothing reused
    assert len(other.calls) == 8 * 3 + 3 * 3 + 3


def test_a_state_directory_keeps_one_file_per_labeled_set(tmp_path):
    run(Table(QUALITY), state=tmp_path)
    (file,) = tmp_path.glob("race-*.json")
    assert json.loads(file.read_text())["format"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(tk.DataError, match="delete it"):
        run(Table(QUALITY), state=bad)


def test_bad_race_settings_are_one_line_errors():
    with pytest.raises(tk.DataError, match="at least 11 labeled items per class"):
        run(Table(QUALITY), folds=11)
    with pytest.raises(tk.DataError, match="positive"):
        run(Table(QUALITY), lrs=(1e-3, -1.0))
    with pytest.raises(tk.DataError, match="labeled"):
        race(tk.from_arrays(np.zeros((6, 8, 8), np.uint8)), CANDIDATES, progress=False)


def test_race_fine_tunes_real_backbones_and_scores_out_of_fold(arrays):
    data = tk.from_arrays(*arrays)
    candidates = [{"backbone": f"random:{TINY}", "layer": layer, "image_size": 32} for layer in ("pre_logits",
                                                                                                  "blocks.2")]
    rows = race(data, candidates, lrs=(1e-2,), folds=3, min_epochs=1, max_epochs=1, progress=False,
                fine_tune_options={"batch_size": 16})
    assert {r["layer"] for r in rows} == {"pre_logits", "blocks.2"}
    for row in rows:
        correct = row["race_accuracy"] * len(data)
        assert correct == pytest.approx(round(correct)) and row["race_epochs"] == 1 and row["race_lr"] == 1e-2
    assert rows[0]["race_accuracy"] >= rows[1]["race_accuracy"]


def test_cli_rank_race_reorders_the_raced_candidates_and_keeps_the_rest(image_folder, capsys):
    code = main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--layers", "pre_logits,blocks.2,blocks.4",
                 "--image-size", "32", "--race", "2", "--race-lrs", "1e-2", "--race-epochs", "1,1",
                 "--race-folds", "2", "--json", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    ranking = out["ranking"]
    assert out["race"]["candidates"] == 2 and [r["rank"] for r in ranking] == [1, 2, 3]
    raced, rest = ranking[:2], ranking[2]
    assert sorted(r["score_rank"] for r in raced) == [1, 2] and rest["score_rank"] == 3
    assert raced[0]["race_accuracy"] >= raced[1]["race_accuracy"] and "race_accuracy" not in rest
    assert main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--image-size", "32", "--race",
                 "--race-folds", "2", "--race-lrs", "1e-2", "--race-epochs", "1,1", "--no-progress"]) == 0
    assert "raced by 2-fold fine-tuning" in capsys.readouterr().out


@pytest.mark.parametrize("option", [["--race-epochs", "9,1"], ["--race-lrs", "fast"], ["--race", "0"]])
def test_cli_rank_race_refuses_bad_options_with_exit_2(image_folder, option, capsys):
    with pytest.raises(SystemExit) as e:
        main(["rank", str(image_folder), "--candidates", f"random:{TINY}", *option])
    assert e.value.code == 2
    assert "expected" in capsys.readouterr().err
