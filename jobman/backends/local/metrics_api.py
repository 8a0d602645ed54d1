"""CloudWatch metrics for SageMaker training metrics: GetMetricStatistics and ListMetrics.

SageMaker scrapes each training job's metric log lines into namespace `/aws/sagemaker/TrainingJobs`
with dimension `TrainingJobName` (the SDK's `TrainingJobAnalytics` asks for it) or `Host`
(`<job>/algo-1`). The training worker records every round's values in its `metrics.jsonl`; the
answers group them into Period buckets exactly as CloudWatch does (rounds that run within one period
come back as one datapoint, as on SageMaker). Other namespaces hold no data here: they answer empty,
as CloudWatch does for a metric it has never seen.

botocore speaks one of three protocols to CloudWatch depending on its version, and all three are served:
Query (form-encoded, XML answers; botocore up to 1.40), AWS JSON 1.0 (`X-Amz-Target:
GraniteServiceVersion20100801.<Op>`) and Smithy RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/
operation/<Op>`; botocore 1.42 on, which the SageMaker SDK pulls in). The operations work on the JSON shapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from botocore.model import ListShape, Shape, StructureShape

from jobman.backends.local import arns, cbor, validation, wire
from jobman.backends.local.store import Layout, RecordStore
from jobman.backends.local.training_state import JobFiles
from jobman.backends.local.wire import AwsError, XmlNode

XMLNS = "http://monitoring.amazonaws.com/doc/2010-08-01/"
TARGET_PREFIX = "GraniteServiceVersion20100801"
NAMESPACE = "/aws/sagemaker/TrainingJobs"
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MAX_DATAPOINTS = 1440
MAX_BODY = 1 << 20
HOST_SUFFIX = "/algo-1"
# Query error code -> the JSON/CBOR error shape botocore maps it to (the model's awsQueryError codes).
_SHAPES = {
    "InvalidParameterValue": "InvalidParameterValueException",
    "InvalidParameterCombination": "InvalidParameterCombinationException",
    "MissingParameter": "MissingRequiredParameterException",
}


def _invalid(message: str, code: str = "InvalidParameterValue") -> AwsError:
    return AwsError(code, message)


def _missing(name: str) -> AwsError:
    return AwsError("MissingParameter", f"The parameter {name} is required.")


class MetricsApi:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    async def handle(self, request: web.Request, scope: wire.Scope) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if request.headers.get("smithy-protocol") == "rpc-v2-cbor":
            return await self._handle_structured(request, scope, request.path.rpartition("/operation/")[2], "cbor")
        if target:
            return await self._handle_structured(request, scope, target.partition(".")[2], "json")
        return await self._handle_query(request, scope)

    def _operations(self) -> dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]]:
        return {"GetMetricStatistics": self.get_metric_statistics, "ListMetrics": self.list_metrics}

    def _operation(self, name: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
        operation = self._operations().get(name)
        if operation is None:
            raise AwsError("InvalidAction", f"The local backend does not implement CloudWatch {name or '(none)'}.")
        return operation

    # --- the three wire protocols ---

    async def _handle_query(self, request: web.Request, scope: wire.Scope) -> web.Response:
        try:
            raw = await _read(request)
            form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            params = {**request.rel_url.query, **{k: v[0] for k, v in form.items()}}
            action = params.get("Action", "")
            operation = self._operation(action)
            body = _checked(action, _typed(_input_shape(action), _from_query(params)))
            result = operation(wire.check_region(scope.region), body)
            node = XmlNode().add(f"{action}Result", _to_xml(result))
            node.add("ResponseMetadata", XmlNode().add("RequestId", wire.request_id()))
            return wire.xml_response(wire.to_xml(f"{action}Response", node, xmlns=XMLNS))
        except AwsError as exc:
            return wire.query_error(exc, xmlns=XMLNS)

    async def _handle_structured(self, request: web.Request, scope: wire.Scope, name: str,
                                 kind: str) -> web.Response:
        try:
            raw = await _read(request)
            try:
                body = cbor.loads(raw) if kind == "cbor" else (json.loads(raw) if raw.strip() else {})
            except (ValueError, RecursionError) as exc:
                raise AwsError("SerializationException", f"The request body could not be read: {exc}") from None
            if not isinstance(body, dict):
                raise AwsError("SerializationException", "The request body must be an object.")
            operation = self._operation(name)
            result = operation(wire.check_region(scope.region), _checked(name, body))
            return _structured_response(200, _timestamps(result, kind), kind, {})
        except AwsError as exc:
            shape = _SHAPES.get(exc.code, exc.code)
            payload = {"__type": f"com.amazonaws.cloudwatch#{shape}", "message": exc.message}
            side = "Sender" if exc.status < 500 else "Receiver"
            return _structured_response(exc.status, payload, kind, {"x-amzn-query-error": f"{exc.code};{side}"})

    # --- the data ---

    def _job_rounds(self, region: str, name: str) -> list[tuple[float, dict[str, float]]]:
        try:
            arns.check_name(name, "dimensions.member.value")
        except AwsError:
            return []  # not a job name: no such metric, which CloudWatch answers with no datapoints
        return JobFiles(self.layout.training_dir(region, name)).read_rounds()

    def _job_names(self, region: str) -> list[str]:
        records = RecordStore(self.layout.resources(region, arns.TRAINING_JOB)).all()
        return sorted(r["TrainingJobName"] for r in records)

    # --- the operations, on the JSON shapes (timestamps as epoch seconds) ---

    def get_metric_statistics(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        namespace = _text(body, "Namespace")
        metric = _text(body, "MetricName")
        start = wire.parse_timestamp(_present(body, "StartTime"), "StartTime")
        end = wire.parse_timestamp(_present(body, "EndTime"), "EndTime")
        period = _period(_present(body, "Period"))
        statistics = list(body.get("Statistics") or [])
        extended = list(body.get("ExtendedStatistics") or [])
        if not statistics and not extended:
            raise _invalid("Must specify either Statistics or ExtendedStatistics.", "InvalidParameterCombination")
        for stat in statistics:
            if stat not in STATISTICS:
                raise _invalid(f"The parameter Statistics.member contains an invalid value {stat!r}.")
        percentiles = [(name, _percentile(name)) for name in extended]
        if start >= end:
            raise _invalid("The parameter StartTime must be less than the parameter EndTime.")
        if (end - start) / period > MAX_DATAPOINTS:
            raise _invalid(f"You have requested up to {math.ceil((end - start) / period)} datapoints, which exceeds "
                           f"the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing "
                           "Period, or decreasing the time range.", "InvalidParameterCombination")
        job = _job_dimension(_dimensions(body, need_values=True))
        buckets: dict[float, list[float]] = {}
        if namespace == NAMESPACE and job is not None and body.get("Unit") in (None, "None"):
            for at, values in self._job_rounds(region, job):
                if metric in values and start <= at < end:
                    buckets.setdefault(math.floor(at / period) * period, []).append(values[metric])
        points = [_datapoint(bucket, buckets[bucket], statistics, percentiles) for bucket in sorted(buckets)]
        return {"Label": metric, "Datapoints": points}

    def list_metrics(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        namespace, wanted = body.get("Namespace"), body.get("MetricName")
        filters = _dimensions(body, need_values=False)
        metrics = []
        if namespace in (None, NAMESPACE):
            for name in self._job_names(region):
                rounds = self._job_rounds(region, name)
                for metric in sorted(rounds[-1][1]) if rounds else []:
                    dimensions = {"TrainingJobName": name}
                    if wanted in (None, metric) and _matches(dimensions, filters):
                        metrics.append({"Namespace": NAMESPACE, "MetricName": metric,
                                        "Dimensions": [{"Name": "TrainingJobName", "Value": name}]})
        return {"Metrics": metrics}


# --- request parsing ---


async def _read(request: web.Request) -> bytes:
    return await wire.read_body(request, MAX_BODY, AwsError("RequestEntityTooLarge", "Request is too large.", 413))


def _input_shape(operation: str) -> Shape | None:
    return validation.service_model("cloudwatch").operation_model(operation).input_shape


def _checked(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` checked against botocore's model of the operation, as CloudWatch's front end checks it.

    A missing required member is CloudWatch's MissingParameter; any other failed constraint (type, length,
    enum, range) its InvalidParameterValue. Only the members the model defines are kept.
    """
    shape = _input_shape(operation)
    if isinstance(shape, StructureShape):
        for name in shape.required_members:
            if body.get(name) is None:
                raise _missing(name)
    return validation.checked("cloudwatch", operation, body, code="InvalidParameterValue")


