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

Methods, all on the same subsets and test set (``--methods`` picks some):

| method | what |
|---|---|
| ``minilm`` | ``FeatureExtractionClassifier("packaged:all-minilm-l6-v2", head="logistic")`` (mean pooling, 128 tokens) |
| ``glove`` | ``FeatureExtractionClassifier("packaged:glove-6b-50d", head="logistic")`` (mean of word vectors) |
| ``tfidf`` | scikit-learn ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression`` fitted on the training texts |
| ``zero-shot`` | ``ZeroShotClassifier("packaged:all-minilm-l6-v2")`` with one description per section, no labels used |
| ``minilm-two-stage`` | ``FineTuneClassifier("packaged:all-minilm-l6-v2", schedule="two-stage")``: the linear head on the frozen encoder, then every group with discriminative rates (LP-FT) |
| ``minilm-lora`` | the same with ``peft="lora"``: rank-8 adapters on the attention query/value projections instead of the encoder's weights |

Fine-tuning settings (``FINE_TUNE``, at the reference size of 100 texts per section; ``--set METHOD.KEY=VALUE``
overrides one): batch 16, 128 tokens, 1 head-only epoch then 3 epochs with every group, AdamW with weight decay
0.01, cosine schedule with 10% warmup per stage, no augmentation, lr_head 1e-2, lr_decay 0.9 per group going down
(embeddings, 6 layers; the unused pooler is removed by the backbone: the top layer learns at lr_backbone, the
embeddings at 0.9^6 = 0.53x). ``minilm-two-stage`` trains the encoder at lr_backbone 5e-5;
``minilm-lora`` trains its adapters at 1e-3 and differs in nothing else. How they were chosen (never on the test
set):

- lr_backbone, LoRA rank and rate, batch, warmup, weight decay, epochs, lr_decay: NOT tuned on this data. They are
  the usual values for transformer fine-tuning (BERT, Devlin et al. 2019: lr 2e-5..5e-5, batch 16/32, 2-4 epochs,
  10% warmup, weight decay 0.01; the upper end because MiniLM-L6 is small and the sets are few-shot; layer-wise
  decay 0.8-0.95 as in ELECTRA) and for LoRA (Hu et al. 2022: r 8, lr 4e-4..5e-4 on RoBERTa-base for thousands of
  steps; 1e-3 here for a few hundred, as the FineTuneClassifier docstring advises).
- lr_head 1e-2 (instead of the usual 1e-3..3e-3) was chosen on validation texts: the head stage replayed on frozen
  MiniLM features (a linear head, AdamW, cosine with 10% warmup, batch 16, 50 steps; seeds 0 and 1, 50 validation
  texts per section drawn as ``--evaluate-on validation`` does). Validation accuracy for lr_head 2e-3 / 1e-2 / 3e-2,
  with scikit-learn's logistic regression on the same features for reference: 10/class 0.445 / 0.505 / 0.480 and
  0.495 / 0.547 / 0.515 (logistic 0.490, 0.528); 100/class 0.557 / 0.645 / 0.647 and 0.562 / 0.630 / 0.645
  (logistic 0.650, 0.648). At 2e-3 the head is still near chance loss after 50 steps (train loss 1.6-1.9; ln 8 =
  2.08), so the fine-tuning stage would start from an untrained head, which LP-FT exists to avoid; the mean-pooled
  MiniLM features have a norm of about 2.9, and the head needs the larger rate to move in 50 steps.

``--evaluate-on validation`` scores on pool texts outside the training subset (``--test-per-class`` per section,
seed 54321; never the test set), for any further tuning; a tuned value belongs in ``FINE_TUNE`` with a note of how
it was chosen.

Equal steps for every size (``--epoch-scaling steps``, the default, as bench/finetune.py): epoch counts hold at
``--reference-per-class`` (100) and are multiplied by ``round(100 / per_class)``, so 10/class trains 10 head
epochs and 30 fine-tuning epochs on 80 texts: 5 steps per epoch x 40 = 200 optimizer steps, the same as 100/class
(50 steps x 4). A fixed epoch count would give 10/class 20 steps, too few for the new head to converge. The scaled
settings and the step count are stored with every run.

