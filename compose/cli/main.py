"""The ``composerag`` command line."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape

from compose.cli.common import SetOption, err, fail, out
from compose.cli.eval_cmd import eval_app
from compose.cli.moi import moi_app
from compose.tune.cli import tune_app

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from compose.api import ComposeGraph
    from compose.graph.spec import GraphSpec

app = typer.Typer(help="Compose RAG and agent pipelines from atomic typed modules.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
index_app = typer.Typer(help="Build and inspect retrieval indexes.", no_args_is_help=True)
module_app = typer.Typer(help="Run a single module.", no_args_is_help=True)
trace_app = typer.Typer(help="Inspect run traces.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(module_app, name="module")
app.add_typer(trace_app, name="trace")
app.add_typer(moi_app, name="moi")
app.add_typer(tune_app, name="tune")
app.add_typer(eval_app, name="eval")

IndexOption = Annotated[Path | None, typer.Option(
    help="Index directory. Default for graphs that retrieve: the demo corpus index, built on "
    "first use.")]
SPEC_ERRORS = (FileNotFoundError, ValueError)
"""What loading a spec raises for bad input: ``GraphValidationError`` and its
``YamlSyntaxError`` are ``ValueError``s. Naming them here would import the validator, and
with it every module's pydantic models, into each start-up (``--help`` included); every
heavy import of this file is made inside the command that needs it for the same reason."""


def open_graph(graph: str, index: Path | None, overrides: list[str] | None, cache: bool | None,
               prefetch: bool = False, **durability: Any) -> ComposeGraph:
    """Load a graph for a command; ``durability``: ``checkpointer``, ``interrupt_before``.

    With ``prefetch`` the model and the index start loading on a background thread before
    LangGraph is even imported, so that a one-question run does not pay for them one after
    the other. Servers do not prefetch (see ``Runtime.prefetch``: an MCP stdio reply could
    be lost)."""
    from compose.graph.load import load_resolved, runtime_config
    from compose.runtime import Runtime

    try:
        resolved = load_resolved(graph, overrides)
    except SPEC_ERRORS as exc:
        fail(str(exc))
    spec = resolved.spec
    if index is None and resolved.needs_index and not spec.retriever.index:
        from compose.corpora.demo import demo_index

        err.print("[dim]no --index given: using the demo corpus index[/]")
        index = demo_index()
    config = runtime_config(spec, index=index, cache=cache)
    if resolved.needs_index and config.retriever.index:
        check_index(config.retriever.index)
    try:
        runtime = Runtime(config)
        if prefetch:
            runtime.prefetch(generator=resolved.prompts_model, retriever=resolved.needs_index)
        from compose.api import load_graph

        return load_graph(resolved, runtime=runtime, **durability)
    except ValueError as exc:
        fail(str(exc))


def check_index(index: str) -> None:
    """Refuse a missing or unreadable index before the model starts loading: reading the
    manifest takes milliseconds, the model seconds, and the run could only fail after both."""
    from compose.retrieval.manifest import read_manifest

    try:
        read_manifest(index)
    except (OSError, ValueError) as exc:
        fail(str(exc))


@app.command()
def run(
    graph: Annotated[str, typer.Argument(help="Shipped graph name or YAML path.")],
    question: Annotated[str | None, typer.Option(
        "-q", "--question", help="The question to answer (not needed to resume a run).")] = None,
    index: IndexOption = None,
    set_: SetOption = None,
    trace: Annotated[Path | None, typer.Option(help="Write the per-node trace as JSONL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as JSON.")] = False,
    cache: Annotated[bool, typer.Option(help="Use the module cache.")] = False,
    checkpoint: Annotated[Path | None, typer.Option(
        help="SQLite file that saves the run after every node; a run that stopped resumes "
        "from it when given the same --thread-id.")] = None,
    thread_id: Annotated[str | None, typer.Option(
        help="Name of a checkpointed run (default: a new one, printed).")] = None,
    approve_before: Annotated[list[str] | None, typer.Option(
        help="Pause before this node until approved (repeatable; needs --checkpoint).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Approve every pause.")] = False,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Print the answer's tokens as they are generated (progress on "
        "stderr).")] = False,
) -> None:
    """Answer one question with a graph; print the answer, citations and passages."""
    from compose.trace import write_trace

    if (thread_id or approve_before) and checkpoint is None:
        fail("--thread-id and --approve-before need --checkpoint FILE")
    if checkpoint is None and not question:
        fail("give the question with -q")  # before the model starts loading
    if stream and checkpoint is not None:
        fail("--stream does not combine with --checkpoint")
    durability: dict[str, Any] = {}
    if checkpoint is not None:
        from compose.durable import sqlite_checkpointer

        durability = {"checkpointer": sqlite_checkpointer(checkpoint),
                      "interrupt_before": approve_before}
    compiled = open_graph(graph, index, set_, cache, prefetch=True, **durability)
    try:
        if checkpoint is None and stream:
            from compose.cli.stream import run_streaming

            state = run_streaming(compiled, {"question": question}, progress=err,
                                  tokens_to=sys.stderr if as_json else None)
        elif checkpoint is None:
            state = compiled.invoke({"question": question})
        else:
            from compose.durable import holding_thread

            thread_id = thread_id or uuid.uuid4().hex[:12]
            # One hold for the whole session (its resumes and approval prompts included).
            with holding_thread(durability["checkpointer"], thread_id):
                state = run_durably(compiled, question, thread_id, yes)
    except typer.Exit:
        raise
    except Exception as exc:
        fail(str(exc))
    if trace:
        write_trace(trace, state["trace"])
    print_outputs(compiled, state, as_json)


def run_durably(compiled: ComposeGraph, question: str | None, thread_id: str,
                 approve_all: bool) -> dict[str, Any]:
    """Start or resume the checkpointed run ``thread_id``, asking before each paused node."""
    saved = compiled.checkpoint(thread_id)
    values: dict[str, Any] = saved.values  # a graph's state is a dict of its channels
    done = len(values.get("trace") or [])
    if values:
        if question and question != values.get("question"):
            fail(f"thread {thread_id!r} answers another question: {values.get('question')!r}")
        if not saved.next:
            err.print(f"[dim]thread {thread_id} already finished ({done} nodes)[/]")
            return values
        err.print(f"[dim]resuming thread {thread_id}: {done} node(s) done, "
                  f"next: {', '.join(saved.next)}[/]")
        state = compiled.resume(thread_id)
    else:
        if not question:
            fail(f"no saved run {thread_id!r}: give the question with -q")
        err.print(f"[dim]thread {thread_id} (resume with --thread-id {thread_id})[/]")
        state = compiled.invoke({"question": question}, thread_id=thread_id)
    while (pending := compiled.checkpoint(thread_id).next):
        node = pending[0]
        if not approve_all:
            show_pending(compiled, node, compiled.checkpoint(thread_id).values)
        if not (approve_all or typer.confirm(f"run node {node!r}?", default=False, err=True)):
            err.print(f"paused before {node!r}; resume with --thread-id {thread_id}")
            raise typer.Exit(3)
        state = compiled.resume(thread_id)
    err.print(f"[dim]thread {thread_id}: {done} node(s) from the checkpoint, "
              f"{len(state['trace']) - done} run now[/]")
    return state


def show_pending(compiled: ComposeGraph, node: str, values: dict[str, Any]) -> None:
    """What the paused node is about to read (for a tool node: the call it will make)."""
    from compose.registry import get_module

    spec = compiled.spec.nodes[node]
    err.print(f"[bold]paused before {node!r}[/] (module {spec.module}); it will read:")
    for field in get_module(spec.module).Input.model_fields:
        value = values.get(spec.inputs.get(field, field))
        shown = json.dumps(value, ensure_ascii=False, default=str)
        err.print(f"  {field}: {escape(shown if len(shown) <= 300 else shown[:300] + '...')}")


SHOWN_OUTPUTS = ("answer", "citations", "passages")  # printed in their own form below
OUTPUT_CHARS = 500


def output_text(value: Any, limit: int = OUTPUT_CHARS) -> str:
    """A declared output as one line: text as it is, anything else as compact JSON; cut at
    ``limit`` characters (hops or clusters can run to pages), saying how to see it all."""
    from pydantic_core import to_jsonable_python

    text = value if isinstance(value, str) else json.dumps(
        to_jsonable_python(value, fallback=str), ensure_ascii=False)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters; --json prints all)"


def print_outputs(compiled: ComposeGraph, state: dict[str, Any], as_json: bool) -> None:
    """Every declared output: answer, citations and passages in their own form, any other
    (a verdict, interpretations, tool calls) as a line of its own, so nothing a graph
    declares needs ``--json`` to be seen."""
    from compose.trace import totals

    outputs = compiled.outputs(state)
    if as_json:
        out.print_json(json.dumps(outputs, ensure_ascii=False))
        return
    out.print(f"[bold]answer:[/] {escape(str(outputs.get('answer')))}")
    if "citations" in outputs:
        out.print(f"[bold]citations:[/] {', '.join(outputs.get('citations') or []) or '(none)'}")
    for name, value in outputs.items():
        if name not in SHOWN_OUTPUTS:
            out.print(f"[bold]{escape(name)}:[/] {escape(output_text(value))}", soft_wrap=True)
    cited = set(outputs.get("citations") or [])
    for passage in outputs.get("passages") or []:
        mark = "*" if passage["id"] in cited else " "
        out.print(f"{mark} [{passage['rank']}] {passage['id']} [bold]{escape(passage['title'])}"
                  f"[/]: {escape(passage['text'][:200])}")
    spent = totals(state["trace"])
    out.print(f"[dim]{spent.llm_calls} LLM call(s), {spent.tokens_in} tokens in, "
              f"{spent.tokens_out} out, {spent.latency_s:.2f} s in nodes[/]")


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="Graph YAML files or shipped names.")],
    set_: SetOption = None,
) -> None:
    """Check graphs without running them; every problem is reported with its line."""
    from compose.graph.load import load_spec

    failed = False
    for name in files:
        try:
            load_spec(name, set_)
            out.print(f"[green]ok[/] {name}")
        except SPEC_ERRORS as exc:
            failed = True
            err.print(f"[red]invalid[/] {escape(str(exc))}")
    if failed:
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the graph YAML format (for editor validation)."""
    from compose.graph.spec import GraphSpec

    print(json.dumps(GraphSpec.model_json_schema(by_alias=True), indent=2))


