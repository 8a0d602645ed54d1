"""The local EventBridge Scheduler's firing loop: a due one-time schedule calls the local SageMaker API.

`tick()` runs once a second from the server's supervision loop and once as the server starts, so a
schedule that fell due while the server was down fires as soon as it is back. A firing calls the
SageMaker handler in-process (no HTTP), in the schedule's region, with `Target.Input` as the request.

- Success is final. An AwsError below 500 is a final failure: the request is wrong and stays wrong.
- A 5xx or an unexpected exception is retried with exponential backoff (1 s doubling, at most 60 s) while
  the target's RetryPolicy allows: at most MaximumRetryAttempts retries, none later than
  MaximumEventAgeInSeconds after the first attempt (not after the due time, so an overdue schedule
  found at start still gets its attempts).
- After the final outcome, ActionAfterCompletion DELETE deletes the schedule; NONE keeps it, marked
  done, so it never fires again (until UpdateSchedule re-arms it).

Every attempt is logged in the server's log and in CloudWatch Logs group `/aws/scheduler/<group>`,
one stream per schedule. The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobman.backends.local import schedules, validation
from jobman.backends.local.logstore import LogStore
from jobman.backends.local.schedule_store import Key, ScheduleStore
from jobman.backends.local.wire import AwsError

log = logging.getLogger("jobman.local.scheduler")

LOG_GROUP_PREFIX = "/aws/scheduler/"
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
MAX_LOGGED_CHARS = 2000  # of an input or an answer, so one huge request makes no huge log line
Operation = Callable[[str, dict[str, Any]], Any]  # returns a dict or an awaitable of one


def backoff_s(attempt: int) -> float:
    """The wait after failed attempt number `attempt` (1-based)."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(attempt - 1, 16))


class Scheduler:
    def __init__(self, store: ScheduleStore, operations: Mapping[str, Operation], logs_root: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.operations = operations
        self.logs_root = logs_root  # CloudWatch Logs' folder; None logs to the server log only
        self.clock = clock

    async def tick(self) -> int:
        """Make one attempt for every schedule due now; returns how many attempts were made."""
        now = self.clock()
        attempts = 0
        for key in self.store.due(now):
            try:
                attempts += await self._attempt(key, now)
            except Exception:  # a bug: log it, and keep it from firing every second
                log.exception("schedule %s/%s (%s): firing failed", key[1], key[2], key[0])
                self.store.snooze(key, now + BACKOFF_MAX_S)
        return attempts

    async def _attempt(self, key: Key, now: float) -> int:
        region, group, name = key
        record = self.store.get_schedule(region, group, name)
        if record is None:
            self.store.delete_schedule(region, group, name)
            return 0
        wake = schedules.wake_at(record)
        if wake is None or wake > now:  # the index was behind the file
            self.store.track(key, record)
            return 0
        state = dict(record.get("Jobman") or {})
        attempt = int(state.get("Attempts") or 0) + 1
        first = float(state.get("FirstAttemptAt") or now)
        target = record["Target"]
        outcome, detail = await self._call(region, target)

        current = self.store.get_schedule(region, group, name)
        if current is None or (current.get("Jobman") or {}).get("Revision") != state.get("Revision"):
            self._report(key, target, attempt, outcome, detail + " (the schedule was changed or deleted meanwhile)")
            return 1
        if outcome == "retrying":
            policy = {**schedules.DEFAULT_RETRY, **(target.get("RetryPolicy") or {})}
            delay = backoff_s(attempt)
            if attempt <= policy["MaximumRetryAttempts"] and now + delay - first <= policy["MaximumEventAgeInSeconds"]:
                state.update(Attempts=attempt, FirstAttemptAt=first, NextAttemptAt=now + delay, LastError=detail)
                self.store.put_schedule(region, {**current, "Jobman": state})
                self._report(key, target, attempt, outcome, f"{detail}; next attempt in {delay:g} s")
                return 1
            outcome, detail = "failed", f"{detail}; gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
        self._report(key, target, attempt, outcome, detail)
        if current.get("ActionAfterCompletion") == "DELETE":
            self.store.delete_schedule(region, group, name)
        else:
            state.update(Attempts=attempt, FirstAttemptAt=first, NextAttemptAt=None, Outcome=outcome,
                         CompletedAt=now, LastError=detail if outcome == "failed" else None)
            self.store.put_schedule(region, {**current, "Jobman": state})
        return 1

    async def _call(self, region: str, target: dict[str, Any]) -> tuple[str, str]:
        """("succeeded" | "failed" | "retrying", what happened)."""
        try:
            operation = schedules.target_operation(target["Arn"], schedules.firable(self.operations))
            # the target's input is a SageMaker request: checked against the model as one sent to the API is
            request = validation.checked("sagemaker", operation, _request(target.get("Input")))
            answer = self.operations[operation](region, request)
            if inspect.isawaitable(answer):
                answer = await answer
        except AwsError as exc:
            return ("failed" if exc.status < 500 else "retrying"), f"{exc.code} ({exc.status}): {exc.message}"
        except Exception as exc:
            log.debug("schedule target raised", exc_info=True)
            return "retrying", f"{type(exc).__name__}: {exc}"
        return "succeeded", _cut(json.dumps(answer, default=str))

    def _report(self, key: Key, target: dict[str, Any], attempt: int, outcome: str, detail: str) -> None:
        region, group, name = key
        action = target["Arn"].rsplit(":", 2)[-2:]
        event = {"schedule": name, "group": group, "region": region, "action": ":".join(action),
                 "input": _cut(str(target.get("Input") or "{}")), "attempt": attempt, "outcome": outcome,
                 "detail": detail}
        level = logging.INFO if outcome == "succeeded" else logging.WARNING
        log.log(level, "schedule %s/%s (%s) fired %s %s, attempt %d: %s: %s", group, name, region, event["action"],
                event["input"], attempt, outcome, detail)
        if self.logs_root is None:
            return
        try:
            logs = LogStore(self.logs_root / region)
            logs.create_stream(LOG_GROUP_PREFIX + group, name)
            logs.append(LOG_GROUP_PREFIX + group, name, [json.dumps(event)])
        except OSError:
            log.warning("could not write schedule %s/%s's firing to CloudWatch Logs", group, name, exc_info=True)


def _request(text: str | None) -> dict[str, Any]:
    """The target's input as the API request; anything but a JSON object is the caller's error."""
    try:
        value = json.loads(text) if text else {}
    except (ValueError, RecursionError):
        raise AwsError("ValidationException", "Target.Input is not valid JSON.") from None
    if not isinstance(value, dict):
        raise AwsError("ValidationException", "Target.Input must be a JSON object (the API request).")
    return value


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_CHARS else text[:MAX_LOGGED_CHARS] + "..."
