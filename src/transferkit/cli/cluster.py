"""``transferkit cluster DATA --out DIR``: group items by pretrained features, no labels needed (the job:
:func:`transferkit.jobs.cluster.cluster_data`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..clustering import METHODS
from ..jobs.cluster import ClusterConfig, cluster_data
from ._common import add_runtime_options, add_text_options, emit, random_seed


def k_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 2, got {text!r}") from None
    if k < 2:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 2, got {text!r}")
    return k


def register(sub: Any) -> None:
    p = sub.add_parser("cluster", help="cluster unlabelled items by their pretrained features",
                       description="Extract pretrained features (cache reused), cluster them, and write the "
                                   "assignments, a 2-D map and, when DATA has labels, NMI/ARI/accuracy against them "
                                   "beside clustering the raw inputs.")
    p.add_argument("data", help="a folder (class subfolders optional), a CSV, a text file or a built-in name")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--backbone", default=None, help="backbone spec (default: the packaged one for the modality)")
    p.add_argument("--layer", default=None, help="feature layer (default: pooled pre-logits)")
    p.add_argument("--random-init", action="store_true", help="the architecture without pretrained weights (a floor)")
    p.add_argument("--k", type=k_value, default="auto", help="number of clusters, or auto (silhouette; default)")
    p.add_argument("--method", choices=METHODS, default="kmeans", help="clustering method (default: kmeans)")
    p.add_argument("--map", choices=("pca", "tsne", "none"), default="pca", help="2-D map of the items (default pca)")
    p.add_argument("--no-baseline", action="store_true", help="do not cluster the raw inputs for comparison")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--seed", type=random_seed, default=0, help="seeds PCA, k-means and the map")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = ClusterConfig(data=args.data, out=args.out, backbone=args.backbone, layer=args.layer,
                        random_init=args.random_init, k=args.k,
                        method=args.method, map=args.map, baseline=not args.no_baseline,
                        text_column=args.text_column, label_column=args.label_column, encoding=args.encoding,
                        device=args.device, batch_size=args.batch_size or 64, num_workers=args.num_workers,
                        cache=not args.no_cache, progress=not args.no_progress, seed=args.seed)
    emit(args, cluster_data(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['k']} clusters[/bold] of {r['items']} items of {r['data']} ({r['backbone']}, "
                  f"{r['method']}; silhouette {r['silhouette']}) — sizes {r['sizes']}", highlight=False)
    scores = r.get("scores")
    if scores:
        p = scores["pretrained"]
        console.print(f"against the labels: NMI {p['nmi']:.3f}, ARI {p['ari']:.3f}, accuracy {p['accuracy']:.3f}",
                      highlight=False)
        if "raw" in scores:
            q = scores["raw"]
            console.print(f"clustering the raw {scores['raw_inputs']} instead: NMI {q['nmi']:.3f}, ARI {q['ari']:.3f}, "
                          f"accuracy {q['accuracy']:.3f} (NMI gain {scores['nmi_gain']:+.3f})", highlight=False)
    console.print(f"assignments: {r['assignments_csv']}")
    if r["map_png"]:
        console.print(f"map: {r['map_png']}")
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s[0]}: {s[1]}", highlight=False)
