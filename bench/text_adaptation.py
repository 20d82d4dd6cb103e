"""Domain adaptation on an offline text shift: long descriptions → one-line synopses (a benchmark, not a test).

Data: Debian's package descriptions, as in ``bench/text.py`` (apt's lists; run ``apt-get update -o
Acquire::Languages=en`` as root first), label = archive section (the 8 of ``text.SECTIONS``). Every package has a
one-line synopsis (``Description:``'s first line, 3-10 words: "Python bindings for the GLib library") and a long
description (paragraphs, ~60 words). The packages are split once (seed 12345) into two disjoint halves:

- source: long descriptions of the first half, ``--per-class`` labelled per section and seed;
- target: synopses of the second half — ``--target-per-class`` unlabelled for adaptation, and a fixed labelled test
  set of ``--test-per-class`` per section that no method sees.

The shift is one of length and register (a paragraph vs a title), the kind a model trained on product descriptions
meets when it classifies search queries or titles. Runs ``transferkit adapt`` (the library job, ``AdaptConfig``)
with ``packaged:all-minilm-l6-v2`` features: source-only, CORAL and self-training heads, the label-free selection
and the domain gap; beside it what a user would do without adaptation or transfer — TF-IDF + logistic regression on
the source — and a target oracle (the same feature head trained on labelled synopses of the adaptation pool: what
target labels would buy).

Usage: ``python bench/text_adaptation.py [--seeds 0,1,2] [--per-class 100] [--out PATH]``
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402
from text import MIN_WORDS, SECTIONS, long_description, package_descriptions  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.jobs.adapt import AdaptConfig, adapt  # noqa: E402

MINILM = "packaged:all-minilm-l6-v2"
SPLIT_SEED = 12345


def build_pairs() -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """``(section, synopsis, long description)`` per package with a single section, deduplicated on both texts."""
    sections_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for section, description in package_descriptions()[0]:
        if section not in SECTIONS:
            continue
        synopsis = description.split("\n", 1)[0].strip()
        body = long_description(description)
        if len(body.split()) >= MIN_WORDS and len(synopsis.split()) >= 2:
            sections_of[(synopsis, body)].add(section)
    seen_synopses: set[str] = set()
    rows = []
    for (synopsis, body), sections in sorted(sections_of.items()):
        if len(sections) == 1 and synopsis not in seen_synopses:  # one label, and a synopsis told only once
            seen_synopses.add(synopsis)
            rows.append((next(iter(sections)), synopsis, body))
    info = {"packages": len(rows), "per_section": {s: sum(r[0] == s for r in rows) for s in SECTIONS},
            "mean_words_synopsis": round(float(np.mean([len(r[1].split()) for r in rows])), 1),
            "mean_words_long": round(float(np.mean([len(r[2].split()) for r in rows])), 1)}
    return rows, info


def halves(rows: list[tuple[str, str, str]]) -> tuple[list[Any], list[Any]]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rows))
    cut = len(rows) // 2
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def sample(rows: list[Any], per_class: int, seed: int, exclude: set[int] | None = None) -> list[int]:
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for section in SECTIONS:
        idx = [i for i, r in enumerate(rows) if r[0] == section and (exclude is None or i not in exclude)]
        out += list(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return out


def write_csv(path: Path, texts: list[str], labels: list[str]) -> str:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels, strict=True))
    return str(path)


def tfidf_accuracy(train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], seed: int) -> float:
    clf = tk.TfidfClassifier(seed=seed).fit(tk.from_texts(train[0], train[1], classes=list(SECTIONS)))
    return float(clf.score(tk.from_texts(test[0], test[1], classes=list(SECTIONS))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=100, help="labelled source texts per section")
    parser.add_argument("--target-per-class", type=int, default=200, help="unlabelled target synopses per section")
    parser.add_argument("--test-per-class", type=int, default=100, help="labelled target test synopses per section")
    parser.add_argument("--out", default=f"bench/results/text-adaptation-{dt.date.today()}.json")
    args = parser.parse_args()
    rows, info = build_pairs()
    source_rows, target_rows = halves(rows)
    test_idx = sample(target_rows, args.test_per_class, SPLIT_SEED)
    test = ([target_rows[i][1] for i in test_idx], [target_rows[i][0] for i in test_idx])
    result: dict[str, Any] = {"benchmark": "text-adaptation", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "versions": library_versions(), "data": info,
                              "settings": vars(args), "backbone": MINILM, "runs": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tk-text-shift-") as tmp:
        work = Path(tmp)
        test_csv = write_csv(work / "test.csv", *test)
        for seed in [int(s) for s in args.seeds.split(",")]:
            src_idx = sample(source_rows, args.per_class, seed)
            tgt_idx = sample(target_rows, args.target_per_class, seed, exclude=set(test_idx))
            src = ([source_rows[i][2] for i in src_idx], [source_rows[i][0] for i in src_idx])
            tgt = ([target_rows[i][1] for i in tgt_idx], [target_rows[i][0] for i in tgt_idx])
            src_csv = write_csv(work / f"source-{seed}.csv", *src)
            tgt_csv = write_csv(work / f"target-{seed}.csv", *tgt)  # labels written, never read by adapt
            start = time.perf_counter()
            report = adapt(AdaptConfig(source=src_csv, target_unlabeled=tgt_csv, target_test=test_csv,
                                       out=str(work / f"adapt-{seed}"), backbone=MINILM, method="auto", seed=seed,
                                       progress=False))
            seconds = time.perf_counter() - start
            oracle = tk.FeatureExtractionClassifier(MINILM, seed=seed, progress=False).fit(
                tk.from_texts(tgt[0], tgt[1], classes=list(SECTIONS)))
            row = {"seed": seed, "adapt_seconds": round(seconds, 1), "selected": report["method"],
                   "gap_before": report.get("gap_before"),
                   "methods": {r["method"]: {k: r.get(k) for k in ("target_test_accuracy", "information_maximization",
                                                                   "snd", "gap")} for r in report["runs"]},
                   "tfidf_source_only": round(tfidf_accuracy(src, test, seed), 4),
                   "oracle_target_labels": round(float(oracle.score(tk.from_texts(*test, classes=list(SECTIONS)))), 4),
                   "warnings": report["warnings"]}
            result["runs"].append(row)
            write_json(out, result)
            accs = {m: v["target_test_accuracy"] for m, v in row["methods"].items()}
            print(f"seed {seed}: {accs} selected {row['selected']}; tfidf {row['tfidf_source_only']}, "
                  f"oracle {row['oracle_target_labels']} ({seconds:.0f} s)", flush=True)
    methods = list(result["runs"][0]["methods"])
    summary = {m: {"mean": float(np.mean([r["methods"][m]["target_test_accuracy"] for r in result["runs"]])),
                   "std": float(np.std([r["methods"][m]["target_test_accuracy"] for r in result["runs"]]))}
               for m in methods}
    for key in ("tfidf_source_only", "oracle_target_labels"):
        vals = [r[key] for r in result["runs"]]
        summary[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
    result["summary"] = summary
    write_json(out, result)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
