"""The log collectors' pipelines (loki/alloy/config.alloy, loki/promtail/promtail.yml) read into one shape
and applied to a line the way Alloy and Promtail apply them.

Neither collector can run here. What a line becomes is decided by a handful of settings: the relabel
rules that keep a container and name its `service`, the json stage's JMESPath expressions (evaluated
with the jmespath library, the same language), and which extracted values become labels and which
structured metadata. Reading both files into `Pipeline` lets the tests compare them setting by setting
and push a real run's lines through each.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jmespath

from tests.alloy_syntax import Block
from tests.logql_subset import Entry

COMPOSE_SERVICE = "__meta_docker_container_label_com_docker_compose_service"


@dataclass(frozen=True)
class Pipeline:
    docker_host: str
    docker_filters: tuple[tuple[str, tuple[str, ...]], ...]
    relabel: tuple[dict[str, Any], ...]
    json_expressions: dict[str, str]  # extracted name -> JMESPath expression over the line
    timestamp: tuple[str, str]  # (extracted name, format)
    labels: dict[str, str]  # label -> extracted name
    metadata: dict[str, str]  # structured metadata key -> extracted name
    push_url: str


def _stage_map(values: dict[str, str | None]) -> dict[str, str]:
    """`key: ""` (or no value) means "the extracted value of the same name", in both collectors."""
    return {k: v or k for k, v in values.items()}


def from_alloy(root: Block) -> Pipeline:
    [docker] = root.children("discovery.docker")
    [relabel] = root.children("discovery.relabel")
    [process] = root.children("loki.process")
    [write] = root.children("loki.write")
    stages = {b.name: b for b in process.blocks}
    if len(stages) != len(process.blocks):
        raise ValueError("a stage kind used twice: the comparison below assumes one of each")
    timestamp = stages["stage.timestamp"].attrs
    return Pipeline(
        docker_host=docker.attrs["host"],
        docker_filters=tuple((f.attrs["name"], tuple(f.attrs["values"])) for f in docker.children("filter")),
        relabel=tuple(rule.attrs for rule in relabel.children("rule")),
        json_expressions=_stage_map(stages["stage.json"].attrs["expressions"]),
        timestamp=(timestamp["source"], timestamp["format"]),
        labels=_stage_map(stages["stage.labels"].attrs["values"]),
        metadata=_stage_map(stages["stage.structured_metadata"].attrs["values"]),
        push_url=write.child("endpoint").attrs["url"],
    )


def from_promtail(config: dict[str, Any]) -> Pipeline:
    [client] = config["clients"]
    [job] = config["scrape_configs"]
    [docker] = job["docker_sd_configs"]
    stages: dict[str, Any] = {}
    for stage in job["pipeline_stages"]:
        [(kind, settings)] = stage.items()
        if kind in stages:
            raise ValueError(f"stage {kind} used twice: the comparison below assumes one of each")
        stages[kind] = settings
    return Pipeline(
        docker_host=docker["host"],
        docker_filters=tuple((f["name"], tuple(f["values"])) for f in docker.get("filters", [])),
        relabel=tuple(job["relabel_configs"]),
        json_expressions=_stage_map(stages["json"]["expressions"]),
        timestamp=(stages["timestamp"]["source"], stages["timestamp"]["format"]),
        labels=_stage_map(stages["labels"]),
        metadata=_stage_map(stages["structured_metadata"]),
        push_url=client["url"],
    )


def relabel(target: dict[str, str], rules: tuple[dict[str, Any], ...]) -> dict[str, str] | None:
    """Prometheus relabelling (keep, drop, replace) of one discovered target; None when it is dropped."""
    labels = dict(target)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        m = re.fullmatch(rule.get("regex", "(.*)"), value)
        if (action == "keep" and m is None) or (action == "drop" and m is not None):
            return None
        if action == "replace":
            if m is not None:
                replacement = re.sub(r"\$\{?(\d+)\}?", r"\\\1", rule.get("replacement", "$1"))
                labels[rule["target_label"]] = m.expand(replacement)
        elif action not in ("keep", "drop"):
            raise ValueError(f"relabel action {action!r} is not read here")
    return labels


def apply(pipeline: Pipeline, compose_service: str, line: str) -> Entry | None:
    """What the collector sends Loki for `line` written by a container of `compose_service`."""
    target = relabel({COMPOSE_SERVICE: compose_service}, pipeline.relabel)
    if target is None:
        return None
    labels = {k: v for k, v in target.items() if not k.startswith("__")}
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return Entry(labels, {}, line)
    extracted = {name: jmespath.search(expr, data) for name, expr in pipeline.json_expressions.items()}
    present = {k: str(v) for k, v in extracted.items() if v is not None}
    labels.update({label: present[source] for label, source in pipeline.labels.items() if source in present})
    metadata = {key: present[source] for key, source in pipeline.metadata.items() if source in present}
    return Entry(labels, metadata, line)
