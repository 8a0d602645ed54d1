"""A hyperparameter sweep: trials are training jobs, many in flight, observed together, resumable.

The strategy is Optuna's (random, grid or TPE), driven by ask/tell on an in-memory study. The ledger is
the source of truth: each trial's row is written (number, parameters, objective) before its Create call.
On resume a fresh study asks again for every trial the ledger holds, in order, so Optuna's samplers
replay the same parameters (random and grid; TPE is given the recorded ones), and is told every finished
one; trials still running are adopted, and none is created twice. Only then are new trials asked for.
Trial 1 is the file's own hyperparameters when they lie in the search space (random and TPE), so the best
trial is never worse than not sweeping.

Each pass observes every trial in flight with the run's other resources (one List for all of them), tells
Optuna what finished, and asks for more while fewer than `max_parallel` run. A failed trial is recorded
with its reason and does not stop the sweep. On AWS, CreateTrainingJob's ResourceLimitExceeded is not a
failure: the trial waits, retried with backoff, and the console says why.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from jobman.durations import format_duration
from jobman.errors import BackendError, RunFailed
from jobman.kinds import Kind
from jobman.ledger.store import Observation, Resource, Run
from jobman.names import trial_name
from jobman.reconciler import settled
from jobman.states import Status
from jobman.sweep_config import Parameter, SweepConfig, grid_size, hyperparameter_text
from jobman.trials import TAG_TRIAL, Trial, best_of, params_text, trials_of, write_trial_outputs

if TYPE_CHECKING:
    from jobman.run import ExperimentRun

CAPACITY_ERROR = "ResourceLimitExceeded"
CAPACITY_BACKOFF_MAX_S = 300.0


def distribution(p: Parameter) -> BaseDistribution:
    if p.choices is not None:
        return CategoricalDistribution(p.choices)
    assert p.low is not None and p.high is not None
    if p.integer:
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=1 if p.log else int(p.step or 1))
    return FloatDistribution(p.low, p.high, log=p.log, step=p.step)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler stops the study once every point was tried, which only `Study.optimize` allows; an
    ask/tell sweep stops by its own count (`trial_limit`)."""

    def after_trial(self, study: optuna.Study, trial: Any, state: TrialState, values: Any) -> None:
        pass


def sampler(config: SweepConfig) -> optuna.samplers.BaseSampler:
    if config.strategy == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    if config.strategy == "grid":
        grid = {p.name: p.grid_values() for p in config.parameters}
        return _GridSampler(grid, seed=config.seed)
    return optuna.samplers.TPESampler(seed=config.seed)


def trial_limit(config: SweepConfig) -> int:
    """How many trials the sweep makes: max_trials, or fewer when a grid has fewer points."""
    if config.strategy != "grid":
        return config.max_trials
    return min(config.max_trials, grid_size(config.parameters))


