"""Domain adaptation on the offline digit shift: printed → handwritten digits (a benchmark, not a test).

Source: ``load_printed_digits(--per-class, seed)`` (labelled, rendered from matplotlib's fonts, reduced as optdigits
was; see ``transferkit/data/digit_shift.py``). Target: scikit-learn's 1,797 handwritten digits, split once
(stratified, seed 12345) into an unlabelled adaptation part (2/3) and a labelled test part (1/3) that no method sees.
Each method trains ``AdaptedCNNClassifier`` (the small CNN at 8×8) for ``--steps`` steps; reported per run: target test
accuracy, source accuracy on fresh printed digits, the label-free selection scores (information maximisation, SND)
on the adaptation part, the domain gap of the network's features (proxy A-distance, MMD), fit seconds. The
``oracle`` row trains the same CNN on the *labelled* adaptation part (what target labels would buy: an upper bound).

Issue 18's goal: at least one method reaches >= 90 % of the published best adapted accuracy (the digit anchors:
MNIST → USPS CDAN ~96 %, SHOT ~98 % — this shift is our own, so the comparison is indicative) and beats source-only
by >= 10 points, within 15 minutes per run on 2 cores.

Usage: ``python bench/adaptation.py [--methods source-only,adabn,coral,dann,mcc,self-training,oracle]
[--seeds 0,1,2] [--steps 1000] [--per-class 200] [--out PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

from transferkit.adaptation import domain_gap, information_maximization, snd  # noqa: E402
from transferkit.adaptation.cnn import AdaptedCNNClassifier  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.data import stratified_split  # noqa: E402
from transferkit.data.digit_shift import load_handwritten_digits, load_printed_digits  # noqa: E402
from transferkit.strategies import SmallCNNClassifier  # noqa: E402

SPLIT_SEED = 12345


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="source-only,adabn,coral,dann,mcc,self-training,oracle")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=f"bench/results/adaptation-{dt.date.today()}.json")
    parser.add_argument("--replot", default=None, metavar="JSON", help="only redraw the figure of an earlier run")
    args = parser.parse_args()
    if args.replot:
        print(f"wrote {plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix('.png'))}")
        return
    hand = load_handwritten_digits()
    adapt_part, test = stratified_split(hand, 1 / 3, seed=SPLIT_SEED)
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        source = load_printed_digits(args.per_class, seed=seed)
        fresh = load_printed_digits(20, seed=1000 + seed)
        for method in args.methods.split(","):
            start = time.perf_counter()
            if method == "oracle":
                clf = SmallCNNClassifier(steps=args.steps, batch_size=32, seed=seed, progress=False,
                                         threads=args.threads).fit(adapt_part)
                row = {"method": method, "seed": seed, "target_accuracy": round(clf.score(test), 4)}
            else:
                model = AdaptedCNNClassifier(method=method, steps=args.steps, seed=seed, progress=False,
                                             threads=args.threads).fit(source, adapt_part)
                proba = model.predict_proba(adapt_part)
                row = {"method": method, "seed": seed, "target_accuracy": round(model.score(test), 4),
                       "source_accuracy": round(model.score(fresh), 4),
                       "information_maximization": round(information_maximization(proba), 4),
                       "snd": round(snd(proba), 4),
                       "gap": domain_gap(model.features(source), model.features(adapt_part), seed=seed)}
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"seed {seed} {method:14s} target {row['target_accuracy']:.3f}  {row['seconds']:6.1f} s", flush=True)
            write_json(out, _result(args, rows))  # after every run: an interrupted benchmark keeps what it measured
    print(_summary(rows))
    print(f"wrote {out} and {plot(_result(args, rows), out.with_suffix('.png'))}")


def plot(result: dict, path: Path) -> Path:
    """Target test accuracy per method (mean and each seed), source-only and the oracle as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    methods = [m for m in summary if m not in ("source-only", "oracle")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    means = [summary[m]["target_accuracy_mean"] for m in methods]
    ax.bar(methods, means, color="#4c72b0")
    for i, m in enumerate(methods):
        seeds = [r["target_accuracy"] for r in result["rows"] if r["method"] == m]
        ax.scatter([i] * len(seeds), seeds, color="black", s=10, zorder=3)
    for name, style in (("source-only", "--"), ("oracle", ":")):
        if name in summary:
            value = summary[name]["target_accuracy_mean"]
            ax.axhline(value, color="gray", linestyle=style, label=f"{name} {value:.3f}")
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("handwritten test accuracy")
    ax.set_title(f"printed -> handwritten digits, small CNN, {result['settings']['steps']} steps "
                 f"({summary[methods[0]]['seeds']} seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _summary(rows: list[dict]) -> dict:
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        accs = [r["target_accuracy"] for r in rows if r["method"] == method]
        summary[method] = {"target_accuracy_mean": round(float(np.mean(accs)), 4),
                           "target_accuracy_std": round(float(np.std(accs, ddof=1)), 4) if len(accs) > 1 else None,
                           "seeds": len(accs)}
    return summary


def _result(args: argparse.Namespace, rows: list[dict]) -> dict:
    return {"benchmark": "adaptation", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "versions": library_versions(),
            "settings": {"steps": args.steps, "per_class": args.per_class, "split_seed": SPLIT_SEED,
                         "shift": "printed digits (matplotlib fonts) -> scikit-learn handwritten digits, 8x8"},
            "rows": rows, "summary": _summary(rows)}


if __name__ == "__main__":
    main()
