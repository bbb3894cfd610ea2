"""Does refinement that reads the diagnosis help? The same fine stage with and without it.

Problem: digits with 100 training samples and a wide net (500 units), where runs overfit; the
coarse stage searches lr 1e-3:1e-2 and reg 1e-6:1e-1. From the same coarse stage two fine stages
are created with the same seed and budget: one refined as ``search fine`` does (the diagnosis
moves reg's lower bound up when most of the top trials overfit), one refined without the
diagnosis. Prints each fine stage's space, best and median validation accuracy, per seed.

    python benchmarks/diagnosis_effect.py [--seeds 3] [--trials 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from engine.data import DataSpec
from search.campaign import Execution, coarse_stage, execute_stage
from search.config import RunConfig
from search.space import FloatRange, describe_space, refine_space
from search.stages import refined_stage, split_size, value_se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(not set)')}")
    base = RunConfig(data=DataSpec("digits", train_size=100)).with_params({"arch.hidden": 500, "train.epochs": 20})
    space = {"lr": FloatRange(1e-3, 1e-2), "reg": FloatRange(1e-6, 1e-1)}
    rows = {"with diagnosis": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            url = f"sqlite:///{Path(tmp) / f'{seed}.db'}"
            ex = Execution(url, jobs=1, progress="quiet")
            execute_stage(ex, coarse_stage(f"d{seed}", base.with_params({"train.seed": seed}), space, args.trials, seed))
            storage = ex.storage()
            parent = optuna.load_study(study_name=f"d{seed}/coarse", storage=storage)
            with_diag = refined_stage(parent, top=5, edge=0.1, epochs=20, n_trials=args.trials)
            done = [t for t in parent.get_trials(states=(TrialState.COMPLETE,))]
            se = value_se(max(t.value for t in done), split_size(parent, "val"))
            plain_space, _ = refine_space(space, [(t.params, t.value) for t in done], top=5, edge=0.1, value_se=se)
            without = replace(with_diag, campaign=f"p{seed}", space=plain_space, parent=None, range_notes=())
            for name, stage in (("with diagnosis", with_diag), ("without", without)):
                summary = execute_stage(ex, stage)
                study = optuna.load_study(study_name=summary.study, storage=storage)
                values = [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))]
                best, median = max(values), statistics.median(values)
                rows[name].append((best, median))
                print(f"seed {seed} {name:<15} best {best:.4f} median {median:.4f}  {describe_space(stage.space)}")
            for note in with_diag.range_notes:
                if "diagnosis" in note:
                    print(f"    {note}")
    for name, values in rows.items():
        print(f"{name:<15} best {statistics.mean(v[0] for v in values):.4f}  "
              f"median {statistics.mean(v[1] for v in values):.4f}  (means over {args.seeds} seeds)")


if __name__ == "__main__":
    main()
