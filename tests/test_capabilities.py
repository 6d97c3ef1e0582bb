"""Declared capabilities instead of module names: what retrieves, what uses tools, which
nodes need an index (a retrieve node, or an agent allowed a tool that searches the index),
the per-module node-check hook, the resolved graph handed from validation to compilation,
and the agent's domain-neutral prompt beside medorch's unchanged one."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import BaseModel, ConfigDict, field_validator

import compose.corpora.demo
from compose.api import load_graph
from compose.cli.main import open_graph
from compose.graph.load import load_resolved, parse_spec
from compose.graph.spec import EdgeSpec, GraphSpec, NodeSpec
from compose.graph.validate import GraphValidationError, resolve_spec, validate_spec
from compose.graph.yaml_source import parse_yaml
from compose.module import GraphFacts, Module, NodeIssue
from compose.modules.agent import AgentStepModule
from compose.registry import get_module, register
from compose.runtime import ModuleContext, NotConfiguredError
from compose.serve.service import GraphService
from tests.conftest import scripted_runtime

VALIDATED: list[int] = []


class Note(BaseModel):
    question: str


class Noted(BaseModel):
    note: str


class CountedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    times: int = 1
    mood: str = ""

    @field_validator("times")
    @classmethod
    def _count(cls, times: int) -> int:
        VALIDATED.append(times)
        return times


@register
class Picky(Module[Note, Noted, CountedParams]):
    """A module with its own node check: a node must say its mood."""

    name = "test_picky"
    purpose = "Echo the question, in a mood."

    @classmethod
    def check_node(cls, node: str, params: dict, graph: GraphFacts) -> list[NodeIssue]:
        return [] if params.get("mood") else [NodeIssue(("nodes", node),
                                                        "a picky node needs a mood")]

    def run(self, inp: Note, ctx: ModuleContext) -> Noted:
        return Noted(note=inp.question * self.params.times)


def tool_graph(tools: list[str]) -> GraphSpec:
    return GraphSpec(
        name="tool_test", entry="agent", outputs=["answer"], tools=tools,
        nodes={"agent": NodeSpec(module="agent_step", params={"tools": tools}),
               "execute": NodeSpec(module="execute_tool", params={"tools": tools})},
        edges=[EdgeSpec(source="agent", to="execute"), EdgeSpec(source="execute", to="END")])


def test_modules_declare_what_they_do():
    assert get_module("retrieve").retrieves and not get_module("answer").retrieves
    assert get_module("agent_step").uses_tools and get_module("execute_tool").uses_tools
    assert not get_module("retrieve").uses_tools
    assert get_module("retrieve").describe()["capabilities"] == {
        "retrieves": True, "uses_tools": False, "cacheable": True}


def test_a_graph_that_searches_the_index_only_through_a_tool_needs_an_index():
    medorch = load_resolved("medorch")
    assert medorch.needs_index and medorch.index_nodes() == ["agent", "execute", "finalize"]
    assert not resolve_spec(tool_graph(["bmi"])).needs_index
    assert resolve_spec(tool_graph(["bmi", "evidence_search"])).index_nodes() == [
        "agent", "execute"]
    assert load_resolved("naive_rag").index_nodes() == ["retrieve"]
    assert not load_resolved("closed_book").needs_index


def test_load_graph_refuses_a_tool_searching_graph_without_an_index():
    with pytest.raises(NotConfiguredError, match=r"node\(s\) agent, execute, finalize"):
        load_graph("medorch")


def test_the_cli_gives_a_tool_searching_graph_the_demo_index(demo_index, monkeypatch):
    monkeypatch.setattr(compose.corpora.demo, "demo_index", lambda: demo_index)
    graph = open_graph("medorch", None, None, None)
    assert graph.runtime.config.retriever.index == str(demo_index)


def test_a_module_checks_its_own_nodes_at_their_yaml_line():
    text = textwrap.dedent("""\
        name: g
        entry: n
        nodes:
          n:
            module: test_picky
          calm:
            module: test_picky
            params: {mood: calm}
        edges:
          - {from: n, to: calm}
          - {from: calm, to: END}
        """)
    source = parse_yaml(text, "g.yaml")
    issues = validate_spec(parse_spec(source), source)
    assert [(i.path, i.message, i.line) for i in issues] == [
        (("nodes", "n"), "a picky node needs a mood", 4)]


def test_tool_allow_list_problems_found_by_several_nodes_are_reported_once():
    spec = tool_graph(["bmi"]).model_copy(update={"tools": ["bmi", "bmx"]})
    paths = [i.path for i in validate_spec(spec)]
    assert paths.count(("tools", 1)) == 1


def test_each_node_is_resolved_once_from_validation_to_serving():
    spec = GraphSpec(name="counted", entry="n", outputs=["note"],
                     nodes={"n": NodeSpec(module="test_picky",
                                          params={"times": 2, "mood": "calm"})},
                     edges=[EdgeSpec(source="n", to="END")])
    VALIDATED.clear()
    graph = load_graph(spec, runtime=scripted_runtime([]))
    GraphService(graph)
    assert VALIDATED == [2]
    assert graph.invoke({"question": "q"})["note"] == "qq"


def test_the_generic_agent_prompt_names_no_domain_and_medorch_keeps_its_own():
    generic = AgentStepModule(tools=["bmi"])
    system = generic.messages(generic.Input(question="q"))[0].content
    assert system.startswith("You are a research assistant. Answer the question")
    assert "biomedical" not in system and generic.template().version == "agent-step-v2"
    medorch = load_resolved("medorch")
    for node in ("agent", "finalize"):
        module = medorch.nodes[node].build()
        system = module.messages(module.Input(question="q"))[0].content
        assert system.startswith("You are a biomedical research assistant. Answer the "
                                 "question with one of: yes, no, maybe. Work in steps.")
        assert module.template().version == "agent-step-v1"
        assert "domain" not in module.cache_params()  # medorch's cache keys are as before


def test_an_invalid_spec_is_never_resolved():
    with pytest.raises(GraphValidationError, match="unknown module"):
        resolve_spec(GraphSpec(name="bad", entry="n", nodes={"n": NodeSpec(module="nope")},
                               edges=[EdgeSpec(source="n", to="END")]))