def _typed(shape: Shape | None, value: Any) -> Any:
    """A Query request's string values as the types `shape` declares, so the model's checks apply.

    A value that does not parse is left a string: the check then refuses it as not of the member's type.
    Query timestamps are ISO 8601, which the check reads as they are; epoch seconds are taken as numbers.
    """
    if shape is None:
        return value
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return {k: _typed(shape.members.get(k), v) for k, v in value.items()}
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_typed(shape.member, item) for item in value]
    if not isinstance(value, str):
        return value
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(value.strip()) if value.strip().lstrip("+-").isdigit() else value
        if kind in ("float", "double"):
            number = float(value)
            return number if math.isfinite(number) else value
        if kind == "timestamp" and value.strip().replace(".", "", 1).isdigit():
            return float(value)
    except (ValueError, OverflowError):
        return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _present(body: dict[str, Any], name: str) -> Any:
    if body.get(name) in (None, ""):
        raise _missing(name)
    return body[name]


def _text(body: dict[str, Any], name: str) -> str:
    value = _present(body, name)
    if not isinstance(value, str):
        raise _invalid(f"The parameter {name} must be a string.")
    return value


def _from_query(params: dict[str, str]) -> dict[str, Any]:
    """A Query request's flat `Name.member.N[.Field]` parameters as the operation's JSON shape."""
    body: dict[str, Any] = {k: v for k, v in params.items() if "." not in k and k not in ("Action", "Version")}
    for key in ("Statistics", "ExtendedStatistics"):
        members = _indexed(params, f"{key}.member.")
        if members:
            body[key] = [value for _, value in sorted(members.items())]
    names, values = _indexed(params, "Dimensions.member.", ".Name"), _indexed(params, "Dimensions.member.", ".Value")
    if names:
        body["Dimensions"] = [
            {"Name": names[i], **({"Value": values[i]} if i in values else {})} for i in sorted(names)
        ]
    return body