Every run records accuracy and macro-F1 on the scoring set, fit and predict wall seconds (``time.perf_counter``)
and CPU seconds (``time.process_time``: all threads of this process), the 1-minute load average before and after,
and torch's thread count; fine-tuning runs also store their settings, steps, unfreezing plan and per-epoch
history. All runs share one process (the feature cache of ``minilm`` is shared across its runs, as before); fit
of a fine-tuning run includes loading the packaged weights. ``seconds`` is fit + predict wall time.

Extraction speed (texts/s) is measured on the test set without the cache, single process, batch 64, for the
encoders of the selected feature-extraction methods.

Usage:
    python bench/text.py [--per-class 10,100] [--seeds 0,1,2] [--test-per-class 150]
        [--methods minilm,glove,tfidf,zero-shot,minilm-two-stage,minilm-lora] [--set minilm-lora.lr_backbone=5e-4]
        [--evaluate-on test|validation] [--epoch-scaling steps|none] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import glob
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import Clock, epochs_scale, parse_overrides, write_json  # noqa: E402
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
VALIDATION_SEED = 54321
PREFIXES = ("contrib/", "non-free/", "non-free-firmware/")
MINILM = "packaged:all-minilm-l6-v2"
GLOVE = "packaged:glove-6b-50d"
FEATURE_METHODS = ("minilm", "glove", "tfidf")
FINE_TUNE_METHODS = ("minilm-two-stage", "minilm-lora")
METHODS = (*FEATURE_METHODS, "zero-shot", *FINE_TUNE_METHODS)
EPOCH_KEYS = ("head_epochs", "epochs")
_TWO_STAGE: dict[str, Any] = {
    "schedule": "two-stage", "head_epochs": 1, "epochs": 3, "batch_size": 16, "max_length": 128,
    "lr_head": 1e-2, "lr_backbone": 5e-5, "lr_decay": 0.9, "scheduler": "cosine", "warmup_fraction": 0.1,
    "weight_decay": 0.01, "augment": "none",
}
# Settings at the reference size (100 per class); see the module docstring for where the values come from.
FINE_TUNE: dict[str, dict[str, Any]] = {
    "minilm-two-stage": _TWO_STAGE,
    "minilm-lora": {**_TWO_STAGE, "peft": "lora", "lora_rank": 8, "lr_backbone": 1e-3},
}


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


def package_descriptions() -> tuple[list[tuple[str, str]], list[str]]:
    """``(section, English description)`` of every available binary package (section prefixes stripped; the
    description raw, synopsis line first) and the Translation-en files read."""
    translations = sorted(glob.glob("/var/lib/apt/lists/*_i18n_Translation-en*"))
    if not translations:
        sys.exit("No Translation-en lists: run `apt-get update -o Acquire::Languages=en` as root first.")
    md5_text: dict[str, str] = {}
    for path in translations:
        raw = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], capture_output=True, text=True,
                             check=True).stdout
        for st in _stanzas(raw):
            if "Description-md5" in st and "Description-en" in st:
                md5_text[st["Description-md5"]] = st["Description-en"]
    avail = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    out = []
    for st in _stanzas(avail):
        section = st.get("Section", "")
        for prefix in PREFIXES:
            section = section.removeprefix(prefix)
        description = md5_text.get(st.get("Description-md5", ""))
        if description:
            out.append((section, description))
    return out, translations


def build_dataset() -> tuple[tk.TextDataset, dict[str, Any]]:
    packages, translations = package_descriptions()
    sections_of: dict[str, set[str]] = defaultdict(set)
    for section, description in packages:
        text = long_description(description)
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