class Sweep:
    def __init__(self, flow: ExperimentRun, config: SweepConfig, run: Run, channels: dict[str, str]) -> None:
        self.flow, self.config, self.run, self.channels = flow, config, run, channels
        self.distributions = {p.name: distribution(p) for p in config.parameters}
        self.limit = trial_limit(config)
        self.baseline = self._baseline()
        self.retry_at: dict[int, datetime] = {}  # trial row id -> when its create may be tried again
        self.attempts: dict[int, int] = {}

    async def best_trial(self) -> Resource:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction = optuna.study.StudyDirection.MINIMIZE if self.config.direction == "minimize" \
            else optuna.study.StudyDirection.MAXIMIZE
        study = optuna.create_study(direction=direction, sampler=sampler(self.config))
        recorded = trials_of(await self.flow.ledger.resources(run_ids=[self.run.id], kinds=[Kind.TRAINING_JOB]))
        handles = self._replay(study, recorded)
        in_flight = [t.resource for t in recorded if not t.finished]
        if recorded:
            self.flow.reporter.step(f"resuming the sweep: {len(recorded) - len(in_flight)} trials finished, "
                                    f"{len(in_flight)} in flight")
        else:
            self.flow.reporter.step(
                f"sweep: {self.config.strategy}, {self.limit} trials, {self.config.max_parallel} at a time, "
                f"{self.config.direction} {self.config.objective}")
        while True:
            while len(in_flight) < self.config.max_parallel and len(study.trials) < self.limit:
                asked = self._ask(study, None)
                row = await self._intent(asked.number + 1, asked.params)
                handles[row.id] = asked
                in_flight.append(row)
            if not in_flight:
                break
            current = await self.flow.ledger.run(self.run.id)
            if current.finished:  # `jobman stop` (another process) ended the run and stopped its trials
                raise RunFailed(f"run {self.run.number} was {current.status} while its sweep ran")
            in_flight = await self._pass(study, in_flight, handles)
            if in_flight:
                await self.flow.clock.sleep(self.flow.timing.training_poll_s)
        return await self._best()

    def _replay(self, study: optuna.Study, recorded: list[Trial]) -> dict[int, optuna.Trial]:
        """Ask for every recorded trial again, in order, and tell the finished ones; the running ones' handles
        are returned, by row id."""
        handles: dict[int, optuna.Trial] = {}
        for trial in recorded:
            if trial.number != len(study.trials) + 1:
                raise RunFailed(f"sweep of run {self.run.number}: trial {len(study.trials) + 1} is missing from the "
                                "ledger; the sweep cannot be resumed in order")
            asked = self._ask(study, trial.params)
            if asked.params != trial.params:
                raise RunFailed(f"sweep of run {self.run.number}: Optuna proposed {asked.params} for trial "
                                f"{trial.number}, but the ledger records {trial.params}")
            if trial.finished:
                _tell(study, asked, trial)
            else:
                handles[trial.resource.id] = asked
        return handles

    def _ask(self, study: optuna.Study, recorded: dict[str, Any] | None) -> optuna.Trial:
        """The next trial. The first is the file's own hyperparameters when they lie in the search space, so a
        sweep never ends worse than no sweep (not for a grid: its points are its own). TPE's proposals depend on
        when trials finished, so a replayed one is given its recorded parameters."""
        if not study.trials and self.baseline is not None:
            study.enqueue_trial(self.baseline)
        elif recorded is not None and self.config.strategy == "tpe":
            study.enqueue_trial(recorded)
        return study.ask(self.distributions)

    def _baseline(self) -> dict[str, Any] | None:
        if self.config.strategy == "grid":
            return None
        fixed = self.flow.x.training.hyperparameters
        values: dict[str, Any] = {}
        for p in self.config.parameters:
            text = fixed.get(p.name)
            if text is None:
                return None
            if p.choices is not None:
                matches = [c for c in p.choices if hyperparameter_text(c) == text]
                if not matches:
                    return None
                values[p.name] = matches[0]
                continue
            value: float | int = int(float(text)) if p.integer else float(text)
            dist = self.distributions[p.name]
            if not dist._contains(dist.to_internal_repr(value)):
                return None
            values[p.name] = value
        return values

    async def _intent(self, number: int, params: dict[str, Any]) -> Resource:
        name = trial_name(self.flow.x.name, self.run.number, number)
        hyperparameters = {**self.flow.x.training.hyperparameters,
                           **{k: hyperparameter_text(v) for k, v in params.items()}}
        spec = self.flow.training_spec(self.run, name, self.channels, hyperparameters, **{TAG_TRIAL: str(number)})
        details = {"trial": number, "params": params, "objective": self.config.objective,
                   "direction": self.config.direction}
        return await self.flow.training_intent(self.run, spec, details=details)

    async def _pass(self, study: optuna.Study, in_flight: list[Resource],
                    handles: dict[int, optuna.Trial]) -> list[Resource]:
        """One observation of every trial in flight (one List call for all), acting on what it finds."""
        now = self.flow.clock.now()
        due = [r for r in in_flight if self.retry_at.get(r.id, now) <= now]
        result = await self.flow.reconciler.reconcile(due, create=True)
        await self.flow.report_pass(result)
        latest = {r.id: result.get(r) for r in in_flight}
        for r, error in result.errors:
            latest[r.id] = await self._on_error(latest[r.id], error)
        left = []
        for r in in_flight:
            current = latest[r.id]
            if settled(current):
                trial = trials_of([current])[0]
                _tell(study, handles.pop(r.id), trial)
                self._announce(trial)
            else:
                left.append(current)
        return left

    async def _on_error(self, r: Resource, error: BackendError) -> Resource:
        if error.code == CAPACITY_ERROR and r.status == Status.PENDING:
            attempt = self.attempts[r.id] = self.attempts.get(r.id, 0) + 1
            delay = min(CAPACITY_BACKOFF_MAX_S, self.flow.timing.training_poll_s * 2 ** attempt)
            self.retry_at[r.id] = self.flow.clock.now() + timedelta(seconds=delay)
            self.flow.reporter.step(f"{r.name} waits for capacity: the account's training instance limit is "
                                    f"reached ({CAPACITY_ERROR}); retrying in {format_duration(delay)}")
            return r
        if error.retryable:
            return r
        if r.status == Status.PENDING:  # the create was refused for good: this trial failed, the sweep goes on
            return await self.flow.ledger.record(
                r.id, Observation(status=Status.FAILED, failure_reason=f"create refused: {error}",
                                  details={"described": True}),
                at=self.flow.clock.now())
        raise error

    def _announce(self, trial: Trial) -> None:
        shown = params_text(trial.params)
        if trial.value is not None:
            what = f"{trial.objective} {trial.value:.6g}"
        else:
            what = f"{trial.resource.status}: {trial.resource.failure_reason or 'no ' + trial.objective + ' reported'}"
        self.flow.reporter.step(f"trial {trial.number} ({shown}): {what}")

    async def _best(self) -> Resource:
        trials = trials_of(await self.flow.ledger.resources(run_ids=[self.run.id], kinds=[Kind.TRAINING_JOB]))
        best = best_of(trials)
        if best is None:
            first = trials[0].resource if trials else None
            why = f"; trial 1: {first.status}: {first.failure_reason or 'no reason given'}" if first else ""
            raise RunFailed(f"every trial of the sweep failed ({len(trials)} of {self.limit}){why}")
        assert self.run.output_dir is not None  # recorded before anything was trained
        write_trial_outputs(Path(self.run.output_dir), trials, self.config.objective)
        shown = params_text(best.params)
        self.flow.reporter.step(f"best: trial {best.number} ({shown}), {best.objective} {best.value:.6g}; "
                                f"deploying its model")
        return best.resource


def _tell(study: optuna.Study, asked: optuna.Trial, trial: Trial) -> None:
    value = trial.value
    if value is None or not math.isfinite(value):
        study.tell(asked, state=TrialState.FAIL)
    else:
        study.tell(asked, value)
