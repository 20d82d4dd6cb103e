"""What the cross-fit verdict of a default ``fit`` on 20 images costs in CPU seconds (a benchmark, not a test).

Wall time on a shared machine says little; CPU seconds (``time.process_time``: every thread of this process, the
small CNNs train in threads) are steadier. The 20 images are bench/fit_time.py's (Fashion-MNIST T-shirts and
trousers, 10 each, as PNG files). Every measurement runs in a fresh process, so one-time costs (imports a first fit
pays) count where they fall; ``--sources`` runs the same measurements with other source trees (``PYTHONPATH``),
alternating, ``--rounds`` times: old and new code side by side in one run.

- ``--part verdict``: the transfer model is fitted once (cache off), then
  :func:`~transferkit.jobs.baseline.baseline_verdict` runs for each ``--variants`` of the small CNN: ``default``
  (the current defaults), ``before`` (``max_epochs=200``: the step budget before 2026-12-04);
- ``--part cnn``: only the baseline side: the five folds' small CNNs trained and scored the way the verdict does
  (``_side_by_side``: one stack per core); ``alone`` among the variants: also with stacking off (each fold by
  itself, the new optimizer), ``one-share``: all five folds in one stack on one core.

Usage: ``python bench/verdict_cost.py [--part verdict,cnn] [--sources src,/other/src] [--rounds 2] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from fit_time import write_images  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402

VARIANTS = {"default": {}, "before": {"max_epochs": 200}, "alone": {}, "one-share": {}}


def verdict_rows(work: Path, variants: list[str]) -> list[dict]:
    from transferkit.jobs import baseline
    from transferkit.jobs.baseline import baseline_verdict, make_baseline
    from transferkit.jobs.fit import FitConfig, make_strategy, prepare_data
    from transferkit.strategies import SmallCNNClassifier

    cfg = FitConfig(data=str(work / "data"), out=str(work / "out"), cache=False, progress=False)
    data, train, val = prepare_data(cfg)
    start, cpu = time.perf_counter(), time.process_time()
    estimator = make_strategy(cfg).fit(train)
    rows = [{"part": "transfer model", "wall_s": round(time.perf_counter() - start, 2),
             "cpu_s": round(time.process_time() - cpu, 2)}]
    for name in variants:
        out = work / name
        run_cfg = FitConfig(**{**cfg.__dict__, "out": str(out)})
        tk.save_bundle(estimator, out, extra={"verdict": {"status": "pending"}})
        settings = VARIANTS[name]

        def patched(*a, _settings=settings, **k):  # the verdict builds its CNNs itself: set the variant on each
            model = make_baseline(*a, **k)
            return model.set_params(**_settings) if isinstance(model, SmallCNNClassifier) else model

        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        with mock.patch.object(baseline, "make_baseline", patched):
            verdict = baseline_verdict(run_cfg, estimator, data, train, val)
        rows.append({"part": "verdict", "variant": name, "settings": settings,
                     "wall_s": round(time.perf_counter() - start, 2), "cpu_s": round(time.process_time() - cpu, 2),
                     "load_1m_before": load, "load_1m_after": os.getloadavg()[0], "verdict": verdict["verdict"],
                     "gain": verdict["gain"], "ci": verdict["ci"], "scratch_accuracy": verdict["scratch_accuracy"],
                     "transfer_accuracy": verdict["transfer_accuracy"], "baseline_epochs": verdict["baseline"]["epochs"]})
    return rows


def cnn_row(work: Path, variant: str) -> dict:
    import numpy as np

    from transferkit.data.split import fold_indices
    from transferkit.jobs.baseline import _side_by_side
    from transferkit.strategies import SmallCNNClassifier

    data = tk.from_folder(str(work / "data"))
    jobs = [(f"fold{f}", SmallCNNClassifier(seed=0, progress=False), {"train": data.subset(tr), "val": data.subset(va)})
            for f, (tr, va) in enumerate(fold_indices(np.asarray(data.labels), 5, 0))]
    patches = {"alone": mock.patch("transferkit.strategies.small_cnn_folds._stack_key", return_value=None),
               "one-share": mock.patch("os.sched_getaffinity", return_value={0})}  # all five in one stack
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    with patches.get(variant, contextlib.nullcontext()), _side_by_side(jobs) as results:
        marks = dict(results())
    return {"part": "cnn", "variant": variant, "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(time.process_time() - cpu, 2), "load_1m_before": load, "load_1m_after": os.getloadavg()[0],
            "marks": "".join(marks[f"fold{f}"] for f in range(5)),
            "dynamo_imported": "torch._dynamo" in sys.modules}


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    variants = args.variants.split(",")
    rows = verdict_rows(work, variants) if args.part == "verdict" else [cnn_row(work, v) for v in variants[:1]]
    print("ROWS " + json.dumps(rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="verdict,cnn")
    parser.add_argument("--variants", default="default,before")
    parser.add_argument("--sources", default="src", help="comma-separated source trees to compare (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=f"bench/results/verdict-cost-{dt.date.today()}.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="tk-verdict-cost-"))
    write_images(work / "data")
    rows = []
    chosen = args.variants.split(",")
    for r in range(args.rounds):
        for source in args.sources.split(","):
            for part in args.part.split(","):
                if part == "verdict":  # one process: the transfer model once, then each variant's verdict
                    runs = [",".join(v for v in chosen if v not in ("alone", "one-share"))]
                else:  # one process per variant; stacking (``alone`` turns it off) exists only in this tree
                    runs = [v for v in chosen if v != "before" and (v == "default" or source == "src")]
                for variants in runs:
                    env = {**os.environ, "PYTHONPATH": str(Path(source).resolve())}
                    cmd = [sys.executable, __file__, "--child", "--work", str(work), "--part", part,
                           "--variants", variants]
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                    got = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("ROWS "))[5:])
                    for row in got:
                        row.update(source=source, round=r)
                        print(row, flush=True)
                    rows += got
    result = {"benchmark": "verdict-cost", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "images": 20, "rows": rows}
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
