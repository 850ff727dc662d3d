"""The part of LogQL that loki/rules/ uses, read and run over log entries in Python.

No Loki binary can run here, and `promtool check rules` rejects LogQL. This reads the one shape the
log-based alerts have,

    sum by (<labels>) (count_over_time(<selector> <pipeline> [<range>])) > <threshold>

with a stream selector (`=`, `!=`, `=~`, `!~`), line filters (`|=`, `!=`, `|~`, `!~`), a `| json`
parser with explicit `label="field"` parameters, and label filters (`| name op "value"`, string
comparison only), and runs the log query over (labels, structured metadata, line) entries the way
Loki does: label regexes anchored, line regexes not, a line that is not JSON marked `__error__`.
Anything outside this shape is an error here, so a rule that grows past it fails its test instead of
being checked half-way. It is a stand-in for Loki's parser, not a replacement: see docs/logs.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<range>\[\d+[smhd]\])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|[=|><])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}(),])
    """,
    re.VERBOSE,
)
_LABEL_OPS = {"=", "!=", "=~", "!~"}
_LINE_OPS = {"|=", "!=", "|~", "!~"}


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None  # label regexes are anchored, as in Prometheus
        return hit if self.op == "=~" else not hit


@dataclass
class LogQuery:
    selector: list[Matcher]
    line_filters: list[tuple[str, str]] = field(default_factory=list)  # (op, text), in pipeline order
    json_fields: dict[str, str] = field(default_factory=dict)  # label -> JSON field
    label_filters: list[Matcher] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # "line", "json", "label": the order they come in


@dataclass
class MetricRule:
    group_by: list[str]
    query: LogQuery
    range: str
    comparison: str
    threshold: float


@dataclass(frozen=True)
class Entry:
    """What a collector sends Loki for one line: stream labels, structured metadata, the line."""

    labels: dict[str, str]
    metadata: dict[str, str]
    line: str


class LogQLError(ValueError):
    pass


def _string(token: str) -> str:
    return token[1:-1] if token.startswith("`") else str(json.loads(token))


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise LogQLError(f"cannot read {text[pos : pos + 20]!r}")
            if m.lastgroup != "space":
                self.toks.append((m.lastgroup or "", m.group()))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def take(self, kind: str, text: str | None = None) -> str:
        k, t = self.peek()
        if k != kind or (text is not None and t != text):
            raise LogQLError(f"expected {text or kind}, found {t!r}")
        self.i += 1
        return t

    def metric(self) -> MetricRule:
        self.take("ident", "sum")
        self.take("ident", "by")
        self.take("punct", "(")
        group_by = [self.take("ident")]
        while self.peek() == ("punct", ","):
            self.i += 1
            group_by.append(self.take("ident"))
        self.take("punct", ")")
        self.take("punct", "(")
        self.take("ident", "count_over_time")
        self.take("punct", "(")
        query = self.log_query()
        range_ = self.take("range")[1:-1]
        self.take("punct", ")")
        self.take("punct", ")")
        comparison = self.take("op")
        if comparison not in (">", ">=", "<", "<=", "=="):
            raise LogQLError(f"comparison {comparison!r}")
        threshold = float(self.take("number"))
        if self.peek()[0] != "eof":
            raise LogQLError(f"unexpected {self.peek()[1]!r} after the threshold")
        return MetricRule(group_by, query, range_, comparison, threshold)

    def matcher(self) -> Matcher:
        name = self.take("ident")
        op = self.take("op")
        if op not in _LABEL_OPS:
            raise LogQLError(f"label matcher operator {op!r}")
        return Matcher(name, op, _string(self.take("string")))

    def log_query(self) -> LogQuery:
        self.take("punct", "{")
        selector = [self.matcher()]
        while self.peek() == ("punct", ","):
            self.i += 1
            selector.append(self.matcher())
        self.take("punct", "}")
        if not any(not m.matches("") for m in selector):
            raise LogQLError("a stream selector needs a matcher that does not match the empty value")
        query = LogQuery(selector)
        while self.peek()[0] == "op":
            op = self.take("op")
            if op in _LINE_OPS:
                query.line_filters.append((op, _string(self.take("string"))))
                query.stages.append("line")
                continue
            if op != "|":
                raise LogQLError(f"pipeline stage starting with {op!r}")
            name = self.take("ident")
            if name == "json":
                if query.json_fields:
                    raise LogQLError("one json stage only")
                while True:
                    label = self.take("ident")
                    self.take("op", "=")
                    query.json_fields[label] = _string(self.take("string"))
                    if self.peek() != ("punct", ","):
                        break
                    self.i += 1
                query.stages.append("json")
                continue
            op = self.take("op")
            if op not in _LABEL_OPS:
                raise LogQLError(f"label filter operator {op!r} (only string comparisons are read here)")
            query.label_filters.append(Matcher(name, op, _string(self.take("string"))))
            query.stages.append("label")
        return query


def parse_metric(expr: str) -> MetricRule:
    return _Parser(expr).metric()


def parse_log_query(expr: str) -> LogQuery:
    parser = _Parser(expr)
    query = parser.log_query()
    if parser.peek()[0] != "eof":
        raise LogQLError(f"unexpected {parser.peek()[1]!r} after the log query")
    return query


def _json_value(value: Any) -> str:
    """A JSON value as Loki's json parser turns it into a label value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))


def run_query(query: LogQuery, entries: list[Entry]) -> list[dict[str, str]]:
    """The label set of every entry the log query keeps (stream labels, metadata, extracted labels)."""
    kept = []
    for entry in entries:
        if not all(m.matches(entry.labels.get(m.name, "")) for m in query.selector):
            continue
        labels = {**entry.labels, **entry.metadata}
        filters, line_filters, label_filters = iter(query.stages), iter(query.line_filters), iter(query.label_filters)
        keep = True
        for stage in filters:
            if stage == "line":
                op, text = next(line_filters)
                if op in ("|=", "!="):
                    hit = text in entry.line
                else:
                    hit = re.search(text, entry.line) is not None
                keep = hit if op in ("|=", "|~") else not hit
            elif stage == "json":
                try:
                    data = json.loads(entry.line)
                except json.JSONDecodeError:
                    labels["__error__"] = "JSONParserErr"
                    continue
                for label, source in query.json_fields.items():
                    if isinstance(data, dict) and source in data:
                        labels[label] = _json_value(data[source])
            else:
                matcher = next(label_filters)
                keep = matcher.matches(labels.get(matcher.name, ""))
            if not keep:
                break
        if keep:
            kept.append(labels)
    return kept


def evaluate(rule: MetricRule, entries: list[Entry]) -> Counter[tuple[str, ...]]:
    """count_over_time summed by the rule's labels, over all the entries (they are all in the range)."""
    return Counter(tuple(labels.get(n, "") for n in rule.group_by) for labels in run_query(rule.query, entries))
