"""YAML <-> GraphSpec round trips, CLI-style overrides and the published JSON Schema."""

from __future__ import annotations

import json

import pytest

from compose.graph.load import apply_overrides, load_spec, parse_override, shipped_graphs
from compose.graph.spec import Branch, Condition, EdgeSpec, GraphSpec, NodeSpec
from compose.graph.validate import GraphValidationError, validate_spec
from compose.graph.yaml_source import parse_yaml
from tests.conftest import retry_spec


@pytest.mark.parametrize("name", shipped_graphs())
def test_shipped_graph_round_trips(name):
    spec = load_spec(name)
    again = GraphSpec.model_validate(parse_yaml(spec.to_yaml()).data)
    assert again == spec


def test_python_built_graph_dumps_to_yaml_and_loads_back_equal():
    spec = retry_spec(budget=2)
    assert validate_spec(spec) == []
    text = spec.to_yaml()
    assert "from: answer" in text and "budget: 2" in text
    assert GraphSpec.model_validate(parse_yaml(text).data) == spec


def test_condition_with_null_value_survives_round_trip():
    cond = Condition(field="answer", equals=None)
    spec_text = GraphSpec(
        name="g", entry="a", nodes={"a": NodeSpec(module="answer")},
        edges=[EdgeSpec(source="a", branches=[Branch(to="END", when=cond), Branch(to="END")])],
    ).to_yaml()
    again = GraphSpec.model_validate(parse_yaml(spec_text).data)
    assert again.edges[0].branches[0].when.holds({"answer": None})
    assert not again.edges[0].branches[0].when.holds({"answer": "x"})


def test_override_parsing_types_values():
    assert parse_override("nodes.retrieve.params.k=10") == (
        ["nodes", "retrieve", "params", "k"], 10)
    assert parse_override("cache.enabled=true")[1] is True
    assert parse_override("generator.model=/models/x.gguf")[1] == "/models/x.gguf"
    with pytest.raises(ValueError, match="dotted.path=value"):
        parse_override("nodes.retrieve.params.k")


def test_override_reaches_the_spec():
    spec = load_spec("naive_rag", ["nodes.retrieve.params.k=10", "retriever.mode=bm25"])
    assert spec.nodes["retrieve"].params["k"] == 10
    assert spec.retriever.mode == "bm25"


def test_bad_override_is_validated_like_yaml():
    with pytest.raises(GraphValidationError, match=r"nodes\.retrieve\.params\.k"):
        load_spec("naive_rag", ["nodes.retrieve.params.k=-3"])


def test_apply_overrides_does_not_mutate_input():
    data = {"nodes": {"a": {"params": {}}}}
    apply_overrides(data, ["nodes.a.params.k=2"])
    assert data == {"nodes": {"a": {"params": {}}}}


def test_json_schema_describes_the_yaml_format():
    schema = GraphSpec.model_json_schema(by_alias=True)
    assert {"name", "entry", "nodes", "edges", "generator"} <= set(schema["properties"])
    edge = schema["$defs"]["EdgeSpec"]
    assert "from" in edge["properties"]
    json.dumps(schema)


def test_unknown_graph_name_lists_shipped_graphs():
    with pytest.raises(FileNotFoundError, match="naive_rag"):
        load_spec("no_such_graph")