def validation_set(pool: tk.TextDataset, train: tk.TextDataset | None, per_class: int) -> tk.TextDataset:
    """Pool texts outside ``train``, ``per_class`` per section (seed ``VALIDATION_SEED``): for tuning settings
    without ever scoring on the test set."""
    train_keys = set(train.items) if train is not None else set()
    rest = pool.subset([i for i, t in enumerate(pool.items) if t not in train_keys])
    return tk.per_class(rest, per_class, seed=VALIDATION_SEED)


def scores(pred: Any, truth: tk.TextDataset) -> dict[str, float]:
    from sklearn.metrics import f1_score

    assert truth.labels is not None
    names = np.asarray(truth.classes)[truth.labels]
    pred = np.asarray(pred).astype(str)
    return {"accuracy": float(np.mean(pred == names)),
            "macro_f1": float(f1_score(names, pred, labels=list(SECTIONS), average="macro", zero_division=0))}


def texts_per_second(spec: str, test: tk.TextDataset) -> dict[str, float]:
    backbone = tk.create_backbone(spec)
    start = time.perf_counter()
    tk.extract_features(backbone, test, cache=False, progress=False, batch_size=64, device="cpu")
    seconds = time.perf_counter() - start
    return {"texts": len(test), "seconds": round(seconds, 2), "texts_per_s": round(len(test) / seconds, 1)}


def fit_method(method: str, settings: dict[str, Any], train: tk.TextDataset, seed: int, cache: str) -> Any:
    """A fitted model of ``method`` whose ``predict`` returns section names."""
    if method == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        assert train.labels is not None
        clf = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=2000))
        return clf.fit(train.items, np.asarray(train.classes)[train.labels])
    if method in FEATURE_METHODS:
        spec = {"minilm": MINILM, "glove": GLOVE}[method]
        return tk.FeatureExtractionClassifier(spec, head="logistic", cache=cache, progress=False,
                                              device="cpu").fit(train)
    options = dict(settings)
    # Same as FineTuneClassifier(MINILM, ...) at the packaged default of 128 tokens; max_length is a backbone option.
    backbone = tk.create_backbone(MINILM, max_length=options.pop("max_length"))
    return tk.FineTuneClassifier(backbone, seed=seed, progress=False, device="cpu", **options).fit(train)


def run_method(method: str, settings: dict[str, Any], train: tk.TextDataset, scoring: tk.TextDataset, seed: int,
               cache: str) -> dict[str, Any]:
    import torch

    load_before = os.getloadavg()[0]
    try:
        with Clock() as fit:
            clf = fit_method(method, settings, train, seed, cache)
        with Clock() as predict:
            pred = clf.predict(scoring.items)
    except Exception as exc:  # a long benchmark keeps going; the record says what failed
        return {"error": f"{type(exc).__name__}: {exc}", "traceback_tail": traceback.format_exc()[-2000:]}
    record: dict[str, Any] = {
        **scores(pred, scoring), "seconds": round(fit.wall + predict.wall, 2),
        "fit_wall_s": round(fit.wall, 2), "fit_cpu_s": round(fit.cpu, 2),
        "predict_wall_s": round(predict.wall, 2), "predict_cpu_s": round(predict.cpu, 2),
        "cpu_s": round(fit.cpu + predict.cpu, 2), "torch_threads": torch.get_num_threads(),
        "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0],
    }
    if method in FINE_TUNE_METHODS:
        info = clf.fit_info_
        if info["inputs"]["max_length"] != settings["max_length"]:  # a library that ignored the option
            return {"error": f"asked for max_length {settings['max_length']}, the encoder ran with "
                             f"{info['inputs']['max_length']}"}
        steps_per_epoch = math.ceil(len(train) / settings["batch_size"])
        record.update(settings=settings, steps_per_epoch=steps_per_epoch,
                      optimizer_steps=steps_per_epoch * sum(stage["epochs"] for stage in info["plan"]),
                      inputs=info["inputs"], plan=info["plan"], peft=info.get("peft"),
                      history=[{k: row[k] for k in ("epoch", "stage", "loss", "train_accuracy", "seconds")}
                               for row in info["history"]])
    return record


