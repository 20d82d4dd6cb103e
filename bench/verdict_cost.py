"""What the cross-fit verdict of a default ``fit`` on 20 images costs in CPU seconds (a benchmark, not a test).

Wall time on a shared machine says little; CPU seconds (``time.process_time``: every thread of this process, the
small CNNs train in threads) are steadier. The 20 images are bench/fit_time.py's (Fashion-MNIST T-shirts and
trousers, 10 each, as PNG files). One process: the transfer model is fitted once (cache off), then
:func:`~transferkit.jobs.baseline.baseline_verdict` runs for each ``--variant`` of the small CNN:

- ``default``: the current defaults;
- ``before``: ``max_epochs=200`` (the step budget before 2026-12-04: 200 one-step epochs on 16 images).

Usage: ``python bench/verdict_cost.py [--variants default,before] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
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
from transferkit.jobs import baseline  # noqa: E402
from transferkit.jobs.baseline import baseline_verdict, make_baseline  # noqa: E402
from transferkit.jobs.fit import FitConfig, make_strategy, prepare_data  # noqa: E402
from transferkit.strategies import SmallCNNClassifier  # noqa: E402

VARIANTS = {"default": {}, "before": {"max_epochs": 200}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="default,before")
    parser.add_argument("--out", default=f"bench/results/verdict-cost-{dt.date.today()}.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tk-verdict-cost-"))
    data_dir = write_images(work / "data")
    cfg = FitConfig(data=str(data_dir), out=str(work / "out"), cache=False, progress=False)
    data, train, val = prepare_data(cfg)
    start, cpu = time.perf_counter(), time.process_time()
    estimator = make_strategy(cfg).fit(train)
    transfer = {"wall_s": round(time.perf_counter() - start, 2), "cpu_s": round(time.process_time() - cpu, 2)}
    rows = []
    for name in args.variants.split(","):
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
        row = {"variant": name, "settings": settings, "wall_s": round(time.perf_counter() - start, 2),
               "cpu_s": round(time.process_time() - cpu, 2), "load_1m_before": load, "load_1m_after": os.getloadavg()[0],
               "verdict": verdict["verdict"], "gain": verdict["gain"], "ci": verdict["ci"],
               "scratch_accuracy": verdict["scratch_accuracy"], "transfer_accuracy": verdict["transfer_accuracy"],
               "baseline_epochs": verdict["baseline"]["epochs"]}
        rows.append(row)
        print(row, flush=True)
    result = {"benchmark": "verdict-cost", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "images": len(data), "transfer_model": transfer,
              "rows": rows}
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