@app.command()
def graphs() -> None:
    """List the graphs shipped with composerag.

    Only each file's description is read, not the spec: the full check would import the spec
    models and every module the graphs name (the test suite validates the shipped graphs)."""
    from compose.graph.shipped import shipped_description, shipped_graphs

    for name in shipped_graphs():
        out.print(f"[bold]{name}[/]: {escape(shipped_description(name))}")


@app.command()
def show(
    graph: Annotated[str, typer.Argument(help="Shipped graph name or YAML path.")],
    png: Annotated[Path | None, typer.Option(help="Also write a PNG (needs graphviz).")] = None,
    set_: SetOption = None,
) -> None:
    """Render a graph as Mermaid text (and PNG where graphviz is installed)."""
    from compose.graph.render import mermaid, write_png

    spec = open_graph_for_render(graph, set_)
    print(mermaid(spec))
    if png:
        try:
            write_png(spec, png)
        except ImportError as exc:
            fail(f"cannot write PNG: {exc}")
        err.print(f"wrote {png}")


def open_graph_for_render(graph: str, overrides: list[str] | None) -> GraphSpec:
    from compose.graph.load import load_spec

    try:
        return load_spec(graph, overrides)
    except SPEC_ERRORS as exc:
        fail(str(exc))


@app.command()
def modules(
    as_json: Annotated[bool, typer.Option("--json", help="Full schemas as JSON.")] = False,
) -> None:
    """List every registered module: purpose, and the fields of its input, output, params."""
    from compose.registry import list_modules

    described = [module.describe() for module in list_modules().values()]
    if as_json:
        print(json.dumps(described, indent=2))
        return
    # One block per module, not a table: at 80 columns a five-column table cuts module and
    # field names ("retrieval_deci…"), and a name is what the reader types into a graph.
    # Wrapped here at spaces only, so no name is ever split.
    def wrapped(text: str, indent: str) -> str:
        return textwrap.fill(text, width=max(out.width, 40), initial_indent=indent,
                             subsequent_indent=indent + "    ", break_long_words=False,
                             break_on_hyphens=False)

    for info in described:
        head = wrapped(f"{info['name']}: {info['purpose']}", "")
        out.print(f"[bold]{escape(info['name'])}[/]{escape(head[len(info['name']):])}",
                  soft_wrap=True, highlight=False)
        for part in ("input", "output", "params"):
            fields = ", ".join(info[part].get("properties", {})) or "(none)"
            out.print(escape(wrapped(f"{part}: {fields}", "  ")), soft_wrap=True,
                      highlight=False)