def _indexed(params: dict[str, str], prefix: str, suffix: str = "") -> dict[int, str]:
    found = {}
    for key, value in params.items():
        if key.startswith(prefix) and key.endswith(suffix):
            index = key[len(prefix):len(key) - len(suffix)]
            if index.isascii() and index.isdigit():  # not "²", which isdigit() accepts and int() refuses
                found[int(index)] = value
    return found


def _dimensions(body: dict[str, Any], *, need_values: bool) -> dict[str, str | None]:
    dims: dict[str, str | None] = {}
    for item in body.get("Dimensions") or []:
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            raise _invalid("Each dimension needs a Name.")
        if need_values and not isinstance(item.get("Value"), str):
            raise _missing(f"a value for the dimension {item['Name']}")
        dims[item["Name"]] = item.get("Value")
    return dims


def _matches(dimensions: dict[str, str], filters: dict[str, str | None]) -> bool:
    return all(name in dimensions and value in (None, dimensions[name]) for name, value in filters.items())


def _job_dimension(dims: dict[str, str | None]) -> str | None:
    """The training job a metric's dimensions name; CloudWatch matches the dimension set exactly."""
    if set(dims) == {"TrainingJobName"}:
        return dims["TrainingJobName"]
    host = dims.get("Host")
    if set(dims) == {"Host"} and host is not None and host.endswith(HOST_SUFFIX):
        return host.removesuffix(HOST_SUFFIX)
    return None


def _period(value: Any) -> int:
    try:
        period = int(value)
    except (TypeError, ValueError):
        raise _invalid(f"The parameter Period must be an integer; got {value!r}.") from None
    if period < 1 or (period not in (1, 5, 10, 30) and period % 60):
        raise _invalid("The parameter Period must be 1, 5, 10, 30 or a multiple of 60.")
    return period


def _percentile(name: Any) -> float:
    try:
        value = float(name[1:]) if isinstance(name, str) and name.startswith("p") else -1.0
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise _invalid(f"The parameter ExtendedStatistics.member contains an invalid value {name!r} "
                       "(the local backend supports percentiles pNN only).")
    return value


# --- answers ---


def _datapoint(bucket: float, values: list[float], statistics: list[str],
               percentiles: list[tuple[str, float]]) -> dict[str, Any]:
    computed = {
        "SampleCount": float(len(values)), "Average": sum(values) / len(values), "Sum": sum(values),
        "Minimum": min(values), "Maximum": max(values),
    }
    point: dict[str, Any] = {"Timestamp": bucket}
    point.update({stat: computed[stat] for stat in STATISTICS if stat in statistics})
    if percentiles:
        ranked = sorted(values)
        point["ExtendedStatistics"] = {
            name: ranked[max(1, math.ceil(pct / 100 * len(ranked))) - 1] for name, pct in percentiles  # nearest rank
        }
    point["Unit"] = "None"
    return point


def _to_xml(result: dict[str, Any]) -> XmlNode:
    node = XmlNode()
    for key, value in result.items():
        if isinstance(value, list):
            members = XmlNode()
            for item in value:
                members.add("member", _to_xml(item) if isinstance(item, dict) else item)
            node.add(key, members)
        elif key == "ExtendedStatistics":
            entries = XmlNode()
            for name, number in value.items():
                entries.add("entry", XmlNode().add("key", name).add("value", repr(number)))
            node.add(key, entries)
        elif key == "Timestamp":
            node.add(key, datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        else:
            node.add(key, repr(value) if isinstance(value, float) else value)
    return node


def _timestamps(result: dict[str, Any], kind: str) -> dict[str, Any]:
    """CBOR carries timestamps as tag 1; JSON as epoch-second numbers, which they already are."""
    if kind != "cbor":
        return result
    points = [{**p, "Timestamp": cbor.Timestamp(p["Timestamp"])} for p in result.get("Datapoints", [])]
    return {**result, "Datapoints": points} if "Datapoints" in result else result


def _structured_response(status: int, payload: dict[str, Any], kind: str, headers: dict[str, str]) -> web.Response:
    if kind == "cbor":
        return web.Response(status=status, body=cbor.dumps(payload), headers={
            "Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor",
            "x-amzn-requestid": wire.request_id(), **headers})
    return web.Response(status=status, body=json.dumps(payload).encode(), headers={
        "Content-Type": "application/x-amz-json-1.0", "x-amzn-requestid": wire.request_id(), **headers})
