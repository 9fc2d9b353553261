"""Lens charts stored by value in dashboard panels, in the form Kibana 9.2 exports; one builder per chart type.

A :class:`Chart` holds what an analyst asked for (dataset, bucket columns, metric columns, filter); the
builders (:func:`time_bars`, :func:`time_lines`, :func:`top_bars`, :func:`donut`, :func:`metric`,
:func:`table`) fill it, :func:`lens_panel` renders Kibana's form-based Lens state, and
:func:`es_request` reproduces the Elasticsearch aggregation those Lens columns ask for (so a test can
check that every chart has data to draw). The shapes follow Kibana's own exports (its kbn_archiver
fixtures); ``tests/unit/test_kibana_objects.py`` compares them key by key.

Titles and column labels are English message ids (marked with ``N_`` where they are written, extracted into the
``kibana`` gettext catalogue); the renderers take the reader's translations and write them in that language.
"""

from __future__ import annotations

import gettext
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from secops.es.templates import DATASETS, mappings_for
from secops.i18n import N_, Message, message

ENGLISH = gettext.NullTranslations()

RECORDS = "___records___"  # Lens's source field for a count of documents
# Elasticsearch field type -> Lens dataType of a bucket column on it
LENS_TYPES = {"keyword": "string", "ip": "ip", "long": "number", "float": "number", "boolean": "boolean",
              "date": "date"}
NUMBERS = {"long", "float"}
METRIC_AGGS = {"sum": "sum", "max": "max", "min": "min", "average": "avg", "unique_count": "cardinality"}


def lens_id(*parts: str) -> str:
    """Deterministic UUID for a layer, column or panel (stable NDJSON between builds)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "secops:lens:" + ":".join(parts)))


@dataclass(frozen=True)
class Condition:
    """One filter of a chart: ``field`` is one of ``values``, or (with ``op``) a range bound."""

    field: str
    values: tuple[str | int | bool, ...] = ()
    op: str = ""  # "", ">=", "<"

    def kql(self) -> str:
        if self.op:
            return f"{self.field} {self.op} {_kql_value(self.values[0])}"
        inner = " or ".join(_kql_value(v) for v in self.values)
        return f"{self.field} : ({inner})" if len(self.values) > 1 else f"{self.field} : {inner}"

    def es(self) -> dict[str, Any]:
        if self.op:
            return {"range": {self.field: {{">=": "gte", "<": "lt", ">": "gt", "<=": "lte"}[self.op]: self.values[0]}}}
        return {"terms": {self.field: list(self.values)}}


def _kql_value(v: str | int | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v) if v != "now" else "now"


@dataclass(frozen=True)
class Column:
    """A form-based Lens column: a bucket (date_histogram, terms) or a metric (count, sum, max, ...)."""

    id: str
    operation: str
    source_field: str
    label: Message
    size: int = 0  # terms only
    order_by: str = ""  # terms only: the metric column that ranks the buckets

    @property
    def bucketed(self) -> bool:
        return self.operation in ("date_histogram", "terms")


@dataclass
class Chart:
    """One Lens chart: its dataset, columns in Lens's columnOrder (buckets first), and filter."""

    title: str
    dataset: str
    visualization_type: str  # lnsXY, lnsPie, lnsMetric, lnsDatatable
    series_type: str = ""  # lnsXY: bar_stacked, line, bar_horizontal
    buckets: list[Column] = field(default_factory=list)
    metrics: list[Column] = field(default_factory=list)
    where: tuple[Condition, ...] = ()

    @property
    def layer_id(self) -> str:
        return lens_id(self.dataset, self.title, "layer")

    def columns(self) -> list[Column]:
        return self.buckets + self.metrics

    def kql(self) -> str:
        return " and ".join(c.kql() for c in self.where)


# -- columns -------------------------------------------------------------------------------------------------
def _col(chart_key: str, role: str, operation: str, source: str, label: Message, **kw: Any) -> Column:
    return Column(lens_id(chart_key, role), operation, source, label, **kw)


# Lens's default labels of a metric column, by operation (the field name is not translated)
MEASURE_LABELS = {"sum": N_("Sum of %(field)s"), "max": N_("Maximum of %(field)s"),
                  "min": N_("Minimum of %(field)s"), "average": N_("Average of %(field)s"),
                  "unique_count": N_("Unique count of %(field)s")}