@module_app.command("run")
def module_run(
    name: Annotated[str, typer.Argument(help="Registered module name.")],
    input_json: Annotated[str, typer.Option("--input", help="Module input as JSON.")],
    params: Annotated[str, typer.Option(help="Module params as JSON.")] = "{}",
    index: IndexOption = None,
) -> None:
    """Run one module on one input and print its output as JSON."""
    from pydantic import ValidationError

    from compose.config import RetrieverConfig, RuntimeConfig
    from compose.registry import get_module
    from compose.runtime import Runtime

    try:
        module_cls = get_module(name)
        module = module_cls(json.loads(params))
        payload = json.loads(input_json)
    except (KeyError, ValueError, ValidationError) as exc:
        fail(str(exc))
    if index is None and module_cls.needs_index(module.params):
        from compose.corpora.demo import demo_index

        index = demo_index()
    runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(index) if index else None)))
    ctx = runtime.context()
    try:
        output = module(payload, ctx)
    except ValidationError as exc:
        fail(f"invalid input for {name}: {exc}")
    print(json.dumps({"output": output.model_dump(mode="json"),
                      "stats": ctx.stats.model_dump()}, indent=2, ensure_ascii=False))


@trace_app.command("show")
def trace_show(
    path: Annotated[Path, typer.Argument(help="A --trace JSONL, or an eval traces file.")],
    run_id: Annotated[str | None, typer.Option("--id", help="Question id (traces file).")] =
        None,
) -> None:
    """Render one run's chain (sub-questions, queries, passages, answers, verdicts, retries)."""
    from compose.cli.trace_view import read_trace, trace_tree

    try:
        title, events = read_trace(path, run_id)
    except (OSError, KeyError, ValueError) as exc:
        fail(str(exc))
    out.print(trace_tree(events, title))


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Argument(help="Corpus JSONL of {id, title, text}.")],
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the index to.")],
    index_type: Annotated[str, typer.Option("--type", help="flat or hnsw.")] = "flat",
    encoder: Annotated[str, typer.Option(help="Encoder name or local directory.")] =
        "all-MiniLM-L6-v2",
    batch_size: Annotated[int, typer.Option(help="Embedding batch size.")] = 64,
    skip_bad_lines: Annotated[bool, typer.Option(
        "--skip-bad-lines", help="Report each corpus line that is not a valid passage "
        "(FILE:LINE: reason) and build from the rest, instead of stopping at the first.")] = False,
) -> None:
    """Embed a corpus and write FAISS + BM25 indexes with a manifest."""
    from compose.corpus import read_corpus
    from compose.retrieval.index import build_index
    from compose.retrieval.manifest import IndexType

    if index_type not in ("flat", "hnsw"):
        fail("--type must be flat or hnsw")
    try:
        read = read_corpus(corpus, skip_bad_lines=skip_bad_lines)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    for bad in read.bad_lines:
        err.print(f"[yellow]skipped[/] {escape(str(bad))}")
    if read.bad_lines:
        err.print(f"{len(read.bad_lines)} bad line(s) skipped, {len(read.passages)} passages kept")
    try:
        manifest = build_index(read.passages, out_dir, encoder=encoder,
                               index_type=cast(IndexType, index_type),  # checked above
                               batch_size=batch_size)
    except ValueError as exc:  # IndexOutputError, EmptyCorpusError
        fail(str(exc))
    out.print(f"[green]built[/] {out_dir}: {manifest.count} passages, {manifest.index_type}, "
              f"dim {manifest.dimension}, {manifest.build_seconds:.1f} s")


