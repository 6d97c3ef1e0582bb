"""Graph specs and ``--set`` overrides fuzzed through the loader: hostile files (alias bombs,
deep nesting, huge or undecodable files), seeded byte/line/token/structure mutations of the
shipped graphs, and malformed overrides.

Every case must end in a valid spec or in the project's own error
(:class:`GraphValidationError`) whose every issue names a line of the file or an override, in
under 5 s and 500 MB. Cases run one after another in a worker process that is killed when a
case overruns, so a regression fails the test instead of hanging the suite, and the memory
bound is real (peak RSS, C allocations included).

Measure (the figures quoted in issue 16)::

    .venv/bin/python -m tests.test_spec_fuzz --cases 1300
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.graph.load import load_spec
from compose.graph.validate import MAX_NODES, GraphValidationError
from compose.graph.yaml_source import YamlSyntaxError

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
MAX_SECONDS = 5.0
MAX_MB = 500.0
DEFAULT_CASES = 300
SLOW_CASES = 1300


@dataclass(frozen=True)
class Case:
    """One input to ``load_spec``: file bytes (or a shipped graph name) plus overrides."""

    label: str
    data: bytes | None = None
    graph: str = "naive_rag"
    overrides: tuple[str, ...] = ()


@dataclass
class Outcome:
    case: Case
    kind: str  # valid | clean | no-line | no-override | uncaught | killed
    detail: str = ""
    seconds: float = 0.0
    mb: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.kind in ("valid", "clean") and self.seconds < MAX_SECONDS
                and self.mb < MAX_MB)


# --- cases -----------------------------------------------------------------------------------

def shipped() -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(GRAPHS.glob("*.yaml"))}


def _bomb(levels: int, width: int, sep: str = "\n") -> str:
    """"Billion laughs": each level lists the one below ``width`` times, by alias."""
    items = [f'l0: &l0 [{", ".join(["lol"] * width)}]']
    items += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return sep.join(items)


def _chain(n: int, loop: bool) -> str:
    nodes = "".join(f"  n{i}: {{module: answer}}\n" for i in range(n))
    edges = "".join(f"  - {{from: n{i}, to: n{i + 1}}}\n" for i in range(n - 1))
    last = f"  - {{from: n{n - 1}, to: n0}}\n" if loop else f"  - {{from: n{n - 1}, to: END}}\n"
    return f"name: chain\nentry: n0\nnodes:\n{nodes}edges:\n{edges}{last}"


def hostile_cases() -> list[Case]:
    """The fixed attacks: resource exhaustion, recursion, decoding, empty and odd files."""
    base = shipped()["naive_rag"].decode()
    medorch = shipped()["medorch"].decode()
    deep = [100, 1_000, 10_000, 100_000]
    cases = [Case(f"empty {text!r}", text.encode()) for text in
             ["", "\n", "   \n\t\n", "# only a comment\n", "---\n", "...\n", "null\n", "~",
              "42\n", "- a\n- b\n", '"just a string"\n']]
    cases += [
        Case("billion laughs (top level)", _bomb(9, 9).encode()),
        Case("billion laughs in params", base.replace(
            "{k: 5}", "{k: 5, bomb: {" + _bomb(10, 10, ", ") + "}}").encode()),
        Case("recursive sequence alias", b"&a [*a]\n"),
        Case("recursive mapping alias", b"&m {x: *m}\n"),
        Case("recursive alias in a graph", base.replace(
            "params: {k: 5}", "params: &p {k: 5, self: *p}").encode()),
        Case("recursive nodes alias", b"name: g\nentry: a\nnodes: &n {a: {module: answer, "
                                      b"params: {x: *n}}}\n"),
        Case("undefined alias", base.replace("{k: 5}", "{k: *nothing}").encode()),
        Case("merge key", base.replace("{k: 5}", "{<<: {k: 5}}").encode()),
    ]
    for n in deep:
        cases += [Case(f"{n} nested flow sequences", ("[" * n + "]" * n).encode()),
                  Case(f"{n} nested flow mappings", ("{a: " * n + "1" + "}" * n).encode()),
                  Case(f"{n} nested block sequences", ("- " * n + "x\n").encode()),
                  Case(f"{n} nested flow sequences in params", base.replace(
                      "{k: 5}", "{k: " + "[" * n + "]" * n + "}").encode())]
    cases += [Case(f"{n} nested block mappings",
                   "".join(" " * i + f"k{i}:\n" for i in range(n)).encode() + b" " * n + b"x\n")
              for n in (100, 1_000, 1_400)]
    cases += [Case(f"chain of {n} nodes{' with a loop' if loop else ''}", _chain(n, loop).encode())
              for n, loop in [(MAX_NODES, False), (MAX_NODES, True), (3_000, True)]]
    cases += [
        Case("20k unknown modules", ("name: g\nentry: n0\nnodes:\n" + "".join(
            f"  n{i}: {{module: nope{i}}}\n" for i in range(20_000))).encode()),
        Case("10 MB description", base.replace(
            "description: Retrieve", "description: " + "x" * 10_000_000 + " Retrieve").encode()),
        Case("10 MB random bytes", random.Random(7).randbytes(10_000_000)),
        Case("3 MB sequence", b"- x\n" * 750_000),
        Case("huge integer", base.replace("version: 1", "version: " + "9" * 5_000).encode()),
        Case("bad timestamp", base.replace("name: naive_rag", "name: 2001-13-45").encode()),
        Case("explicit int tag", base.replace("version: 1", "version: !!int x").encode()),
        Case("python tag", base.replace("{k: 5}", "!!python/object/apply:os.system [ls]")
             .encode()),
        Case("binary tag", base.replace("{k: 5}", "{k: !!binary '@@'}").encode()),
        Case("non-scalar key", base.replace("{k: 5}", "{[k]: 5}").encode()),
        Case("two documents", (base + "---\n" + base).encode()),
        Case("missing entry and unknown module", base.replace("entry: retrieve\n", "")
             .replace("module: answer", "module: answr").encode()),
    ]
    for value in ["5", "bmi", "{a: 1}", "[1, 2]", "[[bmi]]", "null", "[null]"]:
        cases.append(Case(f"agent tools: {value}", medorch.replace(
            "      tools: *tools\n", f"      tools: {value}\n").encode()))
        cases.append(Case(f"graph tools: {value}", medorch.replace(
            "tools: &tools\n", f"tools: {value}\nunused: &tools\n").encode()))
    for encoding in ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252",
                     "utf-8-sig"]:
        text = base.replace("Retrieve the", "Retrieve – café’s “the”" if encoding == "cp1252"
                            else "Retrieve the café")
        cases.append(Case(f"encoded {encoding}", text.encode(encoding, errors="replace")))
    cases += [Case("truncated multi-byte character", base.encode() + "é".encode()[:1]),
              Case("lone surrogate bytes", base.encode().replace(b"Retrieve", b"\xed\xa0\x80")),
              Case("NUL byte", base.encode().replace(b"answer:", b"ans\x00wer:")),
              Case("BEL character", base.encode().replace(b"Hybrid", b"\x07Hybrid")),
              Case("U+FFFE", base.replace("Hybrid", "\ufffeHybrid").encode()),
              Case("tab indentation", base.replace("    module: retrieve", "\tmodule: retrieve")
                   .encode())]
    rng = random.Random(3)
    cases += [Case(f"{n} random bytes", rng.randbytes(n)) for n in (1, 10, 100, 1_000, 10_000)]
    return cases


TOKENS = ["{", "}", "[", "]", ":", "- ", "? ", "&a ", "*a", "*undefined", "!!binary x",
          "!!int x", "!!python/name:os.system", "<<: *a", "|", ">-", '"', "'", "%YAML 1.1\n",
          "---\n", "...\n", "\t", "\x00", "null", "~", "1e999", "2001-13-45", "0x", "-1",
          "true", "END", "#", "\\", "\ufffe", "\x1b", "\r", "\u2028", "9" * 5000, "&a [*a]",
          "START", "{to: END}", "[question]", "{field: done, equals: true}", "budget: 0"]


def _words(texts: list[str]) -> list[str]:
    return sorted({w for t in texts for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", t)})


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        pos = rng.randrange(len(buf) + 1)
        how = rng.choice(["flip", "insert", "delete"])
        if how == "insert" or not buf or pos == len(buf):
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif how == "flip":
            buf[pos] ^= 1 << rng.randrange(8)
        else:
            del buf[pos]
    return bytes(buf)


def _mutate_lines(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    how = rng.choice(["delete", "duplicate", "swap", "indent", "dedent", "truncate"])
    if how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "indent":
        lines[i] = " " * rng.randint(1, 4) + lines[i]
    elif how == "dedent":
        lines[i] = lines[i].lstrip()
    else:
        return text[:rng.randrange(len(text))]
    return "".join(lines)


def _mutate_tokens(rng: random.Random, text: str, words: list[str]) -> str:
    parts = re.split(r"(\s+)", text)
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(parts))
        parts[k] = rng.choice(TOKENS) if rng.random() < 0.5 else rng.choice(words)
    return "".join(parts)


def _random_value(rng: random.Random, words: list[str]) -> object:
    return rng.choice([None, True, -1, 0, 10**30, 1.5, float("inf"), "", rng.choice(words),
                       [rng.choice(words)], {rng.choice(words): rng.choice(words)}, [[[]]],
                       "x" * 1000])


def _mutate_structure(rng: random.Random, text: str, words: list[str]) -> str:
    """Parse, change one value or key anywhere in the tree, dump again: semantic errors."""
    data = yaml.safe_load(text)
    for _ in range(rng.randint(1, 3)):
        parent, key, node = None, None, data
        while isinstance(node, (dict, list)) and node and (key is None or rng.random() < 0.7):
            parent = node
            key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
            node = node[key]
        if parent is None:
            continue
        how = rng.choice(["replace", "delete", "rename"] if isinstance(parent, dict)
                         else ["replace", "delete"])
        if how == "replace":
            parent[key] = _random_value(rng, words)
        elif how == "delete":
            del parent[key]
        else:
            parent[str(key)[:-1] or "x"] = parent.pop(key)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def mutated_cases(n: int, seed: int) -> Iterator[Case]:
    """``n`` seeded mutations of the shipped graphs, mixing the four kinds."""
    rng = random.Random(seed)
    graphs = shipped()
    words = _words([g.decode() for g in graphs.values()])
    names = sorted(graphs)
    for i in range(n):
        name = rng.choice(names)
        data = graphs[name]
        kind = rng.choice(["bytes", "lines", "tokens", "structure"])
        if kind == "bytes":
            out = _mutate_bytes(rng, data)
        elif kind == "lines":
            out = _mutate_lines(rng, data.decode()).encode()
        elif kind == "tokens":
            out = _mutate_tokens(rng, data.decode(), words).encode("utf-8", "surrogatepass")
        else:
            out = _mutate_structure(rng, data.decode(), words).encode()
        yield Case(f"{kind} mutation {i} of {name} (seed {seed})", out)


def spec_cases(n: int, seed: int) -> list[Case]:
    """The hostile cases, then mutations up to ``n`` cases in all."""
    fixed = hostile_cases()
    return fixed + list(mutated_cases(max(0, n - len(fixed)), seed))


OVERRIDES: list[tuple[str, str]] = [
    ("naive_rag", "nodes.retriev.params.k=3"),
    ("naive_rag", "nodes.retrieve.params.k=-3"),
    ("naive_rag", "nodes.retrieve.params.k=abc"),
    ("naive_rag", "nodes.retrieve.params.k=[1"),
    ("naive_rag", "nodes.retrieve.params.k={a"),
    ("naive_rag", "nodes.retrieve.params.k='unterminated"),
    ("naive_rag", "nodes.retrieve.params.k=!!python/object/apply:os.system [ls]"),
    ("naive_rag", "nodes.retrieve.params.k=\x00"),
    ("naive_rag", "nodes.retrieve.params.k=&a [*a]"),
    ("naive_rag", "nodes.retrieve.params.k=" + "[" * 5_000 + "]" * 5_000),
    ("naive_rag", "nodes.retrieve.params.k={" + _bomb(9, 9, ", ") + "}"),
    ("naive_rag", "nodes.retrieve.params.k=*undefined"),
    ("naive_rag", "nodes.retrieve.params.k=1e999"),
    ("naive_rag", "nodes.retrieve.module=retriev"),
    ("naive_rag", "nodes.retrieve.module.x=1"),
    ("naive_rag", "nodes.retrieve.params.k"),
    ("naive_rag", "nodes..k=1"),
    ("naive_rag", "=1"),
    ("naive_rag", ".=1"),
    ("naive_rag", "name.x=1"),
    ("naive_rag", "edges.9.to=END"),
    ("naive_rag", "edges.x.to=END"),
    ("naive_rag", "edges.\u00b2.to=END"),
    ("naive_rag", "edges=5"),
    ("naive_rag", "nodes=[]"),
    ("naive_rag", "entry=nowhere"),
    ("naive_rag", "generatr.temperature=0.1"),
    ("naive_rag", "retriever.mode=bm26"),
    ("naive_rag", ".".join(["a"] * 10_000) + "=1"),
    ("naive_rag", "nodes.answer.module=retrieve"),
    ("medorch", "tools=5"),
    ("medorch", "nodes.agent.params.tools=5"),
    ("medorch", "nodes.agent.params.tools=[nope]"),
    ("medorch", "nodes.execute.params.tools.0=bmi2"),
]


def override_cases() -> list[Case]:
    return [Case(f"--set {expr[:60]!r} on {graph}", graph=graph, overrides=(expr,))
            for graph, expr in OVERRIDES]


# --- running a case --------------------------------------------------------------------------

def _has_line(exc: Exception) -> bool:
    """Every issue points at a line of the file or at an override."""
    issues = getattr(exc, "issues", None)
    if issues is None:  # a bare message: look for "FILE:LINE:" or "line N"
        return re.search(r":\d+:|line \d+", str(exc)) is not None
    return bool(issues) and all(i.line or getattr(i, "override", None) for i in issues)


def _names_override(exc: Exception) -> bool:
    issues = getattr(exc, "issues", None) or []
    if any(hasattr(i, "override") for i in issues):
        return any(i.override for i in issues)
    return "--set" in str(exc) or "override" in str(exc)


def classify(case: Case, folder: Path) -> tuple[str, str]:
    target: str | Path = case.graph
    if case.data is not None:
        target = folder / "case.yaml"
        target.write_bytes(case.data)
    try:
        load_spec(target, list(case.overrides))
    except (GraphValidationError, YamlSyntaxError) as exc:
        text = str(exc)
        if not _has_line(exc):
            return "no-line", text[:300]
        if case.overrides and not _names_override(exc):
            return "no-override", text[:300]
        return "clean", text[:300]
    except Exception as exc:  # noqa: BLE001 - the point is to catch what escapes
        return "uncaught", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "valid", ""


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """VmHWM, not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across the exec of a spawned worker,
    so a worker forked from a large pytest process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _worker(conn) -> None:
    """Run cases sent by the parent; memory beyond 1.5 GB is refused, not swapped."""
    vm = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + 3 * 2**29, resource.RLIM_INFINITY))
    folder = Path(tempfile.mkdtemp(prefix="spec-fuzz-"))
    for name in shipped():  # warm up imports and registries before the baseline
        load_spec(name)
    base = _rss_mb()
    conn.send("ready")
    while (case := conn.recv()) is not None:
        start = time.perf_counter()
        kind, detail = classify(case, folder)
        conn.send((kind, detail, time.perf_counter() - start, max(0.0, _peak_mb() - base)))


