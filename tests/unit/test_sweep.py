"""Hyperparameter sweeps on the in-memory backend and a fake clock: the `[sweep]` checks, trials in flight,
bulk observation, failures, capacity, and resuming after a kill with the same trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobman.backends.fake import FakeBackend
from jobman.clock import FakeClock
from jobman.config import Experiment, load_experiment
from jobman.errors import ConfigError, RunFailed
from jobman.kinds import Kind
from jobman.ledger.store import Ledger, Resource
from jobman.run import ExperimentRun
from jobman.states import Status
from jobman.status import status_view
from jobman.timing import Timing
from jobman.trials import best_of, trials_of
from jobman.workflow import SilentReporter
from tests.conftest import write_experiment
from tests.unit.test_run import Killed
from tests.unit.test_status_screen import render

TIMING = Timing(training_poll_s=5, endpoint_poll_s=15)
SWEEP = """
[sweep]
strategy = "{strategy}"
max_trials = {trials}
max_parallel = {parallel}
objective = "validation:rmse"
direction = "minimize"
seed = 0
[sweep.parameters]
eta = {{ low = 0.05, high = 0.5, log = true }}
max_depth = {{ low = 3, high = 10, type = "int" }}
subsample = [0.6, 0.8, 1.0]
"""
GRID = SWEEP.replace("eta = {{ low = 0.05, high = 0.5, log = true }}", "eta = [0.1, 0.3]").replace(
    'max_depth = {{ low = 3, high = 10, type = "int" }}', "max_depth = {{ low = 3, high = 5 }}")


class KillAfter(SilentReporter):
    """Raises at the `n`th status change the console would show."""

    def __init__(self, n: int) -> None:
        self.left = n

    def status(self, resource: Resource) -> None:
        self.left -= 1
        if self.left == 0:
            raise Killed


def metrics_by_params(hp: dict[str, str]) -> dict[str, float]:
    """A smooth, deterministic objective: best near eta 0.2, max_depth 6, subsample 0.8."""
    value = (abs(float(hp["eta"]) - 0.2) * 10 + abs(int(hp["max_depth"]) - 6) + abs(float(hp["subsample"]) - 0.8) * 5)
    return {"validation:rmse": 3.0 + value, "train:rmse": 2.0}


def sweep_experiment(tmp_path: Path, strategy: str = "random", trials: int = 8, parallel: int = 3,
                     template: str = SWEEP, extra: dict[str, str] | None = None) -> Experiment:
    path = write_experiment(tmp_path / "exp.toml", extra)
    path.write_text(path.read_text() + template.format(strategy=strategy, trials=trials, parallel=parallel))
    return load_experiment(path)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def fake(clock: FakeClock) -> FakeBackend:
    backend = FakeBackend(now=clock.now, training_polls=3)
    backend.final_metrics = metrics_by_params
    return backend


async def run_it(x: Experiment, ledger: Ledger, backend: FakeBackend, clock: FakeClock,
                 reporter: Any = None) -> Any:
    return await ExperimentRun(x, ledger, backend, clock=clock, timing=TIMING, reporter=reporter).execute()


async def trials_in(ledger: Ledger, run_id: int) -> list[Any]:
    return trials_of(await ledger.resources(run_ids=[run_id]))


async def test_a_sweep_runs_its_trials_at_most_max_parallel_at_once_and_deploys_the_best(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    backend = fake(clock)
    outcome = await run_it(sweep_experiment(tmp_path), ledger, backend, clock)
    assert outcome.run.status == "succeeded"
    trials = await trials_in(ledger, outcome.run.id)
    assert [t.resource.name for t in trials] == [f"boston-xgboost-r1-t{k}" for k in range(1, 9)]
    assert backend.peak_training == 3
    assert all(t.resource.status == Status.COMPLETED and t.value is not None for t in trials)
    best = best_of(trials)
    assert best is not None and best.value == min(t.value for t in trials)
    # Trial 1 is the file's own hyperparameters: the sweep can only improve on them.
    assert trials[0].params == {"eta": 0.2, "max_depth": 5, "subsample": 0.8}
    assert trials[0].value is not None and best.value <= trials[0].value
    tags = {t["Key"]: t["Value"] for t in best.resource.spec["Tags"]}
    assert tags["jobman:trial"] == str(best.number)
    hp = best.resource.spec["HyperParameters"]
    assert hp["num_round"] == "200" and hp["eta"] == str(best.params["eta"])  # fixed ones kept, swept ones set
    # The best trial's model is what was deployed and evaluated.
    model = await ledger.resource_by_name(Kind.MODEL, "boston-xgboost-r1-model")
    assert model is not None and f"/{best.resource.name}/" in model.spec["PrimaryContainer"]["ModelDataUrl"]
    assert outcome.metrics["rows"] == 167
    lines = (outcome.output_dir / "trials.csv").read_text().splitlines()
    assert lines[0] == "trial,name,eta,max_depth,subsample,validation:rmse,status,billed_s,best"
    assert len(lines) == 9 and sum(line.endswith(",yes") for line in lines) == 1
    assert (outcome.output_dir / "trials.png").stat().st_size > 1000


async def test_trials_in_flight_are_observed_with_one_list_call_a_pass(
    ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    backend = fake(clock)
    backend.training_polls = 20  # long trials: many passes with 6 in flight
    await run_it(sweep_experiment(tmp_path, trials=6, parallel=6), ledger, backend, clock)
    passes = backend.calls["list_training_jobs"]
    assert passes >= 20
    # A Describe only when a trial's status changed (created, finished): never one a trial a pass.
    assert backend.calls["describe_training_job"] <= 6 * 2


async def test_a_failed_trial_does_not_stop_the_sweep(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = fake(clock)

    class FailTrial2(SilentReporter):
        def status(self, resource: Resource) -> None:
            if resource.name.endswith("-t2") and resource.status == Status.IN_PROGRESS:
                job = backend.resources[(Kind.TRAINING_JOB, resource.name)]
                job.status, job.failure_reason = Status.FAILED, "AlgorithmError: out of memory"

    outcome = await run_it(sweep_experiment(tmp_path, trials=4, parallel=2), ledger, backend, clock, FailTrial2())
    assert outcome.run.status == "succeeded"
    trials = await trials_in(ledger, outcome.run.id)
    assert [t.resource.status for t in trials] == ["Completed", "Failed", "Completed", "Completed"]
    assert trials[1].resource.failure_reason == "AlgorithmError: out of memory"


async def test_every_trial_failing_fails_the_run(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = FakeBackend(now=clock.now, training_outcome="Failed")
    with pytest.raises(RunFailed, match=r"every trial of the sweep failed \(3 of 3\); trial 1: Failed: AlgorithmError"):
        await run_it(sweep_experiment(tmp_path, trials=3, parallel=2), ledger, backend, clock)
    assert backend.calls["create_endpoint"] == 0


async def test_capacity_errors_make_trials_wait_not_fail(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = fake(clock)
    backend.training_capacity = 1
    steps: list[str] = []

    class Steps(SilentReporter):
        def step(self, message: str) -> None:
            steps.append(message)

    outcome = await run_it(sweep_experiment(tmp_path, trials=4, parallel=3), ledger, backend, clock, Steps())
    assert outcome.run.status == "succeeded" and backend.peak_training == 1
    assert all(t.resource.status == Status.COMPLETED for t in await trials_in(ledger, outcome.run.id))
    assert any("waits for capacity" in s and "ResourceLimitExceeded" in s for s in steps)


@pytest.mark.parametrize("strategy", ["random", "grid"])
@pytest.mark.parametrize("kill_at", [1, 5, 13])
async def test_kill_and_resume_gives_the_same_trials_and_best(
    ledger: Ledger, clock: FakeClock, tmp_path: Path, strategy: str, kill_at: int
) -> None:
    template = GRID if strategy == "grid" else SWEEP
    x = sweep_experiment(tmp_path, strategy, trials=6, parallel=3, template=template)
    backend = fake(clock)
    whole = await run_it(x, ledger, backend, clock)
    expected = [(t.number, t.params) for t in await trials_in(ledger, whole.run.id)]
    with pytest.raises(Killed):
        await run_it(x, ledger, backend, clock, KillAfter(kill_at))
    resumed = await run_it(x, ledger, backend, clock)
    assert resumed.resumed and resumed.run.number == 2
    trials = await trials_in(ledger, resumed.run.id)
    assert [(t.number, t.params) for t in trials] == expected
    created = [n for n in backend.history if n == "create_training_job"]
    assert len(created) == 12  # six for each run: no trial made twice
    best_whole = best_of(await trials_in(ledger, whole.run.id))
    best_resumed = best_of(trials)
    assert best_whole is not None and best_resumed is not None and best_whole.number == best_resumed.number
    assert not [r for r in backend.resources.values() if r.kind is Kind.TRAINING_JOB and r.status == "InProgress"]


async def test_a_grid_stops_at_its_size(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    outcome = await run_it(sweep_experiment(tmp_path, "grid", trials=50, parallel=4, template=GRID),
                           ledger, fake(clock), clock)
    trials = await trials_in(ledger, outcome.run.id)
    assert len(trials) == 2 * 3 * 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 18


async def test_tpe_resumes_with_the_recorded_trials(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    x = sweep_experiment(tmp_path, "tpe", trials=6, parallel=2)
    backend = fake(clock)
    with pytest.raises(Killed):
        await run_it(x, ledger, backend, clock, KillAfter(6))
    exp = await ledger.experiment("boston-xgboost")
    assert exp is not None
    run = await ledger.latest_run(exp.id)
    assert run is not None
    before = [(t.number, t.params) for t in await trials_in(ledger, run.id)]
    outcome = await run_it(x, ledger, backend, clock)
    after = [(t.number, t.params) for t in await trials_in(ledger, outcome.run.id)]
    assert after[: len(before)] == before and len(after) == 6
    assert backend.calls["create_training_job"] == 6


async def test_status_shows_the_trials_and_the_sweep_cost(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    backend = fake(clock)
    await run_it(sweep_experiment(tmp_path, trials=3, parallel=3), ledger, backend, clock)
    view = await status_view(ledger, clock.now())
    [exp] = view["experiments"]
    sweep = exp["sweep"]
    assert sweep["objective"] == "validation:rmse" and sweep["direction"] == "minimize"
    assert [t["number"] for t in sweep["trials"]] == [1, 2, 3]
    assert sum(t["best"] for t in sweep["trials"]) == 1
    assert set(sweep["trials"][0]) >= {"params", "objective", "status", "billed_s", "cost_usd"}
    assert sweep["cost_usd"] == 0.0  # the runs are recorded as local: free
    lines = render(view, 80)
    assert all(len(line) <= 80 for line in lines)
    assert any(line.startswith("sweep: 3 trials · minimize validation:rmse · best trial") for line in lines)
    best = sweep["best_trial"]
    assert any(line.strip().startswith(f"{best}* eta=") for line in lines)
    assert not any(line.startswith("job ") for line in lines)  # the trials' jobs are in the trials table only


@pytest.mark.parametrize(("body", "message"), [
    ('strategy = "bayes"', r"sweep.strategy: expected 'random', 'grid' or 'tpe'"),
    ("max_parallel = 0", r"sweep.max_parallel: expected an integer from 1 to 100"),
    ('objective = "validation:mae"', r"sweep.objective: the training jobs emit validation:rmse, not 'validation:mae'"),
    ('objective = "test:rmse"', r"sweep.objective: expected '<channel>:<metric>'"),
    ("eta = { low = 0.05, high = 2.0 }", r"sweep.parameters.eta: the value 2.0 is refused by the algorithm; "
                                         r"expected a number in \[0, 1\]"),
    ("max_depth = { low = 3.0, high = 10.0 }", r"sweep.parameters.max_depth: .* set type = 'int'"),
    ("depth = { low = 3, high = 10 }", r"sweep.parameters.depth: unknown key"),
    ("eta = { low = 0.5, high = 0.1 }", r"sweep.parameters.eta: expected low <= high"),
    ("eta = { low = 0.1, high = 0.5, steps = 2 }", r"sweep.parameters.eta.steps: unknown key"),
    ("subsample = []", r"sweep.parameters.subsample: expected a non-empty list"),
    ("objective = 7", r"sweep.objective: expected a string"),
    ("eta = { low = 0.1, high = 0.5, step = nan }", r"sweep.parameters.eta.step: expected a positive finite number"),
    ("max_depth = { low = 3, high = 10, step = inf }", r"sweep.parameters.max_depth.step: expected a positive finite"),
])
def test_sweep_settings_are_checked_before_anything_runs(tmp_path: Path, body: str, message: str) -> None:
    key = body.split(" ", 1)[0]
    lines = [line for line in SWEEP.format(strategy="tpe", trials=4, parallel=2).splitlines()
             if not line.startswith(f"{key} ")]
    at = lines.index("[sweep.parameters]") + (1 if "{" in body or "[" in body.split("=", 1)[1] else 0)
    lines.insert(at if at > lines.index("[sweep.parameters]") else 2, body)
    path = write_experiment(tmp_path / "exp.toml")
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


@pytest.mark.parametrize("step", ["1e-12", "1e-320"])
def test_a_grid_too_large_is_refused_without_being_made(tmp_path: Path, step: str) -> None:
    """Counted, not built: a tiny step would otherwise fill memory before the size check."""
    template = GRID.replace("eta = [0.1, 0.3]", f"eta = {{{{ low = 0.1, high = 0.5, step = {step} }}}}")
    with pytest.raises(ConfigError, match=r"sweep.parameters: expected a grid of at most 10,000 points, not "):
        sweep_experiment(tmp_path, "grid", template=template)


def test_a_grid_over_a_float_range_needs_a_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep.parameters.eta.step: missing; a grid over a float range"):
        sweep_experiment(tmp_path, "grid")


def test_a_changed_sweep_changes_the_digest(tmp_path: Path) -> None:
    a = sweep_experiment(tmp_path, trials=8)
    b = sweep_experiment(tmp_path, trials=9)
    assert a.digest != b.digest and a.sweep is not None and a.sweep.names == ["eta", "max_depth", "subsample"]


async def test_jobman_stop_ends_a_running_sweep(ledger: Ledger, clock: FakeClock, tmp_path: Path) -> None:
    from jobman.config import AwsConfig
    from jobman.fleet import stop_experiment

    backend = fake(clock)
    backend.training_polls = 10

    async def opener(name: str, aws: AwsConfig) -> FakeBackend:
        return backend

    class StopOnThirdPass(FakeClock):
        passes = 0

        async def sleep(self, seconds: float) -> None:
            await clock.sleep(seconds)
            self.passes += 1
            if self.passes == 3:
                await stop_experiment(ledger, opener, clock, "boston-xgboost")

        def now(self) -> Any:
            return clock.now()

    with pytest.raises(RunFailed, match="run 1 was stopped while its sweep ran"):
        await run_it(sweep_experiment(tmp_path, trials=8, parallel=3), ledger, backend, StopOnThirdPass())
    exp = await ledger.experiment("boston-xgboost")
    run = await ledger.latest_run(exp.id)  # type: ignore[union-attr]
    assert run is not None and run.status == "stopped"  # not overwritten by the sweep's own failure
    trials = await trials_in(ledger, run.id)
    assert len(trials) == 3 and all(t.resource.status == Status.STOPPED for t in trials)
    assert backend.calls["create_training_job"] == 3


@pytest.mark.parametrize(("body", "shown"), [
    (f'strategy = "{"x" * 1_000_000}"', "(1,000,000 characters)"),
    (f'subsample = ["{"y" * 1_000_000}", "{"y" * 1_000_000}"]', "characters)"),
    (f"{'z' * 100_000} = [1, 2]", "(100,017 characters)"),
])
def test_a_huge_sweep_value_or_name_is_cut_in_the_message(tmp_path: Path, body: str, shown: str) -> None:
    """As elsewhere in the file: one readable line, however large the value."""
    key = body.split(" ", 1)[0]
    lines = [line for line in SWEEP.format(strategy="tpe", trials=4, parallel=2).splitlines()
             if not line.startswith(f"{key} ")]
    lines.insert(2 if key == "strategy" else len(lines), body)
    path = write_experiment(tmp_path / "exp.toml")
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as refused:
        load_experiment(path)
    text = str(refused.value)
    assert shown in text and len(text) < len(str(path)) + 250, text[:300]