def run_zero_shot(scoring: tk.TextDataset, cache: str) -> dict[str, Any]:
    start = time.perf_counter()
    zs = tk.ZeroShotClassifier(MINILM, labels=[f"{k}: {v}" for k, v in SECTION_DESCRIPTIONS.items()],
                               template="A Debian package of {}.", cache=cache, progress=False,
                               device="cpu").fit(scoring)
    return {"method": "zero-shot", "per_class": 0, **scores(zs.predict(scoring.items), scoring),
            "seconds": round(time.perf_counter() - start, 2), "template": zs.template, "labels": SECTION_DESCRIPTIONS}


def summarise(runs: list[dict[str, Any]], per_class: list[int], methods: list[str]) -> list[dict[str, Any]]:
    """Mean and population std (ddof=0, as in earlier result files) over seeds, per (method, per_class)."""
    summary = []
    for n in per_class:
        for method in methods:
            rows = [r for r in runs if r["method"] == method and r["per_class"] == n]
            ok = [r for r in rows if "error" not in r]
            if not rows:
                continue
            row: dict[str, Any] = {"method": method, "per_class": n, "runs": len(ok), "failed": len(rows) - len(ok)}
            if ok:
                acc = [r["accuracy"] for r in ok]
                row.update(accuracy_mean=float(np.mean(acc)), accuracy_std=float(np.std(acc)))
                for key in ("macro_f1", "fit_wall_s", "fit_cpu_s", "seconds", "cpu_s"):
                    row[f"{key}_mean"] = float(np.mean([r[key] for r in ok]))
            summary.append(row)
    return summary


