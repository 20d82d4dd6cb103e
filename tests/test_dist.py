"""Multi-process training and extraction on Accelerate/DDP, 2 CPU processes with gloo (`pytest -m dist`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk

from .conftest import TINY

pytestmark = pytest.mark.dist


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], distributed: bool, cache: Path) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(free_port())]
    cmd = [*(launcher if distributed else [sys.executable]), "-m", "transferkit", *args]
    env = {**os.environ, "TRANSFERKIT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    # a session of its own: the launcher signals its whole process group when workers exit
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout  # only rank 0 reports
    return json.loads(lines[0])


@pytest.fixture
def folder(image_folder: Path) -> Path:
    # 36 images: with --val-fraction 0.34, 24 train = 3 steps of 8 (1 process) or 3 steps of 4 per rank (2 processes)
    from .conftest import COLORS, make_image

    for c, (name, color) in enumerate(COLORS.items()):
        for i in range(8, 12):
            make_image(color, seed=100 * c + i).save(image_folder / name / f"{i}.png")
    return image_folder


def test_ddp_head_training_agrees_with_one_process(folder, tmp_path):
    common = ["fit", str(folder), "--strategy", "fine-tune", "--backbone", TINY, "--random-init", "--image-size",
              "32", "--head-epochs", "2", "--unfreeze-top", "0", "--augment", "none", "--val-fraction", "0.34",
              "--no-progress", "--json", "--no-cache", "--no-baseline"]
    single = run([*common, "--batch-size", "8", "--out", str(tmp_path / "one")], False, tmp_path / "c1")
    multi = run([*common, "--batch-size", "4", "--out", str(tmp_path / "two")], True, tmp_path / "c2")
    rows = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    # same images per optimizer step, gradients averaged by DDP: the first epoch is the same computation
    assert rows[0][0]["loss"] == pytest.approx(rows[1][0]["loss"], abs=1e-5)
    data = tk.from_folder(folder)
    p1 = tk.load_bundle(single["bundle"], progress=False, cache=False).predict_proba(data)
    p2 = tk.load_bundle(multi["bundle"], progress=False, cache=False).predict_proba(data)
    np.testing.assert_allclose(p1, p2, atol=5e-3)  # Adam amplifies float noise of near-zero gradients


def test_ddp_gradual_unfreezing_rewraps_without_unused_parameter_errors(folder, tmp_path):
    result = run(["fit", str(folder), "--strategy", "fine-tune", "--backbone", TINY, "--random-init",
                  "--image-size", "32", "--schedule", "gradual", "--head-epochs", "1", "--epochs", "1",
                  "--lr-decay", "0.5", "--val-fraction", "0.34", "--no-progress", "--json", "--baseline-epochs", "1",
                  "--baseline", "arch", "--verdict-protocol", "holdout", "--out", str(tmp_path / "g")], True, tmp_path / "c")
    assert result["verdict"]["verdict"] in ("positive", "neutral", "negative")  # the baseline trained under DDP too
    assert result["epochs_run"] == len(result["plan"]) > 2
    assert not (tmp_path / "g" / "checkpoints").exists()
    assert len((tmp_path / "g" / "metrics.jsonl").read_text().splitlines()) == result["epochs_run"]


def test_sharded_extraction_fills_the_cache_once(folder, tmp_path):
    cache = tmp_path / "cache"
    run(["fit", str(folder), "--backbone", TINY, "--random-init", "--no-progress", "--json", "--no-baseline",
         "--out", str(tmp_path / "fe")], True, cache)
    shards = list(cache.rglob("shard-*.safetensors"))
    assert shards  # written by rank 0 only, after gathering both ranks' features
    again = run(["fit", str(folder), "--backbone", TINY, "--random-init", "--no-progress", "--json", "--no-baseline",
                 "--out",
                 str(tmp_path / "fe2")], False, cache)
    assert again["accuracy"] >= 0.0
    meta = json.loads((tmp_path / "fe2" / "transferkit.json").read_text())
    assert meta["fit"]["extraction"]["computed"] == 0  # the single-process run found everything cached