@dataclass
class Runner:
    """Runs cases in a worker process; a case over ``kill_after`` seconds kills the worker,
    counts as ``killed`` and a fresh worker takes the next case."""

    kill_after: float = MAX_SECONDS
    _proc: multiprocessing.Process | None = None
    _conn: object = None
    outcomes: list[Outcome] = field(default_factory=list)

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self._proc.start()
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            raise RuntimeError("the fuzz worker did not start")

    def run(self, case: Case) -> Outcome:
        if self._proc is None:
            self._start()
        start = time.perf_counter()
        self._conn.send(case)
        if self._conn.poll(self.kill_after):
            kind, detail, seconds, mb = self._conn.recv()
            outcome = Outcome(case, kind, detail, seconds, mb)
        else:
            self.close(kill=True)
            outcome = Outcome(case, "killed", "", time.perf_counter() - start, float("nan"))
        self.outcomes.append(outcome)
        return outcome

    def close(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            self._conn.send(None)
        self._proc.join(10)
        self._proc = None


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    r = Runner()
    yield r
    r.close()


def _failures(outcomes: list[Outcome]) -> str:
    bad = [o for o in outcomes if not o.ok]
    return "\n".join(f"{o.kind} {o.seconds:.1f}s {o.mb:.0f}MB {o.case.label}: {o.detail}"
                     for o in bad[:20])


# --- tests -----------------------------------------------------------------------------------

def test_hostile_and_mutated_specs_give_only_clean_errors(runner):
    outcomes = [runner.run(case) for case in spec_cases(DEFAULT_CASES, seed=0)]
    assert len(outcomes) >= DEFAULT_CASES
    assert not _failures(outcomes), _failures(outcomes)


@pytest.mark.slow
def test_many_mutated_specs_give_only_clean_errors(runner):
    outcomes = [runner.run(case) for case in mutated_cases(SLOW_CASES, seed=1)]
    assert not _failures(outcomes), _failures(outcomes)


def test_bad_overrides_give_errors_naming_the_override(runner):
    outcomes = [runner.run(case) for case in override_cases()]
    assert len(outcomes) >= 24
    assert not _failures(outcomes), _failures(outcomes)


KEYS = st.sampled_from(["nodes", "retrieve", "answer", "params", "k", "module", "edges", "0",
                        "9", "to", "inputs", "query", "retriever", "mode", "name", "tools"])


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(KEYS | st.text(max_size=6), min_size=1, max_size=6),
       st.text(max_size=30) | st.sampled_from(["[", "{", "&a [*a]", "*x", "!!binary x", "-"]))
