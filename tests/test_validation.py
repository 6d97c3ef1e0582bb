"""Every validation error kind, each from a bad YAML, each naming the path and the line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from compose.graph.load import load_spec, parse_spec
from compose.graph.validate import MAX_NODES, SHOWN_ISSUES, GraphValidationError, validate_spec
from compose.graph.yaml_source import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    YamlSyntaxError,
    parse_yaml,
)

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"

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
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("module: answer", "module: nope"))
    with pytest.raises(GraphValidationError) as info:
        load_spec(path)
    assert f"{path}:8: nodes.answer.module: unknown module 'nope'" in str(info.value)


# --- limits: a hostile or broken file is refused with its line, never exhausts anything -----

def _yaml_error(text: str) -> YamlSyntaxError:
    with pytest.raises(YamlSyntaxError) as info:
        parse_yaml(text, "bad.yaml")
    return info.value


def test_alias_bomb_is_refused_with_line():
    levels = [f"l0: &l0 [{', '.join(['lol'] * 10)}]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    error = _yaml_error("\n".join(levels))
    assert f"more than {MAX_VALUES:,} values once its aliases are expanded" in str(error)
    assert error.line is not None and str(error).startswith(f"bad.yaml:{error.line}: ")


@pytest.mark.parametrize("text", ["&a [*a]\n", "&m {x: *m}\n",
                                  "name: g\nnodes: &n {a: {params: {up: *n}}}\n"])
def test_recursive_alias_is_refused_with_line(text):
    error = _yaml_error(text)
    assert "recursive anchor" in str(error)
    assert error.line == text.count("\n", 0, text.index("&")) + 1


@pytest.mark.parametrize("text, line", [
    ("[" * 10_000 + "]" * 10_000, 1),
    ("{a: " * 10_000 + "1" + "}" * 10_000, 1),
    ("".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "x\n", MAX_DEPTH + 1),
])
def test_deep_nesting_is_refused_with_line(text, line):
    """Refused by the depth limit, or by libyaml's own (1,000 levels), which it meets first
    when it scans ahead through a run of brackets."""
    error = _yaml_error(text)
    message = str(error)
    assert f"nested more than {MAX_DEPTH} levels" in message or "maximum nesting" in message
    assert error.line == line


def test_nesting_through_aliases_counts_after_expansion():
    text = "l0: &l0 [x]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 200))
    assert "nested more than" in str(_yaml_error(text))


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "description: " + "x" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(YamlSyntaxError, match=rf"{path}:12: the file is larger than "
                       rf"{MAX_BYTES:,} bytes \(1 MiB"):
        load_spec(path)


def test_latin1_file_names_the_byte_its_offset_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("name: g\n", "name: g\ndescription: café\n").encode("latin-1"))
    with pytest.raises(YamlSyntaxError) as info:
        load_spec(path)
    offset = len("name: g\ndescription: caf")
    assert str(info.value) == (f"{path}:2: the file is not UTF-8 text (byte 0xe9 at offset "
                               f"{offset}, line 2); save it as UTF-8")


def test_utf16_file_says_so(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_bytes(GOOD.encode("utf-16"))
    with pytest.raises(YamlSyntaxError, match="UTF-16 byte order mark"):
        load_spec(path)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(GOOD.encode("utf-8-sig"))
    assert load_spec(path).name == "g"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "---\n"])
def test_empty_file_is_an_error_with_a_line(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(GraphValidationError) as info:
        load_spec(path)
    assert [(i.line, i.message) for i in info.value.issues] == [
        (1, "the file is empty; a graph needs at least name, entry and nodes")]


@pytest.mark.parametrize("char, hint", [("\0", "is the file UTF-16?"), ("\x07", ""),
                                        ("\ufffe", "")])
def test_forbidden_character_names_its_line(char, hint):
    error = _yaml_error(GOOD.replace("module: answer", f"module: ans{char}wer"))
    assert error.line == 8
    assert f"character U+{ord(char):04X} is not allowed in YAML" in str(error)
    assert hint in str(error)


@pytest.mark.parametrize("value, problem", [
    ("2001-13-45", "month must be in 1..12"),
    ("!!int x", "invalid literal"),
    ("9" * 5_000, "integer string conversion"),
    ("!!bool maybe", "'maybe'"),
    ("!!timestamp soon", "cannot read the value 'soon'"),
])
def test_unreadable_scalar_names_its_line(value, problem):
    error = _yaml_error(GOOD.replace("name: g", f"name: {value}"))
    assert error.line == 1 and problem in str(error)


def test_merge_keys_are_refused_with_a_reason():
    error = _yaml_error("base: &b {k: 1}\nother: {<<: *b}\n")
    assert error.line == 2 and "merge keys" in str(error)


def test_yaml_errors_are_graph_validation_errors_with_one_issue():
    error = _yaml_error("name: g\nentry: a\nnodes: x: y\n")
    assert isinstance(error, GraphValidationError)
    assert [(i.line, i.path) for i in error.issues] == [(3, ())]


# --- every independent problem in one pass --------------------------------------------------

def test_missing_entry_and_unknown_module_are_reported_together():
    found = problems(GOOD.replace("entry: retrieve\n", "").replace("module: answer",
                                                                   "module: answr"))
    assert {(i.path, i.line) for i in found} == {(("entry",), 1),
                                                 (("nodes", "answer", "module"), 7)}


def test_schema_error_and_edge_to_unknown_node_are_reported_together():
    found = problems(GOOD.replace("name: g", "name: [g]").replace("to: answer}", "to: anser}"))
    assert {i.path for i in found} == {("name",), ("edges", 0, "to")}


@pytest.mark.parametrize("value", ["5", "bmi", "{a: 1}", "[[bmi]]", "[1]"])
def test_tools_param_of_the_wrong_type_is_a_validation_error(value):
    text = (GRAPHS / "medorch.yaml").read_text().replace("      tools: *tools\n",
                                                         f"      tools: {value}\n")
    found = problems(text)
    assert found and all(i.path[:4] == ("nodes", "agent", "params", "tools") for i in found)


def test_long_chain_with_a_loop_is_checked_without_recursion():
    n = MAX_NODES
    nodes = "".join(f"  n{i}: {{module: answer}}\n" for i in range(n))
    edges = "".join(f"  - {{from: n{i}, to: n{(i + 1) % n}}}\n" for i in range(n))
    found = problems(f"name: chain\nentry: n0\nnodes:\n{nodes}edges:\n{edges}")
    loops = [i.message for i in found if "loop without a budget" in i.message]
    assert loops == ["loop without a budget: " + " -> ".join(
        sorted([f"n{i}" for i in range(n)], key=lambda s: int(s[1:])) + ["n0"])
        + " (give one branch of the loop a 'budget')"]


def test_too_many_nodes_is_one_issue_at_nodes():
    nodes = "".join(f"  n{i}: {{module: nope{i}}}\n" for i in range(MAX_NODES + 1))
    found = problems(f"name: g\nentry: n0\nnodes:\n{nodes}")
    assert [(i.path, i.line) for i in found] == [(("nodes",), 3)]
    assert f"at most {MAX_NODES:,}" in found[0].message


def test_message_lists_a_bounded_number_of_issues():
    nodes = "".join(f"  n{i}: 5\n" for i in range(200))
    with pytest.raises(GraphValidationError) as info:
        parse_spec(parse_yaml(f"name: g\nentry: n0\nnodes:\n{nodes}", "bad.yaml"))
    assert len(info.value.issues) == 200
    assert str(info.value).endswith(f"... and {200 - SHOWN_ISSUES} more")


# --- overrides: each problem names the override, never a line of the file -------------------

def _override_issues(*overrides: str, graph: str = "naive_rag"):
    with pytest.raises(GraphValidationError) as info:
        load_spec(graph, list(overrides))
    return info.value


def test_override_with_a_typo_in_a_node_name_suggests_the_node():
    error = _override_issues("nodes.retriev.params.k=3")
    assert str(error).splitlines()[1:] == [
        "  --set nodes.retriev.params.k=3: unknown node 'retriev'; did you mean retrieve?"]
    assert error.issues[0].line is None


@pytest.mark.parametrize("expression, message", [
    ("nodes.retrieve.params.k=[1", "cannot read the value: invalid YAML: while parsing a flow "
     "sequence"),
    ("nodes.retrieve.params.k=&a [*a]", "cannot read the value: an alias refers"),
    ("nodes.retrieve.params.k=\0", "cannot read the value: character U+0000"),
    ("nodes.retrieve.params.k=!!python/object/apply:os.system [ls]", "not allowed"),
    ("nodes.retrieve.params.k", "must look like dotted.path=value"),
    ("nodes..k=1", "empty segment"),
    ("name.x=1", "name is a string, not a mapping, so it has no 'x'"),
    ("nodes.retrieve.module.x=1", "nodes.retrieve.module is a string, not a mapping"),
    ("edges.9.to=END", "edges has 2 entries; there is no entry 9"),
    ("edges.x.to=END", "edges is a list: address its entries by index (0 to 1), not 'x'"),
    ("generatr.temperature=0.1", "unknown setting 'generatr'; did you mean generator"),
    (".".join(["a"] * 1_000) + "=1", f"at most {MAX_DEPTH} are allowed"),
])
def test_malformed_override_is_an_error_naming_it(expression, message):
    error = _override_issues(expression)
    assert [(i.override, i.line) for i in error.issues] == [(expression, None)]
    assert message in error.issues[0].message
    assert re.search(r"naive_rag\.yaml:[0-9]", str(error)) is None


def test_every_bad_override_is_reported_in_one_pass():
    error = _override_issues("nodes.retriev.params.k=3", "edges.9.to=END")
    assert [i.override for i in error.issues] == ["nodes.retriev.params.k=3", "edges.9.to=END"]


@pytest.mark.parametrize("expression, path", [
    ("nodes.retrieve.params.k=-3", ("nodes", "retrieve", "params", "k")),
    ("nodes.retrieve.params={k: -3}", ("nodes", "retrieve", "params", "k")),
    ("nodes.retrieve.module=retriev", ("nodes", "retrieve", "module")),
    ("entry=nowhere", ("entry",)),
    ("retriever.mode=bm26", ("retriever", "mode")),
    ("nodes=[]", ("nodes",)),
])
def test_invalid_value_from_an_override_is_blamed_on_it(expression, path):
    error = _override_issues(expression)
    blamed = [i for i in error.issues if i.path == path]
    assert [(i.override, i.line) for i in blamed] == [(expression, None)]
    assert f"--set {expression}: {'.'.join(path)}: " in str(error)


def test_graph_problem_inside_an_overridden_node_keeps_its_line_and_notes_the_override():
    error = _override_issues("nodes.answer.module=retrieve")
    issue = next(i for i in error.issues if i.path == ("nodes", "answer"))
    assert issue.line == 19 and issue.override == "nodes.answer.module=retrieve"
    rendered = next(line for line in str(error).splitlines() if "nodes.answer:" in line)
    assert rendered.startswith("  naive_rag.yaml:19: nodes.answer: reads state field 'query'")
    assert rendered.endswith("(after --set nodes.answer.module=retrieve)")


def test_override_of_a_wrong_tools_type_is_a_validation_error():
    error = _override_issues("nodes.agent.params.tools=5", graph="medorch")
    assert [i.path for i in error.issues] == [("nodes", "agent", "params", "tools")]
