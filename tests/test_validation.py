"""Every validation error kind, each from a bad YAML, each naming the path and the line."""

from __future__ import annotations

import textwrap

import pytest

from compose.graph.load import parse_spec
from compose.graph.validate import GraphValidationError, validate_spec
from compose.graph.yaml_source import YamlSyntaxError, parse_yaml

GOOD = """\
name: g
entry: retrieve
nodes:
  retrieve:
    module: retrieve
    inputs: {query: question}
  answer:
    module: answer
edges:
  - {from: retrieve, to: answer}
  - {from: answer, to: END}
"""


def problems(text: str):
    source = parse_yaml(textwrap.dedent(text), "bad.yaml")
    try:
        spec = parse_spec(source)
    except GraphValidationError as exc:
        return exc.issues
    return validate_spec(spec, source)


def only(text: str):
    found = problems(text)
    assert len(found) == 1, [i.render("bad.yaml") for i in found]
    return found[0]


def test_good_graph_has_no_problems():
    assert problems(GOOD) == []


def test_unknown_module_names_line_and_suggests():
    issue = only(GOOD.replace("module: answer", "module: answr"))
    assert issue.path == ("nodes", "answer", "module")
    assert issue.line == 8
    assert "unknown module 'answr'" in issue.message and "answer" in issue.message


def test_bad_params_are_reported_per_key():
    issue = only(GOOD.replace("module: retrieve\n", "module: retrieve\n    params: {k: 0}\n"))
    assert issue.path == ("nodes", "retrieve", "params", "k")
    assert issue.line == 6
    assert "greater than or equal to 1" in issue.message


def test_unknown_param_is_an_error():
    issue = only(GOOD.replace("module: retrieve\n", "module: retrieve\n    params: {top: 3}\n"))
    assert issue.path == ("nodes", "retrieve", "params", "top")


def test_state_field_never_written():
    issue = only(GOOD.replace("inputs: {query: question}", "inputs: {query: search_text}"))
    assert issue.path == ("nodes", "retrieve", "inputs", "query")
    assert issue.line == 6
    assert "'search_text'" in issue.message and "no node" in issue.message


def test_state_field_read_before_write():
    text = GOOD.replace("inputs: {query: question}", "inputs: {query: answer}")
    issue = only(text)
    assert "before any node writes it" in issue.message
    assert issue.line == 6


def test_unknown_module_input_field():
    issue = only(GOOD.replace("module: answer\n", "module: answer\n    inputs: {qestion: q}\n"))
    assert issue.path == ("nodes", "answer", "inputs", "qestion")
    assert "no input field" in issue.message


def test_unreachable_node():
    text = GOOD + textwrap.dedent("""\
      - {from: orphan, to: END}
    """).replace("- {", "  - {")
    text = text.replace("nodes:\n", "nodes:\n  orphan:\n    module: answer\n")
    issue = only(text)
    assert issue.path == ("nodes", "orphan")
    assert issue.line == 4
    assert "unreachable" in issue.message


def test_loop_without_budget():
    text = GOOD.replace("  - {from: answer, to: END}\n", textwrap.indent(textwrap.dedent("""\
        - from: answer
          branches:
            - {to: retrieve, when: {field: is_unknown, equals: true}}
            - {to: END}
        """), "  "))
    issue = only(text)
    assert "loop without a budget" in issue.message
    assert "retrieve -> answer -> retrieve" in issue.message


def test_loop_with_budget_is_valid():
    text = GOOD.replace("  - {from: answer, to: END}\n", textwrap.indent(textwrap.dedent("""\
        - from: answer
          branches:
            - {to: retrieve, when: {field: is_unknown, equals: true}, budget: 2}
            - {to: END}
        """), "  "))
    assert problems(text) == []


def test_last_branch_must_be_default():
    text = GOOD.replace("  - {from: answer, to: END}\n", textwrap.indent(textwrap.dedent("""\
        - from: answer
          branches:
            - {to: END, when: {field: is_unknown, equals: false}}
        """), "  "))
    issue = only(text)
    assert issue.path == ("edges", 1, "branches", 0)
    assert issue.line == 13


def test_condition_on_unwritten_field():
    text = GOOD.replace("  - {from: answer, to: END}\n", textwrap.indent(textwrap.dedent("""\
        - from: answer
          branches:
            - {to: END, when: {field: verdict, equals: false}}
            - {to: END}
        """), "  "))
    issue = only(text)
    assert issue.path == ("edges", 1, "branches", 0, "when", "field")
    assert "'verdict'" in issue.message


def test_edge_to_unknown_node():
    found = problems(GOOD.replace("{from: retrieve, to: answer}", "{from: retrieve, to: anser}"))
    messages = [i.message for i in found]
    assert "edge to unknown node 'anser'" in messages
    assert next(i for i in found if "anser" in i.message).line == 10
    assert any("unreachable" in m for m in messages)  # answer is now cut off too


def test_node_without_outgoing_edge():
    issue = only(GOOD.replace("  - {from: answer, to: END}\n", ""))
    assert issue.path == ("nodes", "answer")
    assert "no outgoing edge" in issue.message


def test_output_never_written():
    issue = only(GOOD.replace("entry:", "outputs: [answer, verdict]\nentry:"))
    assert issue.path == ("outputs", 1)
    assert issue.line == 2


def test_typo_in_top_level_key_is_an_error_with_line():
    issue = only(GOOD.replace("edges:", "edgez: []\nedges:"))
    assert issue.path == ("edgez",)
    assert issue.line == 9
    assert "Extra inputs are not permitted" in issue.message


def test_yaml_syntax_error_names_line():
    with pytest.raises(YamlSyntaxError, match=r"bad.yaml:3: invalid YAML"):
        problems("name: g\nentry: a\nnodes: x: y\n")


def test_duplicate_key_is_an_error():
    with pytest.raises(YamlSyntaxError, match="duplicate key 'entry'"):
        problems(GOOD + "entry: answer\n")


def test_yaml_cannot_construct_python_objects():
    with pytest.raises(YamlSyntaxError, match="python/object"):
        problems("name: !!python/object/apply:os.system ['echo pwned']\nentry: a\nnodes: {}\n")


def test_error_message_names_file_line_and_path(tmp_path):
    from compose.graph.load import load_spec

    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("module: answer", "module: nope"))
    with pytest.raises(GraphValidationError) as info:
        load_spec(path)
    assert f"{path}:8: nodes.answer.module: unknown module 'nope'" in str(info.value)