@index_app.command("info")
def index_info(index_dir: Annotated[Path, typer.Argument(help="Index directory.")]) -> None:
    """Print an index's manifest."""
    from compose.retrieval.manifest import read_manifest

    try:
        print(read_manifest(index_dir).model_dump_json(indent=2))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


@app.command()
def serve(
    graphs: Annotated[list[str], typer.Argument(help="Shipped graph names or YAML paths.")],
    http: Annotated[bool, typer.Option("--http", help="Serve over HTTP (FastAPI).")] = False,
    mcp: Annotated[bool, typer.Option("--mcp", help="Serve as MCP tools.")] = False,
    transport: Annotated[str, typer.Option(
        help="MCP transport: stdio, or http (streamable HTTP at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="Address to bind (HTTP transports).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (HTTP transports).")] = 8000,
    index: IndexOption = None,
    set_: SetOption = None,
    cache: Annotated[bool, typer.Option(help="Use the module cache.")] = False,
    timeout_s: Annotated[float, typer.Option(help="Deadline of one graph run.")] = 300.0,
    max_body_kb: Annotated[int, typer.Option(help="Largest accepted request body.")] = 64,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host",
        help="A host name the HTTP server answers to besides 127.0.0.1, localhost and ::1, "
             "in Host and Origin headers (repeatable; '*' turns the check off, only behind a "
             "proxy that checks Host).")] = None,
    request_timeout_s: Annotated[float, typer.Option(
        help="Seconds a client has to send a whole request, headers and body, before it "
             "is answered 408 and cut (HTTP transports).")] = 10.0,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="COMPOSERAG_API_KEY", show_envvar=True,
        help="Require this key on every HTTP route but /healthz, as 'Authorization: Bearer "
             "KEY' or 'X-API-Key: KEY' (prefer the environment variable: a command line "
             "is visible to other users).")] = None,
    allow_unauthenticated_remote: Annotated[bool, typer.Option(
        "--allow-unauthenticated-remote",
        help="Bind a non-loopback address without --api-key (only behind a proxy that "
             "authenticates).")] = False,
) -> None:
    """Serve graphs over HTTP (one endpoint per graph) or MCP (one tool per graph)."""
    if http == mcp:
        fail("choose exactly one of --http or --mcp")
    if transport not in ("stdio", "http"):
        fail(f"unknown MCP transport {transport!r}; use stdio or http")
    from compose.serve.api_key import UnsafeBindError, check_bind, key_bytes

    if api_key is not None:
        try:
            key_bytes(api_key)
        except ValueError as exc:
            fail(f"--api-key / COMPOSERAG_API_KEY: {exc}")
    if http or transport == "http":
        try:
            check_bind(host, api_key, allow_unauthenticated_remote)
        except UnsafeBindError as exc:
            fail(str(exc))
    loaded = [open_graph(g, index, set_, cache) for g in graphs]
    names = [g.spec.name for g in loaded]
    if len(set(names)) != len(names):
        fail(f"two served graphs share a name: {', '.join(names)}")
    import uvicorn

    from compose.serve.slow_clients import server_config

    if http:
        from compose.serve.host_check import LOOPBACK_HOSTS
        from compose.serve.http_app import create_app

        # The address bound is a name clients use, unless it is a wildcard.
        bound = [] if host in ("0.0.0.0", "::") else [host]
        app_ = create_app(loaded, timeout_s=timeout_s, max_body_bytes=max_body_kb * 1024,
                          allowed_hosts=[*LOOPBACK_HOSTS, *bound, *(allowed_host or [])],
                          api_key=api_key)
        err.print(f"serving {', '.join(names)} on http://{host}:{port} (docs at /docs, "
                  f"OpenAI-compatible at /v1{'; API key required' if api_key else ''})")
        uvicorn.Server(server_config(app_, host=host, port=port,
                                     request_timeout_s=request_timeout_s,
                                     log_level="warning")).run()
        return
    import anyio

    from compose.serve.mcp_app import create_mcp_server, run_stdio

    server = create_mcp_server(loaded, timeout_s=timeout_s)
    if transport == "stdio":
        anyio.run(run_stdio, server)
        return
    err.print(f"serving MCP tools {', '.join(names)} on http://{host}:{port}/mcp")
    mcp_app: ASGIApp = server.streamable_http_app(
        host=host, max_request_body_size=max_body_kb * 1024)
    if api_key is not None:
        from compose.serve.api_key import APIKeyAuth

        mcp_app = APIKeyAuth(mcp_app, api_key)
    uvicorn.Server(server_config(mcp_app, host=host, port=port,
                                 request_timeout_s=request_timeout_s,
                                 log_level="warning")).run()