def print_summary(summary: list[dict[str, Any]], zero_shot: dict[str, Any] | None) -> None:
    print(f"\n{'method':<18}{'per class':>10}{'runs':>6}{'accuracy':>18}{'macro-F1':>10}{'fit s':>9}{'cpu s':>9}")
    for row in summary:
        if not row["runs"]:
            print(f"{row['method']:<18}{row['per_class']:>10}{0:>6}   (all runs failed)")
            continue
        acc = f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}"
        print(f"{row['method']:<18}{row['per_class']:>10}{row['runs']:>6}{acc:>18}{row['macro_f1_mean']:>10.3f}"
              f"{row['fit_wall_s_mean']:>9.1f}{row['cpu_s_mean']:>9.1f}")
    if zero_shot is not None:
        print(f"{'zero-shot':<18}{0:>10}{1:>6}{zero_shot['accuracy']:>11.3f}{'':>7}{zero_shot['macro_f1']:>10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", default=None, help="training texts per section (default 10,100; 10 with --quick)")
    p.add_argument("--seeds", default=None, help="training-subset and model seeds (default 0,1,2; 0 with --quick)")
    p.add_argument("--test-per-class", type=int, default=None,
                   help="scoring texts per section (default 150; 10 with --quick)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override a fine-tuning setting, e.g. minilm-lora.lr_backbone=5e-4 (repeatable)")
    p.add_argument("--evaluate-on", choices=("test", "validation"), default="test",
                   help="validation: score on pool texts outside the training subset (tuning without the test set)")
    p.add_argument("--epoch-scaling", choices=("steps", "none"), default=None,
                   help="steps: multiply epochs by round(reference/per_class) (default; none with --quick)")
    p.add_argument("--reference-per-class", type=int, default=100, help="size at which the epoch counts hold")
    p.add_argument("--quick", action="store_true",
                   help="10/class, seed 0, 10 scoring texts per section, 1 epoch per stage: checks it runs")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/text-<date>[-<methods>][-quick].json)")
    args = p.parse_args()
    q = args.quick
    per_class = [int(v) for v in (args.per_class or ("10" if q else "10,100")).split(",")]
    seeds = [int(v) for v in (args.seeds or ("0" if q else "0,1,2")).split(",")]
    test_per_class = args.test_per_class or (10 if q else 150)
    scaling = args.epoch_scaling or ("none" if q else "steps")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    settings = copy.deepcopy(FINE_TUNE)
    if q:
        for method_settings in settings.values():
            method_settings.update(dict.fromkeys(EPOCH_KEYS, 1))
    parse_overrides(args.set, settings)
    suffix = "" if set(methods) == set(METHODS) else "-" + "+".join(methods)
    out = Path(args.out or f"bench/results/text-{dt.date.today().isoformat()}{suffix}{'-quick' if q else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    ds, data_info = build_dataset()
    pool, test = split(ds, test_per_class)
    print(f"dataset: {data_info['texts']} texts, {data_info['per_section']}; test {len(test)}; "
          f"scoring on {args.evaluate_on}", flush=True)
    cache = tempfile.mkdtemp(prefix="tk-bench-text-")
    speed = {m: texts_per_second(spec, test) for m, spec in (("minilm", MINILM), ("glove", GLOVE)) if m in methods}
    if speed:
        print(f"extraction: {speed}", flush=True)
    factors = {n: epochs_scale(n, args.reference_per_class, scaling) for n in per_class}
    result: dict[str, Any] = {
        "benchmark": "text", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "versions": __import__("transferkit.bundle", fromlist=["x"]).library_versions(),
        "settings": {"per_class": per_class, "seeds": seeds, "test_per_class": test_per_class,
                     "sections": SECTIONS, "min_words": MIN_WORDS, "test_seed": TEST_SEED, "methods": methods,
                     "evaluated_on": args.evaluate_on, "validation_seed": VALIDATION_SEED, "quick": q,
                     "command": [Path(sys.executable).name, *sys.argv],
                     "fine_tune": {m: settings[m] for m in methods if m in FINE_TUNE_METHODS},
                     "epoch_scaling": {"mode": scaling, "reference_per_class": args.reference_per_class,
                                       "factors": {str(n): f for n, f in factors.items()}},
                     "timing": "wall: time.perf_counter; cpu: time.process_time (all threads of the one process); "
                               "fit includes loading the weights; seconds = fit + predict wall"},
        "data": data_info, "extraction": speed, "runs": [], "zero_shot": None, "summary": [],
    }
    plan = [(n, seed, m) for n in per_class for seed in seeds for m in methods if m != "zero-shot"]
    started = time.perf_counter()
    for i, (n, seed, method) in enumerate(plan, 1):
        train = tk.per_class(pool, n, seed=seed)
        scoring = test if args.evaluate_on == "test" else validation_set(pool, train, test_per_class)
        scaled = {k: v * factors[n] if k in EPOCH_KEYS else v for k, v in settings.get(method, {}).items()}
        record = {"method": method, "per_class": n, "seed": seed, "train": len(train),
                  **run_method(method, scaled, train, scoring, seed, cache)}
        result["runs"].append(record)
        result["summary"] = summarise(result["runs"], per_class, methods)
        result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
        write_json(out, result)
        if "error" in record:
            status = f"FAILED: {record['error']}"
        else:
            status = (f"accuracy {record['accuracy']:.3f}  macro-F1 {record['macro_f1']:.3f}  fit {record['fit_wall_s']:.1f} s "
                      f"wall / {record['fit_cpu_s']:.1f} s cpu  predict {record['predict_wall_s']:.1f} s  "
                      f"load {record['loadavg_1m_before']:.1f}->{record['loadavg_1m_after']:.1f}")
        print(f"[{i}/{len(plan)} {(time.perf_counter() - started) / 60:.1f} min] {method:<17} per_class={n:<4} "
              f"seed={seed}  {status}", flush=True)
    if "zero-shot" in methods:
        scoring = test if args.evaluate_on == "test" else validation_set(pool, None, test_per_class)
        result["zero_shot"] = run_zero_shot(scoring, cache)
        print(json.dumps(result["zero_shot"]), flush=True)
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    write_json(out, result)
    print_summary(result["summary"], result["zero_shot"])
    if speed:
        print("texts/s: " + ", ".join(f"{m} {s['texts_per_s']}" for m, s in speed.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
