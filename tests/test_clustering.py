"""Unsupervised transfer: clustering features, choosing k, scoring against labels, the raw-input baseline, the map."""

from __future__ import annotations

import numpy as np
import pytest

import transferkit as tk
from transferkit import TransferkitError
from transferkit.clustering import (
    cluster_accuracy,
    cluster_features,
    cluster_scores,
    map_2d,
    prepare,
    raw_inputs,
    save_cluster_map,
)


def blobs(k: int = 4, n: int = 40, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d))
    y = np.repeat(np.arange(k), n)
    return centres[y] * 5 + rng.normal(0, 1, (len(y), d)), y


def test_auto_k_finds_the_number_of_blobs_and_the_scores_say_so():
    x, y = blobs(k=4)
    result = cluster_features(x, k="auto", k_range=range(2, 9))
    assert result.k == 4 and set(result.silhouettes) == set(range(2, 9))
    assert max(result.silhouettes.values()) == result.silhouettes[4]
    scores = cluster_scores(y, result.labels)
    assert scores["nmi"] > 0.95 and scores["ari"] > 0.95 and scores["accuracy"] > 0.95
    assert result.to_dict()["sizes"] == [40, 40, 40, 40]


@pytest.mark.parametrize("method", ["agglomerative", "hdbscan"])
def test_other_methods_recover_the_blobs(method):
    x, y = blobs(k=3, n=60)
    result = cluster_features(x, k=3, method=method)
    assert cluster_scores(y, result.labels)["nmi"] > 0.8 and result.k == 3


def test_cluster_accuracy_is_the_best_one_to_one_match():
    assert cluster_accuracy([0, 0, 1, 1, 2, 2], [5, 5, 3, 3, 9, 9]) == 1.0  # names of clusters do not matter
    assert cluster_accuracy([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5  # one cluster can match one class only
    assert cluster_accuracy([0, 0, 1, 1], [-1, 0, 1, 1]) == 0.75  # noise counts wrong


def test_bad_k_and_method_are_refused():
    x, _ = blobs()
    with pytest.raises(TransferkitError, match="k must be"):
        cluster_features(x, k=1)
    with pytest.raises(TransferkitError, match="Did you mean: kmeans"):
        cluster_features(x, method="kmean")
    with pytest.raises(TransferkitError, match="at least 3"):
        prepare(x[:2])


def test_raw_inputs_and_the_map(tmp_path):
    images = np.zeros((12, 10, 10), dtype=np.uint8)
    images[6:, :5] = 255
    ds = tk.from_arrays(images, np.repeat([0, 1], 6))
    raw = raw_inputs(ds)
    assert raw.shape == (12, 100) and raw.max() == 1.0  # grey pixels at native size, in [0, 1]
    texts = tk.from_texts(["red apple", "green apple", "red car", "fast car"] * 3, [0, 0, 1, 1] * 3)
    assert raw_inputs(texts).shape[0] == 12
    x = prepare(raw + np.random.default_rng(0).normal(0, 0.01, raw.shape))
    coords = map_2d(x, "pca")
    assert coords.shape == (12, 2) and map_2d(x, "tsne").shape == (12, 2)
    path = save_cluster_map(coords, cluster_features(x, k=2, prepared=True).labels, tmp_path / "map.png", dataset=ds)
    assert path.stat().st_size > 1000 and not list(tmp_path.glob("*.tmp*"))


def test_cli_cluster_writes_assignments_map_and_scores(capsys, image_folder, tmp_path):
    import csv
    import json

    from transferkit.cli import main

    from .conftest import TINY

    out = tmp_path / "clusters"
    code = main(["cluster", str(image_folder), "--backbone", TINY, "--out", str(out), "--k", "3", "--json",
                 "--random-init", "--no-progress", "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["k"] == 3 and report["items"] == 24 and sum(report["sizes"]) == 24
    assert set(report["scores"]) == {"pretrained", "raw", "raw_inputs", "nmi_gain"}
    assert report["scores"]["raw_inputs"] == "pixels" and 0 <= report["scores"]["pretrained"]["nmi"] <= 1
    rows = list(csv.DictReader((out / "assignments.csv").read_text().splitlines()))
    assert len(rows) == 24 and {r["label"] for r in rows} == {"blue", "green", "red"}
    assert (out / "cluster_map.png").stat().st_size > 1000
    assert json.loads((out / "clusters.json").read_text())["k"] == 3
    with pytest.raises(SystemExit) as bad_k:  # argparse: one line, exit 2
        main(["cluster", str(image_folder), "--out", str(out), "--k", "1"])
    assert bad_k.value.code == 2


def stripes(k: int = 3, n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Long thin parallel stripes: every item's nearest neighbours lie on its own stripe, but k-means' centroids cut
    across the stripes (their long side is ten times the gap between them)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n)
    return np.c_[rng.uniform(-5, 5, len(y)), y + rng.normal(0, 0.08, len(y))], y


def test_scan_follows_the_neighbours_where_kmeans_cuts_across_them():
    from transferkit.clustering import mine_neighbours, scan_cluster

    x, y = stripes()
    neighbours = mine_neighbours(x, 10)
    assert neighbours.shape == (300, 10) and (y[neighbours] == y[:, None]).mean() > 0.95
    kmeans = cluster_scores(y, cluster_features(x, k=3, prepared=True).labels)["nmi"]
    result = scan_cluster(x, 3, neighbours=10, steps=200)
    assert result.labels.shape == (300,) and len(result.head_losses) == 5
    assert abs(result.loss - min(result.head_losses)) < 1e-3  # the head with the lowest loss, no label used
    assert cluster_scores(y, result.labels)["nmi"] > kmeans + 0.1
    assert result.consistency > 0.9  # items and their neighbours share a cluster


def test_scan_through_cluster_features_with_auto_k():
    x, y = blobs(k=3, n=50)
    result = cluster_features(x, k="auto", method="scan", k_range=range(2, 6))
    assert result.k == 3 and result.method == "scan" and set(result.silhouettes) == {2, 3, 4, 5}
    assert cluster_scores(y, result.labels)["nmi"] > 0.9


def test_cli_cluster_method_scan_scores_both_sides_with_scan(capsys, image_folder, tmp_path):
    import json

    from transferkit.cli import main

    from .conftest import TINY

    code = main(["cluster", str(image_folder), "--backbone", TINY, "--out", str(tmp_path / "c"), "--k", "3",
                 "--method", "scan", "--map", "none", "--json", "--random-init", "--no-progress", "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "scan" and report["k"] == 3 and sum(report["sizes"]) == 24
    assert report["map_png"] is None and set(report["scores"]["raw"]) == {"nmi", "ari", "accuracy"}
