"""The one registry type behind modules, tools, metrics, benchmarks and backends.

Each registry refuses a name taken by something else, suggests the closest names for a typo,
loads a plugin from an installed entry point, and names a plugin that failed to load on every
lookup and every listing, instead of calling its names unknown. Plugins are installed as pip
leaves them (a package beside a ``*.dist-info`` with ``entry_points.txt``) in a directory put
on ``sys.path``, so ``importlib.metadata`` finds them exactly as it finds real ones.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from compose.config import GeneratorConfig
from compose.corpora.benchmarks import BENCHMARKS, load_benchmark, register_benchmark
from compose.eval.metrics import (
    AGGREGATES,
    BUILTIN_AGGREGATES,
    BUILTIN_METRICS,
    METRICS,
    get_metric,
    register_metric,
)
from compose.generators.factory import BACKENDS, get_generator, register_backend
from compose.module import Module, NoParams
from compose.modules.answer import Answer
from compose.plugins import PluginLoadWarning, Registry
from compose.registry import MODULES, get_module, list_modules, register
from compose.testing import ScriptedGenerator
from compose.tools.registry import BUILTIN_TOOLS, TOOLS, get_tool, list_tools, tool

REGISTRIES: tuple[Registry, ...] = (MODULES, TOOLS, METRICS, AGGREGATES, BENCHMARKS, BACKENDS)

BROKEN = "raise ImportError('this plugin needs libfoo, which is not installed')\n"


class Site:
    """A directory on ``sys.path`` to install fake distributions into."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(self, dist: str, group: str, entries: dict[str, str],
                files: dict[str, str]) -> None:
        """``files`` (path -> source) beside ``dist``'s metadata declaring ``entries``
        (name -> ``module`` or ``module:attr``) in ``group``."""
        for path, source in files.items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(source))
        info = self.root / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
        (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """Plugins installed in it are found; what a test loads or fails to load from it is
    forgotten afterwards (the registries are process-wide). Every built-in is loaded first,
    so none is registered only in the state a test throws away."""
    for registry in REGISTRIES:
        registry.items()
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_attempted", set(registry._attempted))
        monkeypatch.setattr(registry, "_failures", list(registry._failures))
    monkeypatch.syspath_prepend(str(tmp_path))
    return Site(tmp_path)


# --- the generic type ------------------------------------------------------------------


def test_a_name_cannot_be_taken_by_another_object_but_the_same_one_is_welcome():
    registry: Registry[Callable[[], int]] = Registry("widget", None)

    def one() -> int:
        return 1

    registry.register("one")(one)
    assert registry.add("one", one) is one
    with pytest.raises(ValueError, match="widget name 'one' is already registered by .*one"):
        registry.add("one", lambda: 2)


def test_a_builtin_file_is_imported_only_when_its_name_is_asked_for(site: Site):
    site.install("lazy-table", "unused.group", {},
                 {"lazy_table_mod.py": "def value():\n    return 1\n"})
    registry: Registry[object] = Registry("widget", None, {"value": "lazy_table_mod:value"})
    assert "value" in registry and registry.names() == ["value"]
    assert "lazy_table_mod" not in sys.modules
    assert registry.get("value") is import_module("lazy_table_mod").value
    with pytest.raises(KeyError, match="unknown widget 'valeu'; did you mean value"):
        registry.get("valeu")


def test_a_plugin_installed_after_a_miss_is_found_on_the_next_lookup(site: Site):
    registry: Registry[object] = Registry("widget", "test.widgets")
    with pytest.raises(KeyError, match="unknown widget 'late'"):
        registry.get("late")
    site.install("late-widget", "test.widgets", {"late": "late_widget_mod:THING"},
                 {"late_widget_mod.py": "THING = object()\n"})
    assert registry.get("late") is import_module("late_widget_mod").THING


def test_a_broken_plugin_is_named_in_every_error_and_listing(site: Site):
    site.install("broken-widget", "test.broken", {"gadget": "broken_widget_mod:Gadget"},
                 {"broken_widget_mod.py": BROKEN})
    registry: Registry[object] = Registry("widget", "test.broken")
    for _ in range(2):
        with pytest.raises(KeyError, match=r"unknown widget 'gadget'.*'gadget' "
                           r"\(broken_widget_mod:Gadget.*libfoo"):
            registry.get("gadget")
    for _ in range(2):
        with pytest.warns(PluginLoadWarning, match="'gadget' .*libfoo"):
            assert registry.names() == []
    assert [f.name for f in registry.failed] == ["gadget"]
    assert isinstance(registry.failed[0].error, ImportError)


# --- modules -----------------------------------------------------------------------------


class _Text(BaseModel):
    text: str


def _module_class(registered_as: str) -> type[Module]:
    class Plugged(Module[_Text, _Text, NoParams]):
        name = registered_as
        purpose = "A test plugin."

        def run(self, inp, ctx):
            return inp

    return Plugged


def test_modules_refuse_a_taken_name_and_suggest_names():
    with pytest.raises(ValueError, match="module name 'answer' is already registered by Answer"):
        register(_module_class("answer"))
    assert register(Answer) is Answer
    with pytest.raises(KeyError, match="did you mean answer"):
        get_module("anwser")


def test_a_module_plugin_registers_by_decorator_or_by_entry_point_name(site: Site):
    decorated = """
        from pydantic import BaseModel
        from compose.module import Module, NoParams
        from compose.registry import register

        class Text(BaseModel):
            text: str

        @register
        class Loud(Module[Text, Text, NoParams]):
            name = "t_loud"
            purpose = "Upper-case a text."

            def run(self, inp, ctx):
                return Text(text=inp.text.upper())

        class Quiet(Loud):  # registered by its entry point alone
            name = "t_quiet"
    """
    site.install("loud-modules", "composerag.modules",
                 {"t_loud": "loud_modules_mod", "t_quiet": "loud_modules_mod:Quiet"},
                 {"loud_modules_mod.py": decorated})
    loud = get_module("t_loud")
    assert loud().run(loud.Input(text="hi"), None).text == "HI"
    assert get_module("t_quiet").__name__ == "Quiet"
    assert {"t_loud", "t_quiet"} <= set(list_modules())


def test_a_broken_module_plugin_is_named_on_every_lookup_not_called_unknown(site: Site):
    site.install("broken-modules", "composerag.modules", {"t_broken": "broken_modules_mod"},
                 {"broken_modules_mod.py": BROKEN})
    for _ in range(2):
        with pytest.raises(KeyError) as caught:
            get_module("t_broken")
        message = caught.value.args[0]
        assert "module plugins that failed to load: 't_broken' (broken_modules_mod" in message
        assert "ImportError: this plugin needs libfoo" in message
    for _ in range(2):
        with pytest.warns(PluginLoadWarning, match="'t_broken' .*libfoo"):
            assert "answer" in list_modules()
    assert get_module("answer") is Answer  # the others are unaffected


def test_a_plugin_cannot_take_a_builtin_name_even_before_the_builtin_loads(site: Site):
    source = """
        from pydantic import BaseModel
        from compose.module import Module, NoParams

        class Text(BaseModel):
            text: str

        class Impostor(Module[Text, Text, NoParams]):
            name = "verify"
            purpose = "Not the real one."

            def run(self, inp, ctx):
                return inp
    """
    registry: Registry[type[Module]] = Registry(
        "module", "composerag.modules", {"verify": "compose.modules.verify:Verify"})
    site.install("impostor-module", "composerag.modules", {"verify": "impostor_mod:Impostor"},
                 {"impostor_mod.py": source})
    with pytest.warns(PluginLoadWarning, match=r"'verify' .*is built in \(compose.modules.verify"):
        registry.names()
    assert registry.get("verify").__qualname__ == "Verify"


# --- tools -------------------------------------------------------------------------------


def test_tools_refuse_a_taken_name_and_suggest_names():
    def bmi(text: str) -> str:
        """Not the calculator."""
        return text

    with pytest.raises(ValueError, match="tool name 'bmi' is already registered"):
        tool("bmi")(bmi)
    with pytest.raises(KeyError, match="did you mean bmi"):
        get_tool("bmj")


def test_a_tool_plugin_is_loaded_from_its_entry_point(site: Site):
    source = '''
        from compose.tools.registry import tool

        @tool()
        def t_reverse(text: str) -> str:
            """Reverse a text."""
            return text[::-1]
    '''
    site.install("reverse-tool", "composerag.tools", {"t_reverse": "reverse_tool_mod"},
                 {"reverse_tool_mod.py": source})
    assert get_tool("t_reverse").fn("abc") == "cba"
    assert "t_reverse" in list_tools()


def test_a_broken_tool_plugin_is_named_on_every_lookup(site: Site):
    site.install("broken-tools", "composerag.tools", {"t_gone": "broken_tools_mod:t_gone"},
                 {"broken_tools_mod.py": BROKEN})
    for _ in range(2):
        with pytest.raises(KeyError, match=r"unknown tool 't_gone'.*'t_gone' "
                           r"\(broken_tools_mod:t_gone.*libfoo"):
            get_tool("t_gone")
    with pytest.warns(PluginLoadWarning, match="t_gone"):
        list_tools()


def test_the_builtin_tool_table_names_exactly_what_each_file_registers():
    ours = {name: entry.fn.__module__ for name, entry in list_tools().items()
            if entry.fn.__module__.startswith("compose.modules.")}
    assert ours == BUILTIN_TOOLS


# --- metrics -----------------------------------------------------------------------------


def test_metrics_refuse_a_taken_name_and_suggest_names():
    with pytest.raises(ValueError, match="metric name 'em' is already registered"):
        register_metric("em")(lambda record: 0.0)
    with pytest.raises(KeyError, match="did you mean accuracy"):
        get_metric("acuracy")


def test_a_metric_plugin_is_loaded_from_its_entry_point(site: Site):
    source = """
        def shouted(record):
            return float(record["prediction"].isupper())
    """
    site.install("shout-metric", "composerag.metrics", {"t_shouted": "shout_metric_mod:shouted"},
                 {"shout_metric_mod.py": source})
    assert get_metric("t_shouted")({"prediction": "YES"}) == 1.0
    assert "t_shouted" in METRICS.names()


def test_a_broken_metric_plugin_is_named_on_every_lookup(site: Site):
    site.install("broken-metric", "composerag.metrics", {"t_lost": "broken_metric_mod:lost"},
                 {"broken_metric_mod.py": BROKEN})
    for _ in range(2):
        with pytest.raises(KeyError, match=r"'t_lost' \(broken_metric_mod:lost.*libfoo"):
            get_metric("t_lost")


def test_the_builtin_metric_tables_name_exactly_what_each_file_registers():
    files = set(BUILTIN_METRICS.values()) | set(BUILTIN_AGGREGATES.values())
    metrics = {name: fn.__module__ for name, fn in METRICS.items()}
    aggregates = {name: fn.__module__ for name, (_, fn) in AGGREGATES.items()}
    assert {n: m for n, m in metrics.items() if m in files} == BUILTIN_METRICS
    assert {n: m for n, m in aggregates.items() if m in files} == BUILTIN_AGGREGATES


# --- benchmarks --------------------------------------------------------------------------


def test_benchmarks_refuse_a_taken_name_and_suggest_names(tmp_path: Path):
    with pytest.raises(ValueError, match="benchmark name 'hotpotqa' is already registered"):
        register_benchmark("hotpotqa")(lambda path: None)
    with pytest.raises(ValueError, match=r"did you mean hotpotqa\? \(known: .*musique"):
        load_benchmark(f"hotpotqq:{tmp_path / 'x.jsonl'}")


def test_a_benchmark_plugin_is_loaded_from_its_entry_point(site: Site, tmp_path: Path):
    source = """
        import json
        from compose.corpus import BenchmarkData, Passage, QAItem

        def load(path):
            rows = json.loads(open(path).read())
            return BenchmarkData(
                name="tiny", corpus=[Passage(id="p1", title="T", text=rows["text"])],
                questions=[QAItem(id="q1", question=rows["q"], answers=[rows["a"]],
                                  gold_ids=["p1"])])
    """
    site.install("tiny-bench", "composerag.benchmarks", {"t_tiny": "tiny_bench_mod:load"},
                 {"tiny_bench_mod.py": source})
    data_file = tmp_path / "tiny.json"
    data_file.write_text('{"text": "Ada wrote it.", "q": "Who wrote it?", "a": "Ada"}')
    data = load_benchmark(f"t_tiny:{data_file}")
    assert data.name == "tiny" and data.questions[0].answers == ["Ada"]


# --- backends ----------------------------------------------------------------------------


def test_backends_refuse_a_taken_name_and_validate_with_the_known_names():
    with pytest.raises(ValueError, match="generator backend name 'openai' is already registered"):
        register_backend("openai")(lambda config: ScriptedGenerator([]))
    with pytest.raises(ValidationError, match=r"did you mean openai\? \(known: llama_cpp, "
                       r"openai, transformers"):
        GeneratorConfig(backend="openia")


def test_a_backend_plugin_is_accepted_by_the_config_and_builds_the_generator(site: Site):
    source = """
        from compose.testing import ScriptedGenerator

        def scripted(config):
            return ScriptedGenerator(["plugged in"], model_id=config.model)
    """
    site.install("scripted-backend", "composerag.backends",
                 {"t_scripted": "scripted_backend_mod:scripted"},
                 {"scripted_backend_mod.py": source})
    generator = get_generator(GeneratorConfig(backend="t_scripted", model="plugin-model"))
    assert generator.model_id == "plugin-model"
    assert generator.generate([]).text == "plugged in"


def test_a_broken_backend_plugin_is_named_when_the_config_names_it(site: Site):
    site.install("broken-backend", "composerag.backends", {"t_vllm": "broken_backend_mod:make"},
                 {"broken_backend_mod.py": BROKEN})
    for _ in range(2):
        with pytest.raises(ValidationError, match=r"'t_vllm' \(broken_backend_mod:make.*libfoo"), \
                pytest.warns(PluginLoadWarning):
            GeneratorConfig(backend="t_vllm")