def test_arbitrary_overrides_fail_cleanly(keys, value):
    expression = ".".join(keys) + "=" + value
    try:
        load_spec("naive_rag", [expression])
    except GraphValidationError as exc:
        assert _has_line(exc), str(exc)


# --- measurement -----------------------------------------------------------------------------

def report(outcomes: list[Outcome]) -> str:
    kinds = Counter(o.kind for o in outcomes)
    slow = sum(o.seconds >= MAX_SECONDS for o in outcomes)
    mbs = [o.mb for o in outcomes if o.mb == o.mb]
    errors = Counter(o.detail.split(":")[0] for o in outcomes if o.kind == "uncaught")
    lines = [f"{len(outcomes)} cases: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()),
             "uncaught: " + ", ".join(f"{k} {v}" for k, v in errors.most_common()),
             f"max {max(o.seconds for o in outcomes):.2f} s, max {max(mbs, default=0):.0f} MB "
             f"peak RSS growth, {slow} at or over {MAX_SECONDS:.0f} s"]
    lines += [f"  slowest: {o.seconds:.2f} s {o.mb:.0f} MB {o.case.label}"
              for o in sorted(outcomes, key=lambda o: -o.seconds)[:5]]
    lines += [f"  {o.kind}: {o.case.label}: {o.detail[:160]!r}"
              for o in outcomes if o.kind not in ("valid", "clean")][:60]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=SLOW_CASES)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for title, cases in [("specs", spec_cases(args.cases, args.seed)),
                         ("overrides", override_cases())]:
        runner = Runner()
        for case in cases:
            runner.run(case)
        runner.close()
        print(f"== {title}\n{report(runner.outcomes)}")


if __name__ == "__main__":
    main()
