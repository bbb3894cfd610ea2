"""A study's trial budget kept exact when processes die at any instruction: atomic enqueueing, exactly-once retries.

A stage's budget is its N WAITING trials (see ``search/stages.py``). Two operations on it must
not be torn in half by a SIGKILL or lost to a race between processes on several machines:

* **Initialising a study** -- its user attributes, its N WAITING trials and the ``ready`` flag --
  is ONE transaction holding the lock on the study's row (``SELECT ... FOR UPDATE`` on
  PostgreSQL; on SQLite every writing transaction is ``BEGIN IMMEDIATE``, see ``studies.store``).
  A study is therefore either not initialised or fully initialised; any process may try, and
  exactly one does it. Enqueueing with ``study.enqueue_trial`` N times instead would leave a
  study with k < N trials when its creator is killed, and a second process could not tell how
  many are missing without racing the first.

* **Retrying a failed trial.** Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues a WAITING
  copy of a stale trial, but only after ``fail_stale_trials`` has committed the FAIL: a process
  killed between the two loses one trial of the budget, and nothing notices. Here every copy
  records the number of the trial it retries (system attribute ``retry_of``, next to Optuna's
  own ``failed_trial`` and ``retry_history``), and the check "is this FAIL trial retried yet?"
  and the insert of its copy are one transaction under the same study-row lock. Any number of
  processes may call :func:`requeue_failed_trials` any number of times: each failed trial gets
  exactly one copy. Workers call it when they find nothing to claim, which repairs what a
  killed process left half done.

These use the RDB storage's own sessions and rows through ``studies.optuna_rdb`` (the trials of a
stage as multi-row INSERTs: 100,000 in a few seconds); studies created this way are ordinary Optuna studies.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from studies.errors import StudyError
from studies.optuna_rdb import LockedStudy, locked_study, study_id as study_id_of, study_storage
from studies.records import RECORD_KEYS

READY_ATTR = "ready"  # study user attribute: every trial of the budget is enqueued
OWNER_KEYS = frozenset({"campaign", "stage"})  # study user attributes that name the stage a study is
RETRY_OF = "retry_of"  # trial system attribute of a retry: the number of the FAIL trial it re-runs
PRUNER_RUNG_PREFIX = "completed_rung_"  # system attributes of Optuna's SuccessiveHalvingPruner: value at rung k
# A FAIL trial whose stop_reason starts with this failed by itself (an exception in the trial) and
# is not re-run; any other FAIL (interrupted, or its worker died) is re-run once per failure.
ERROR_PREFIX = "error"


def _refuse_foreign(study: LockedStudy, user_attrs: Mapping[str, Any]) -> None:
    """StudyError unless the study is maximised and blank (no attrs, no trials) or ours (``ready``, and the owner keys we write)."""
    keys = study.user_attr_keys()
    blank = not keys and not study.has_trials()
    ours = blank or {READY_ATTR, *(OWNER_KEYS & set(user_attrs))} <= keys
    if not ours or not study.maximised():
        raise StudyError(f"study {study.name} was not created by this service; use another --campaign")


def initialise_study(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    user_attrs: Mapping[str, Any],
    fixed_params: Sequence[Mapping[str, float]],
) -> bool:
    """Unless already done: write the user attributes, one WAITING trial per ``fixed_params`` entry and
    ``ready``, all in one transaction. Returns True when this call did it, False when it was done before.
    A study this service did not create (see ``_refuse_foreign``) is refused with StudyError, nothing written."""
    with locked_study(storage, study_id) as study:
        _refuse_foreign(study, user_attrs)
        if READY_ATTR in study.user_attr_keys():
            return False
        study.add_waiting_trials(fixed_params)
        study.set_user_attrs({**user_attrs, READY_ATTR: True})  # last, in the same transaction
    return True


def is_retried_on_failure(trial: FrozenTrial) -> bool:
    """Whether a FAIL trial is re-run: yes unless it failed by itself (stop_reason ``error: ...``)."""
    return not str(trial.user_attrs.get("stop_reason", "")).startswith(ERROR_PREFIX)


def retry_copy(trial: FrozenTrial) -> FrozenTrial:
    """A WAITING trial with the failed trial's parameters and Optuna's retry bookkeeping.

    What belonged to the failed run is left behind: its records and the values a pruner stored at the rungs it
    passed (the copy starts again at epoch 1 and must be compared at every rung, its run's values counted once).
    """
    system_attrs = {k: v for k, v in trial.system_attrs.items()
                    if k not in RECORD_KEYS and not k.startswith(PRUNER_RUNG_PREFIX)}
    system_attrs["failed_trial"] = system_attrs.get("failed_trial", trial.number)  # the first of the chain
    system_attrs["retry_history"] = [*system_attrs.get("retry_history", []), trial.number]
    system_attrs[RETRY_OF] = trial.number
    return optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, system_attrs=system_attrs,
    )


def unretried_failures(trials: Iterable[FrozenTrial]) -> list[int]:
    """Numbers of the re-runnable FAIL trials without their copy yet (what a killed process may leave for the next
    one to enqueue)."""
    trials = list(trials)
    retried = {t.system_attrs[RETRY_OF] for t in trials if RETRY_OF in t.system_attrs}
    return [t.number for t in trials
            if t.state == TrialState.FAIL and is_retried_on_failure(t) and t.number not in retried]


def requeue_failed_trials(
    storage: optuna.storages.BaseStorage, study_id: int, failed: Iterable[FrozenTrial] | None = None
) -> int:
    """Enqueue one WAITING copy of each re-runnable FAIL trial (default: all of the study's) that has none
    yet; returns how many this call enqueued. Idempotent and safe to call from any number of processes."""
    if failed is None:
        failed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
    # finished trials never change, so they can be read outside the lock; only "retried yet?" cannot
    candidates = [t for t in failed if t.state == TrialState.FAIL and is_retried_on_failure(t)]
    if not candidates:
        return 0
    with locked_study(storage, study_id) as study:
        return _add_copies(study, candidates)


def requeue_and_count(storage: optuna.storages.BaseStorage, study_id: int) -> tuple[int, dict[str, int]]:
    """The study's trials by state, then one WAITING copy of each re-runnable FAIL trial that has none, in ONE
    transaction under the study's row lock; returns (copies enqueued, the counts read before them).

    ``(0, counts)`` with nothing WAITING or RUNNING in ``counts`` means the study is done for good: a trial that
    fails after the counts were read was RUNNING in them, and a copy that another process enqueued (always under this
    lock) is WAITING in them. Read apart (:func:`requeue_failed_trials`, then the counts) a trial failed in between,
    its copy enqueued just after the counts by its interrupted worker, looks done to a worker that then leaves."""
    with locked_study(storage, study_id) as study:
        counts = study.state_counts()
        failed = [t for t in study.trials(TrialState.FAIL) if is_retried_on_failure(t)]
        return _add_copies(study, failed), counts


def _add_copies(study: LockedStudy, failed: Iterable[FrozenTrial]) -> int:
    """Add a retry copy of each of ``failed`` not retried yet (in ``study``'s locked transaction); how many."""
    added = 0
    retried = set(study.system_attr_values(RETRY_OF))
    for trial in failed:
        if trial.number not in retried:
            study.add_trial(retry_copy(trial))
            retried.add(trial.number)
            added += 1
    return added


class RetryStaleTrialOnce(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry callback for heartbeat-stale trials, made exactly-once (see the module docstring).

    Passed to ``RDBStorage(heartbeat_stale_trial_callback=...)``; ``retried_trial_number`` and
    ``retry_history`` of the parent class work on the copies it makes.
    """

    def __init__(self) -> None:
        super().__init__(max_retry=None)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue_failed_trials(study_storage(study), study_id_of(study), [trial])
