"""Text benchmark (not a test): Debian package descriptions classified by their archive section.

A real, offline-rebuildable text classification set. The data are not committed; this script builds them from
apt's own package lists:

1. ``apt-get update -o Acquire::Languages=en`` (as root) so apt also fetches the ``Translation-en`` files, which
   hold the long descriptions (``Packages`` files only carry the one-line synopsis).
2. ``apt-cache dumpavail`` gives every available binary package's ``Section`` and ``Description-md5``; the
   ``/var/lib/apt/lists/*_i18n_Translation-en*`` files (read with ``/usr/lib/apt/apt-helper cat-file``) give the
   English description of each ``Description-md5``.
3. label = section with any ``contrib/``, ``non-free/``, ``non-free-firmware/`` prefix stripped, kept for the
   sections in ``SECTIONS``; text = the long description (synopsis line dropped, continuation lines unwrapped,
   `` .`` paragraph breaks as blank lines).
4. Texts with fewer than ``MIN_WORDS`` words are dropped; identical texts are kept once, and a text found under two
   sections is dropped altogether (source packages share boilerplate across binaries).
5. A fixed, balanced test set of ``--test-per-class`` texts per section (seed 12345); training subsets of 10 and
   100 texts per section are drawn from the rest with seeds 0, 1, 2 (``tk.per_class``).

The JSON records the Debian release files read, the number of texts per section and a sha256 of the built
dataset, so a rebuild on another day can be checked against it (the archive moves with point releases).

Methods, all on the same subsets and test set:

| method | what |
|---|---|
| ``minilm`` | ``FeatureExtractionClassifier("packaged:all-minilm-l6-v2", head="logistic")`` (mean pooling, 128 tokens) |
| ``glove`` | ``FeatureExtractionClassifier("packaged:glove-6b-50d", head="logistic")`` (mean of word vectors) |
| ``tfidf`` | scikit-learn ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression`` fitted on the training texts |
| ``zero-shot`` | ``ZeroShotClassifier("packaged:all-minilm-l6-v2")`` with one description per section, no labels used |

Extraction speed (texts/s) is measured on the test set without the cache, single process, batch 64.

Usage:
    python bench/text.py [--per-class 10,100] [--seeds 0,1,2] [--test-per-class 150] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402

SECTIONS = ("python", "libs", "devel", "utils", "games", "science", "net", "doc")
# zero-shot label descriptions, paraphrasing https://packages.debian.org/stable/ section titles
SECTION_DESCRIPTIONS = {
    "python": "Python programming language modules and libraries",
    "libs": "shared software libraries used by other programs",
    "devel": "software development tools, compilers and programming utilities",
    "utils": "command-line utilities for files, disks and the system",
    "games": "games and entertainment",
    "science": "scientific computing, mathematics, physics, chemistry and biology software",
    "net": "networking tools, servers and clients",
    "doc": "documentation and manuals",
}
MIN_WORDS = 8
TEST_SEED = 12345
PREFIXES = ("contrib/", "non-free/", "non-free-firmware/")


def _stanzas(text: str) -> list[dict[str, str]]:
    out, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key is not None:
            cur[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def long_description(description: str) -> str:
    """Debian long description → plain text: synopsis dropped, lines unwrapped, `` .`` → paragraph break."""
    paragraphs, current = [], []
    for line in description.split("\n")[1:]:
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    paragraphs.append(" ".join(current))
    return "\n".join(p for p in paragraphs if p)


def build_dataset() -> tuple[tk.TextDataset, dict[str, Any]]:
    translations = sorted(glob.glob("/var/lib/apt/lists/*_i18n_Translation-en*"))
    if not translations:
        sys.exit("No Translation-en lists: run `apt-get update -o Acquire::Languages=en` as root first.")
    md5_text: dict[str, str] = {}
    for path in translations:
        raw = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], capture_output=True, text=True,
                             check=True).stdout
        for st in _stanzas(raw):
            if "Description-md5" in st and "Description-en" in st:
                md5_text[st["Description-md5"]] = long_description(st["Description-en"])
    avail = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    sections_of: dict[str, set[str]] = defaultdict(set)
    for st in _stanzas(avail):
        section = st.get("Section", "")
        for prefix in PREFIXES:
            section = section.removeprefix(prefix)
        text = md5_text.get(st.get("Description-md5", ""))
        if section in SECTIONS and text and len(text.split()) >= MIN_WORDS:
            sections_of[text].add(section)
    texts = sorted(t for t, s in sections_of.items() if len(s) == 1)
    labels = [next(iter(sections_of[t])) for t in texts]
    ds = tk.from_texts(texts, labels, classes=list(SECTIONS), name="debian-descriptions")
    digest = hashlib.sha256("\0".join(f"{lab}\t{t}" for t, lab in zip(texts, labels, strict=True)).encode()).hexdigest()
    info = {"release_files": [Path(p).name for p in sorted(glob.glob("/var/lib/apt/lists/*InRelease"))],
            "translation_files": [Path(p).name for p in translations], "texts": len(texts),
            "dropped_conflicting": sum(len(s) > 1 for s in sections_of.values()),
            "per_section": {s: labels.count(s) for s in SECTIONS}, "sha256": digest,
            "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1)}
    return ds, info


def split(ds: tk.TextDataset, test_per_class: int) -> tuple[tk.TextDataset, tk.TextDataset]:
    test = tk.per_class(ds, test_per_class, seed=TEST_SEED)
    test_keys = set(test.items)
    pool = ds.subset([i for i, t in enumerate(ds.items) if t not in test_keys])
    return pool, test


def accuracy(pred: np.ndarray, test: tk.TextDataset) -> float:
    assert test.labels is not None
    return float(np.mean(np.asarray(pred).astype(str) == np.asarray(test.classes)[test.labels]))


def texts_per_second(spec: str, test: tk.TextDataset) -> dict[str, float]:
    backbone = tk.create_backbone(spec)
    start = time.perf_counter()
    tk.extract_features(backbone, test, cache=False, progress=False, batch_size=64, device="cpu")
    seconds = time.perf_counter() - start
    return {"texts": len(test), "seconds": round(seconds, 2), "texts_per_s": round(len(test) / seconds, 1)}


def run_method(method: str, train: tk.TextDataset, test: tk.TextDataset, cache: str) -> dict[str, Any]:
    start = time.perf_counter()
    if method == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        assert train.labels is not None
        clf = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=2000))
        clf.fit(train.items, np.asarray(train.classes)[train.labels])
        pred = clf.predict(test.items)
    else:
        spec = {"minilm": "packaged:all-minilm-l6-v2", "glove": "packaged:glove-6b-50d"}[method]
        model = tk.FeatureExtractionClassifier(spec, head="logistic", cache=cache, progress=False, device="cpu")
        pred = model.fit(train).predict(test)
    return {"accuracy": accuracy(pred, test), "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", default="10,100")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--test-per-class", type=int, default=150)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    per_class = [int(v) for v in args.per_class.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    ds, data_info = build_dataset()
    pool, test = split(ds, args.test_per_class)
    print(f"dataset: {data_info['texts']} texts, {data_info['per_section']}; test {len(test)}", flush=True)
    cache = tempfile.mkdtemp(prefix="tk-bench-text-")
    speed = {m: texts_per_second(s, test) for m, s in (("minilm", "packaged:all-minilm-l6-v2"),
                                                         ("glove", "packaged:glove-6b-50d"))}
    print(f"extraction: {speed}", flush=True)
    runs = []
    for n in per_class:
        for seed in seeds:
            train = tk.per_class(pool, n, seed=seed)
            for method in ("minilm", "glove", "tfidf"):
                r = {"method": method, "per_class": n, "seed": seed, "train": len(train),
                     **run_method(method, train, test, cache)}
                runs.append(r)
                print(json.dumps(r), flush=True)
    start = time.perf_counter()
    zs = tk.ZeroShotClassifier("packaged:all-minilm-l6-v2", labels=[f"{k}: {v}" for k, v in SECTION_DESCRIPTIONS.items()],
                               template="A Debian package of {}.", cache=cache, progress=False, device="cpu").fit(test)
    zero_shot = {"method": "zero-shot", "per_class": 0, "accuracy": accuracy(zs.predict(test), test),
                 "seconds": round(time.perf_counter() - start, 2), "template": zs.template,
                 "labels": SECTION_DESCRIPTIONS}
    print(json.dumps(zero_shot), flush=True)
    summary = []
    for n in per_class:
        for method in ("minilm", "glove", "tfidf"):
            acc = [r["accuracy"] for r in runs if r["method"] == method and r["per_class"] == n]
            summary.append({"method": method, "per_class": n, "runs": len(acc), "accuracy_mean": float(np.mean(acc)),
                            "accuracy_std": float(np.std(acc))})
    result = {"benchmark": "text", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": {**machine(), "load_average_1m_at_end": os.getloadavg()[0]},
              "versions": __import__("transferkit.bundle", fromlist=["x"]).library_versions(),
              "settings": {"per_class": per_class, "seeds": seeds, "test_per_class": args.test_per_class,
                           "sections": SECTIONS, "min_words": MIN_WORDS, "test_seed": TEST_SEED},
              "data": data_info, "extraction": speed, "runs": runs, "zero_shot": zero_shot, "summary": summary}
    out = Path(args.out or f"bench/results/text-{dt.date.today().isoformat()}.json")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\n{'method':<12}{'per class':>10}{'accuracy':>18}")
    for row in summary:
        print(f"{row['method']:<12}{row['per_class']:>10}{row['accuracy_mean']:>11.3f} ± {row['accuracy_std']:.3f}")
    print(f"{'zero-shot':<12}{0:>10}{zero_shot['accuracy']:>11.3f}")
    print("texts/s: " + ", ".join(f"{m} {s['texts_per_s']}" for m, s in speed.items()) + f"\nwrote {out}")


if __name__ == "__main__":
    main()
