"""What the per-trial diagnosis costs: unit statistics on a validation batch against the training of the trial.

Runs the same trials (digits and a CIFAR-shaped problem, the project defaults) and times, per trial,
the training and then the diagnosis (a forward pass of 500 validation samples with the hidden
outputs recorded, plus reading the curves). Prints the medians and their ratio.

    python benchmarks/diagnosis_cost.py [--trials 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from engine.data import DataSpec
from engine.trainer import train
from search.config import RunConfig
from search.objective import diagnose_trial

CASES = {
    "digits, 3 epochs": RunConfig(data=DataSpec("digits")).with_params({"train.epochs": 3}),
    "cifar-shaped 5000 x 3072, 1 epoch": RunConfig(
        data=DataSpec("synthetic", train_size=5000, val_size=1000, test_size=100)).with_params({"train.epochs": 1}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(not set)')}")
    for name, base in CASES.items():
        dataset = base.load()
        trains, diagnoses = [], []
        for seed in range(args.trials):
            lr = float(10 ** np.random.default_rng(seed).uniform(-4, -2))
            config = base.with_params({"train.seed": seed, "train.lr": lr})
            started = time.perf_counter()
            model = config.build_model(dataset)
            reg0 = model.reg_loss(config.train.reg)
            result = train(model, config.train, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
            trained = time.perf_counter()
            diagnose_trial(result, model, dataset, config, reg0)
            trains.append(trained - started)
            diagnoses.append(time.perf_counter() - trained)
        t, d = statistics.median(trains), statistics.median(diagnoses)
        print(f"{name}: training {t * 1000:.1f} ms, diagnosis {d * 1000:.2f} ms per trial (medians of {args.trials}): "
              f"diagnosis = {d / t:.2%} of training")


if __name__ == "__main__":
    main()
