"""Time `search report` on a large campaign: a 2,000-trial random stage, a grid stage beside it and a fine stage.

Trials are made with Optuna's ``create_trial`` (no training) with the attributes a real trial carries,
including a 200-point loss curve, in a temporary SQLite database. The report (all numbers, every plot,
report.html/report.md/summary.json) is generated ``--rounds`` times and the median is printed; the
goal is under 10 s for a 2,000-trial study. Parameter importance (fANOVA) runs on a seeded sample of at
most ``studies.report.IMPORTANCE_MAX_TRIALS`` completed trials per stage; the numbers alone (no plots)
are timed once more, and the trials each stage's importance used are printed.

    python benchmarks/report_speed.py                    # 2000 coarse + 1936 grid (44 x 44) + 200 fine trials
    python benchmarks/report_speed.py --trials 500 --rounds 5 --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import optuna  # noqa: E402

from studies.report import campaign_report, write_report  # noqa: E402
from studies.store import open_storage  # noqa: E402
from tests.studies.report_data import build_campaign  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="Trials of the random (coarse) stage.")
    parser.add_argument("--fine", type=int, default=200, help="Trials of the fine stage.")
    parser.add_argument("--no-grid", action="store_true", help="Leave out the k x k grid stage.")
    parser.add_argument("--rounds", type=int, default=3, help="Report generations to take the median of.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="report-speed-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'search.db'}"
        t0 = time.perf_counter()
        stages = build_campaign(url, "bench", with_grid=not args.no_grid, n_coarse=args.trials, n_fine=args.fine)
        build_s = time.perf_counter() - t0
        n_trials = {name: len(specs) for name, specs in stages.items()}
        storage = open_storage(url, create=False)
        times = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            report = campaign_report(storage, "bench")
            write_report(report, Path(tmp) / f"out-{r}")
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        campaign_report(storage, "bench", images=False)
        numbers_s = time.perf_counter() - t0
        storage.engine.dispose()

    result = {"trials": n_trials, "total_trials": sum(n_trials.values()), "build_seconds": round(build_s, 2),
              "report_seconds": [round(t, 3) for t in times], "median_report_seconds": round(statistics.median(times), 3),
              "numbers_only_seconds": round(numbers_s, 3), "images": sorted(report.images),
              "importance_trials": {s["stage"]: [s["importance"]["trials_used"], s["importance"]["trials_complete"]]
                                    for s in report.summary["stages"]}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"database: {', '.join(f'{k} {v}' for k, v in n_trials.items())} trials "
          f"({result['total_trials']} total, built in {build_s:.1f} s)")
    print(f"report (numbers, {len(report.images)} plots, html/md/json): "
          f"{' '.join(f'{t:.2f}' for t in times)} s; median {result['median_report_seconds']:.2f} s")
    print(f"numbers alone (with importance): {numbers_s:.2f} s; importance on "
          + ", ".join(f"{k} {u} of {c}" for k, (u, c) in result["importance_trials"].items()) + " completed trials")


if __name__ == "__main__":
    main()
