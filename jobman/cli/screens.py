"""`jobman status` as a screen: readable in 80 columns and in a pipe, with everything under `--wide`.

Each experiment gets a header line and a borderless table. In the narrow form, kinds have short names,
names lose the experiment's own prefix (the header says it; the run and kind are what differ), and
columns that carry nothing for this experiment are dropped (billing on a free backend, "desired" when
everything is wanted as it is). The name column takes what the others leave and is shortened from the
left, never a header or a status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rich.console import OverflowMethod
from rich.table import Table
from rich.text import Text

from jobman.cost import FREE_BACKENDS
from jobman.durations import format_duration
from jobman.trials import params_text

STATUS_STYLE = {
    "terminal-ok": "green", "terminal-failed": "red", "pending": "yellow", "transient": "yellow",
    "gone": "dim", "unknown": "magenta",
}
SHORT_KIND = {"training_job": "job", "transform_job": "transform", "model": "model", "endpoint_config": "config",
              "endpoint": "endpoint", "schedule": "ttl"}
MIN_NAME = 16  # below this a name says too little; the table may then pass the width
GAP = 1  # space between columns
DELETING_MARK = "*"  # beside the status of a resource being deleted; explained under the table


def usd(usd: float | None) -> str:
    return "unknown" if usd is None else f"${usd:,.4f}"


def experiment_title(exp: dict[str, Any]) -> str:
    metrics = exp.get("metrics") or {}
    parts = [exp["name"], f"run {exp['run']}", exp["status"], f"{exp['backend']}/{exp['region']}"]
    who = exp.get("started_by") or {}
    if who.get("user"):
        parts.append(f"by {who['user']}@{who['host']}" if who.get("host") else f"by {who['user']}")
    if "rmse" in metrics:
        parts.append(f"RMSE {metrics['rmse']:.3f}")
    if exp["backend"] not in FREE_BACKENDS:
        parts.append(f"cost {usd(exp['cost_usd'])}")
    return " · ".join(parts)


def _ttl(r: dict[str, Any]) -> str:
    if r["ttl_expired"]:
        return "expired"
    return "-" if r["ttl_left_s"] is None else format_duration(r["ttl_left_s"])


def _being_deleted(r: dict[str, Any]) -> bool:
    return bool(r["desired"] == "absent" and r["meaning"] != "gone")


def _status(r: dict[str, Any], show_desired: bool) -> Text:
    mark = DELETING_MARK if not show_desired and _being_deleted(r) else ""
    return Text(r["status"] + mark, style=STATUS_STYLE.get(r["meaning"], ""))


def _short_name(name: str, experiment: str) -> str:
    prefix = f"{experiment}-"
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def _fit_left(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def experiment_table(exp: dict[str, Any], width: int, *, wide: bool) -> Table:
    resources = exp["resources"]
    free = exp["backend"] in FREE_BACKENDS
    show_desired = wide  # narrow: a resource being deleted says so beside its status
    columns: dict[str, list[str | Text]] = {
        "kind": [r["kind"] if wide else SHORT_KIND.get(r["kind"], r["kind"]) for r in resources],
        "name": [r["name"] if wide else _short_name(r["name"], exp["name"]) for r in resources],
    }
    if show_desired:
        columns["desired"] = [r["desired"] for r in resources]
    columns["status"] = [_status(r, show_desired) for r in resources]
    columns["age"] = [format_duration(r["age_s"]) for r in resources]
    columns["TTL"] = [_ttl(r) for r in resources]
    billed = [r for r in resources if r["billed_s"] is not None]
    if wide or (billed and not free):
        columns["billed"] = ["-" if r["billed_s"] is None else format_duration(r["billed_s"]) for r in resources]
        columns["cost"] = ["-" if r["billed_s"] is None else ("free" if free else usd(r["cost_usd"]))
                           for r in resources]
    if wide:
        columns["ARN"] = [r["arn"] or "-" for r in resources]

    # A name is shortened from the left: its end (run, kind) is what tells the rows apart.
    return _fitted_table(columns, width, wide=wide, flexible="name", right=("age", "billed", "cost"),
                         shorten=_fit_left, overflow="fold")


def sweep_title(exp: dict[str, Any]) -> str:
    sweep = exp["sweep"]
    parts = [f"sweep: {len(sweep['trials'])} trials", f"{sweep['direction']} {sweep['objective']}"]
    if sweep["best_trial"] is not None:
        parts.append(f"best trial {sweep['best_trial']}")
    if exp["backend"] not in FREE_BACKENDS:
        parts.append(f"cost {usd(sweep['cost_usd'])}")
    return " · ".join(parts)


def sweep_table(exp: dict[str, Any], width: int, *, wide: bool) -> Table:
    """One row a trial: its number (the best marked), parameters, objective, status, billed time and cost."""
    trials = exp["sweep"]["trials"]
    free = exp["backend"] in FREE_BACKENDS
    columns: dict[str, list[str | Text]] = {
        "trial": [f"{t['number']}{'*' if t['best'] else ''}" for t in trials],
        "params": [params_text(t["params"]) for t in trials],
        "objective": ["-" if t["objective"] is None else f"{t['objective']:.5g}" for t in trials],
        "status": [Text(t["status"], style=STATUS_STYLE.get(t["meaning"], "")) for t in trials],
        "billed": ["-" if t["billed_s"] is None else format_duration(t["billed_s"]) for t in trials],
    }
    if wide or not free:
        columns["cost"] = ["free" if free else usd(t["cost_usd"]) for t in trials]
    # Parameters are cut at the end (an ellipsis), and wrap in the wide form rather than run on.
    return _fitted_table(columns, width, wide=wide, flexible="params", right=("trial", "objective", "billed", "cost"),
                         overflow="ellipsis", wrap_when_wide=True)


def _fitted_table(
    columns: dict[str, list[str | Text]], width: int, *, wide: bool, flexible: str, right: tuple[str, ...],
    overflow: OverflowMethod, shorten: Callable[[str, int], str] | None = None, wrap_when_wide: bool = False,
) -> Table:
    """The columns as a borderless table, each as wide as its widest cell. Narrow, `flexible` gets what the others
    leave of `width` (at least MIN_NAME), its cells made to fit by `shorten` or by rich's `overflow`; wide,
    nothing is cut, and cells wrap only with `wrap_when_wide`."""
    widths = {name: max([len(name), *(len(str(v)) for v in values)]) for name, values in columns.items()}
    if not wide:
        others = sum(w for name, w in widths.items() if name != flexible) + GAP * (len(widths) - 1)
        widths[flexible] = max(min(widths[flexible], width - others), MIN_NAME, len(flexible))
        if shorten is not None:
            columns[flexible] = [shorten(str(v), widths[flexible]) for v in columns[flexible]]
    table = Table(box=None, pad_edge=False, padding=(0, GAP, 0, 0), expand=False, header_style="bold underline")
    for name, w in widths.items():
        table.add_column(name, no_wrap=not (wide and wrap_when_wide), min_width=w, max_width=None if wide else w,
                         overflow=overflow, justify="right" if name in right else "left")
    for row in zip(*columns.values(), strict=True):
        table.add_row(*row)
    return table


def status_screen(view: dict[str, Any], width: int, *, wide: bool = False) -> Iterator[Table | Text | str]:
    """What `jobman status` prints, in order: a table per experiment (and its sweep's trials), then the price
    note. In the narrow form the trials' training jobs appear only in the trials table."""
    for exp in view["experiments"]:
        yield Text(experiment_title(exp), style="bold")
        sweep = exp.get("sweep")
        shown = exp
        if sweep is not None and not wide:
            trial_names = {t["name"] for t in sweep["trials"]}
            shown = {**exp, "resources": [r for r in exp["resources"] if r["name"] not in trial_names]}
        yield experiment_table(shown, width, wide=wide)
        if sweep is not None:
            yield Text(sweep_title(exp), style="bold")
            yield sweep_table(exp, width, wide=wide)
        if not wide and any(_being_deleted(r) for r in exp["resources"]):
            yield f"{DELETING_MARK} being deleted"
    prices = view["prices"]
    source = prices["source"] if wide else "jobman's price table"
    yield f"total estimated cost {usd(view['total_cost_usd'])} · {source}, as of {prices['as_of']}"
