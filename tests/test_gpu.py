"""The CUDA path (issue 20): ``gpu``-marked tests skip without CUDA; the prepared benchmark bench/gpu.py is
smoke-run on the CPU in the fast tier (it measures nothing here, it only has to run through and write its JSON)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk

from .conftest import COLORS, TINY, cosine, jpeg_folder_of, tiny_backbone

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def jpeg_folder(tmp_path):
    return jpeg_folder_of(tmp_path / "jpegs", 48)


def test_the_gpu_benchmark_runs_through_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    assert _bench().main(["--device", "cpu", "--images", "8", "--backbone", TINY, "--image-size", "32",
                          "--batch-size", "4", "--workers", "0", "--steps", "1", "--rounds", "1",
                          "--cosine-images", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["images"] == 8 and result["versions"]["torch"] == torch.__version__
    assert {"transferkit_gpu_decode", "hand_pil_workers", "model_only"} <= set(result["extraction"])
    assert result["cosine"]["gpu_decode"]["min"] > 0.99  # the CPU's batch decoder against PIL, both fp32
    assert set(result["fine_tune"]["ratios"]) == {"transferkit_loader_light_augment", "gpu_decode_no_augment"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_the_gpu_benchmark_says_one_line_without_cuda(capsys):
    assert _bench().main(["--images", "4"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_extraction_decodes_on_the_gpu_and_matches_the_cpu(jpeg_folder):
    bb = tiny_backbone(64)
    ds = tk.from_folder(jpeg_folder)
    cpu = tk.extract_features(bb, ds, cache=False, progress=False, device="cpu", gpu_decode=False)
    gpu = tk.extract_features(bb, ds, cache=False, progress=False, device="cuda", batch_size=4)
    assert np.array_equal(cpu.index, gpu.index)
    assert cosine(cpu.features, gpu.features).min() > 0.99  # bf16 and nvJPEG against fp32 and PIL, tiny random net
    assert next(bb.parameters()).is_cuda


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_features_have_a_cache_of_their_own(jpeg_folder, tmp_path):
    bb = tiny_backbone(64)
    ds = tk.from_folder(jpeg_folder)
    cache = tk.FeatureCache(tmp_path / "cache")
    cpu = tk.extract_features(bb, ds, cache=cache, progress=False, device="cpu")
    gpu = tk.extract_features(bb, ds, cache=cache, progress=False, device="cuda")
    assert cpu.computed == gpu.computed == len(ds)  # bf16/nvJPEG features never stand in for fp32 ones
    again = tk.extract_features(bb, ds, cache=cache, progress=False, device="cuda")
    assert again.cached == len(ds) and np.array_equal(again.features, gpu.features)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fine_tuning_on_the_gpu_trains(jpeg_folder):
    ds = tk.from_folder(jpeg_folder)
    clf = tk.FineTuneClassifier(tiny_backbone(32), epochs=1, batch_size=4, device="cuda", progress=False).fit(ds)
    assert next(clf.backbone_.parameters()).is_cuda
    assert clf.predict_proba(ds).shape == (len(ds), len(COLORS))