def count(key: str) -> Column:
    return _col(key, "count", "count", RECORDS, message(N_("Count of records")))


def measure(key: str, operation: str, source: str, label: str = "") -> Column:
    """A metric column; ``label`` is an English message id (marked with ``N_`` by the caller)."""
    text = message(label) if label else message(MEASURE_LABELS[operation], field=source)
    return _col(key, f"{operation}:{source}", operation, source, text)


def over_time(key: str) -> Column:
    return _col(key, "time", "date_histogram", "@timestamp", message("@timestamp"))  # a field name: as is


def top(key: str, source: str, size: int, order_by: Column) -> Column:
    return _col(key, f"terms:{source}", "terms", source,
                message(N_("Top %(size)s values of %(field)s"), size=size, field=source), size=size,
                order_by=order_by.id)


# -- one builder per chart type ----------------------------------------------------------------------------
def time_bars(title: str, dataset: str, breakdown: str = "", size: int = 5,
              where: tuple[Condition, ...] = ()) -> Chart:
    """Stacked bars of documents per time bucket, optionally split by the top values of ``breakdown``."""
    key = f"{dataset}:{title}"
    n = count(key)
    buckets = [over_time(key)] + ([top(key, breakdown, size, n)] if breakdown else [])
    return Chart(title, dataset, "lnsXY", "bar_stacked", buckets, [n], where)


def time_lines(title: str, dataset: str, measures: list[tuple[str, str, str]], breakdown: str = "",
               size: int = 5, where: tuple[Condition, ...] = ()) -> Chart:
    """Lines of numeric measures ``(operation, field, label)`` per time bucket, optionally split."""
    key = f"{dataset}:{title}"
    ms = [measure(key, op, src, label) for op, src, label in measures]
    buckets = [over_time(key)] + ([top(key, breakdown, size, ms[0])] if breakdown else [])
    return Chart(title, dataset, "lnsXY", "line", buckets, ms, where)


def top_bars(title: str, dataset: str, source: str, size: int = 10, breakdown: str = "",
             where: tuple[Condition, ...] = ()) -> Chart:
    """Horizontal bars: the ``size`` most frequent values of ``source``, optionally split by ``breakdown``."""
    key = f"{dataset}:{title}"
    n = count(key)
    buckets = [top(key, source, size, n)] + ([top(key, breakdown, 5, n)] if breakdown else [])
    return Chart(title, dataset, "lnsXY", "bar_horizontal_stacked", buckets, [n], where)


def donut(title: str, dataset: str, source: str, size: int = 10, where: tuple[Condition, ...] = ()) -> Chart:
    """Share of documents per value of ``source``."""
    key = f"{dataset}:{title}"
    n = count(key)
    return Chart(title, dataset, "lnsPie", "", [top(key, source, size, n)], [n], where)


def metric(title: str, dataset: str, where: tuple[Condition, ...] = ()) -> Chart:
    """One number: the documents that match."""
    return Chart(title, dataset, "lnsMetric", "", [], [count(f"{dataset}:{title}")], where)


def table(title: str, dataset: str, rows: list[str], size: int = 10, measures: list[tuple[str, str, str]] = (),
          where: tuple[Condition, ...] = ()) -> Chart:
    """Rows = top values of each field in ``rows`` (nested), columns = count plus ``measures``."""
    key = f"{dataset}:{title}"
    n = count(key)
    ms = [n] + [measure(key, op, src, label) for op, src, label in measures]
    return Chart(title, dataset, "lnsDatatable", "", [top(key, r, size, n) for r in rows], ms, where)


# -- Lens state (Kibana's shapes) --------------------------------------------------------------------------
@cache
def field_types(dataset: str) -> dict[str, str]:
    """Dotted field name -> Elasticsearch type, from the dataset's index template."""
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], path: str) -> None:
        for name, spec in props.items():
            dotted = f"{path}{name}"
            if "properties" in spec:
                walk(spec["properties"], dotted + ".")
            elif "type" in spec:
                out[dotted] = spec["type"]

    walk(mappings_for(DATASETS[dataset])["properties"], "")
    return out


def column_state(col: Column, dataset: str, tr: gettext.NullTranslations = ENGLISH) -> dict[str, Any]:
    """The Lens column object Kibana stores for this column (its label in ``tr``'s language)."""
    base: dict[str, Any] = {"label": col.label.render(tr), "operationType": col.operation,
                            "sourceField": col.source_field, "isBucketed": col.bucketed}
    if col.operation == "date_histogram":
        return {**base, "dataType": "date", "scale": "interval",
                "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}
    if col.operation == "terms":
        data_type = LENS_TYPES.get(field_types(dataset).get(col.source_field, ""), "string")
        return {**base, "dataType": data_type, "scale": "ordinal",
                "params": {"size": col.size, "orderBy": {"type": "column", "columnId": col.order_by},
                           "orderDirection": "desc", "otherBucket": True, "missingBucket": False,
                           "parentFormat": {"id": "terms"}, "include": [], "exclude": [], "includeIsRegex": False,
                           "excludeIsRegex": False}}
    custom = {"customLabel": True} if col.operation == "count" else {}
    return {**base, **custom, "dataType": "number", "scale": "ratio", "params": {"emptyAsNull": True}}


def visualization_state(chart: Chart) -> dict[str, Any]:
    layer = chart.layer_id
    ids = [c.id for c in chart.metrics]
    if chart.visualization_type == "lnsXY":
        data_layer: dict[str, Any] = {"layerId": layer, "accessors": ids, "position": "top",
                                      "seriesType": chart.series_type, "showGridlines": False, "layerType": "data",
                                      "xAccessor": chart.buckets[0].id}
        if len(chart.buckets) > 1:
            data_layer["splitAccessor"] = chart.buckets[1].id
        axes = {"x": True, "yLeft": True, "yRight": True}
        return {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
                "fittingFunction": "None", "axisTitlesVisibilitySettings": axes, "tickLabelsVisibilitySettings": axes,
                "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0}, "gridlinesVisibilitySettings": axes,
                "preferredSeriesType": chart.series_type, "layers": [data_layer]}
    if chart.visualization_type == "lnsPie":
        return {"shape": "donut", "layers": [{
            "layerId": layer, "primaryGroups": [c.id for c in chart.buckets], "metrics": ids,
            "numberDisplay": "percent", "categoryDisplay": "default", "legendDisplay": "default",
            "nestedLegend": False, "layerType": "data"}]}
    if chart.visualization_type == "lnsMetric":
        return {"layerId": layer, "layerType": "data", "metricAccessor": ids[0]}
    return {"layerId": layer, "layerType": "data", "columns": [{"columnId": c.id} for c in chart.columns()]}


def lens_attributes(chart: Chart, data_view_id: str, tr: gettext.NullTranslations = ENGLISH) -> dict[str, Any]:
    """The Lens saved-object attributes, as a dashboard stores them by value in ``embeddableConfig``."""
    cols = chart.columns()
    return {
        "title": tr.gettext(chart.title), "visualizationType": chart.visualization_type, "type": "lens",
        "references": [{"type": "index-pattern", "id": data_view_id,
                        "name": f"indexpattern-datasource-layer-{chart.layer_id}"}],
        "state": {
            "visualization": visualization_state(chart),
            "query": {"query": chart.kql(), "language": "kuery"},
            "filters": [],
            "datasourceStates": {"formBased": {"layers": {chart.layer_id: {
                "columns": {c.id: column_state(c, chart.dataset, tr) for c in cols},
                "columnOrder": [c.id for c in cols], "incompleteColumns": {}}}},
                "textBased": {"layers": {}}},
            "internalReferences": [], "adHocDataViews": {},
        },
    }


def lens_panel(chart: Chart, panel_index: str, grid: tuple[int, int, int, int], data_view_id: str,
               tr: gettext.NullTranslations = ENGLISH) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A dashboard panel holding the chart by value, and the references the dashboard must carry for it."""
    x, y, w, h = grid
    panel = {"type": "lens", "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
             "panelIndex": panel_index,
             "embeddableConfig": {"attributes": lens_attributes(chart, data_view_id, tr), "enhancements": {},
                                  "title": tr.gettext(chart.title)}}
    refs = [{"name": f"{panel_index}:indexpattern-datasource-layer-{chart.layer_id}", "type": "index-pattern",
             "id": data_view_id}]
    return panel, refs


# -- the aggregation the chart asks Elasticsearch for ----------------------------------------------------
def es_request(chart: Chart, interval: str = "1h") -> dict[str, Any]:
    """The search body Lens sends for this chart (columns nested in columnOrder), without the time range.

    Lens picks its date-histogram interval from the dashboard's time range; ``interval`` stands in for it.
    """
    metrics: dict[str, Any] = {}
    for m in chart.metrics:
        if m.operation != "count":
            metrics[m.id] = {METRIC_AGGS[m.operation]: {"field": m.source_field}}
    aggs: dict[str, Any] = metrics
    for b in reversed(chart.buckets):
        if b.operation == "date_histogram":
            agg: dict[str, Any] = {"date_histogram": {"field": b.source_field, "fixed_interval": interval,
                                                      "min_doc_count": 1}}
        else:
            order_col = next(m for m in chart.metrics if m.id == b.order_by)
            order = {"_count": "desc"} if order_col.operation == "count" else {order_col.id: "desc"}
            agg = {"terms": {"field": b.source_field, "size": b.size, "order": order}}
        if aggs:
            agg["aggs"] = aggs
        aggs = {b.id: agg}
    query: dict[str, Any] = {"bool": {"filter": [c.es() for c in chart.where]}}
    return {"size": 0, "track_total_hits": True, "query": query, "aggs": aggs}


def buckets_of(chart: Chart, response: dict[str, Any]) -> int:
    """Leaf buckets with documents in the response (for a metric chart: documents matched)."""
    if not chart.buckets:
        return int(response["hits"]["total"]["value"])

    def leaves(aggs: dict[str, Any], level: int) -> int:
        col = chart.buckets[level]
        found = 0
        for bucket in aggs[col.id]["buckets"]:
            if bucket["doc_count"] == 0:
                continue
            if level + 1 < len(chart.buckets):
                found += leaves(bucket, level + 1)
            else:  # a leaf draws only if every measure has a value (Lens: emptyAsNull)
                found += all(bucket[m.id]["value"] is not None for m in chart.metrics if m.operation != "count")
        return found

    return leaves(response["aggregations"], 0) if "aggregations" in response else 0  # no index matched


# -- checks ------------------------------------------------------------------------------------------------------
AGGREGATABLE = {"keyword", "ip", "long", "float", "boolean", "date"}
NEEDS = {"date_histogram": {"date"}, "terms": AGGREGATABLE - {"date"}, "sum": NUMBERS, "average": NUMBERS,
         "max": NUMBERS | {"date"}, "min": NUMBERS | {"date"}, "unique_count": AGGREGATABLE}


def field_problem(operation: str, source: str, dataset: str) -> str:
    """Why ``operation`` cannot run on ``source`` in this dataset's template ('' when it can)."""
    if operation == "count":
        return "" if source == RECORDS else f"count over {source!r} (expected {RECORDS})"
    if operation not in NEEDS:
        return f"operation {operation!r} not supported here"
    kind = field_types(dataset).get(source)
    if kind is None:
        return f"{operation} on {source!r}: no such field in the {dataset} template"
    if kind not in NEEDS[operation]:
        return f"{operation} on {source!r}: it is {kind}, needs {' or '.join(sorted(NEEDS[operation]))}"
    return ""


def column_problems(attributes: dict[str, Any], dataset: str) -> list[str]:
    """Problems of a Lens attributes object's columns against the dataset's index template."""
    problems = []
    layers = attributes.get("state", {}).get("datasourceStates", {}).get("formBased", {}).get("layers", {})
    for layer in layers.values():
        columns = layer.get("columns", {})
        if list(columns) != layer.get("columnOrder"):
            problems.append("columnOrder does not list the columns")
        for cid, col in columns.items():
            why = field_problem(col.get("operationType", ""), col.get("sourceField", ""), dataset)
            if why:
                problems.append(f"column {cid}: {why}")
            elif col.get("operationType") == "terms":
                want = LENS_TYPES[field_types(dataset)[col["sourceField"]]]
                if col.get("dataType") != want:
                    problems.append(f"column {cid}: dataType {col.get('dataType')!r}, the field is {want}")
                if col.get("params", {}).get("orderBy", {}).get("columnId") not in columns:
                    problems.append(f"column {cid}: ordered by a column the layer does not have")
    return problems
