"""Load test of the HTTP server: N concurrent clients send a fixed number of requests.

    python bench/load.py [--graph naive_rag] [--clients 1 4 8] [--requests 16] [--stream]
                         [--openai]

Starts ``composerag serve --http GRAPH`` (the real CLI, the embedded model, the demo index,
module cache off) on a loopback port, then for each client count sends ``--requests``
questions from the demo set, each client sending its next request when the previous one is
answered. Reports throughput, p50/p95 latency, errors (non-200, timeouts, broken streams)
and incomplete responses (no answer, citations outside the returned passages, a stream without
its end event). With one local model, calls are serialised by the generator, so throughput is
bounded by the model and latency grows with the queue - the table shows by how much.

With ``--openai`` the requests go to the OpenAI-compatible route ``/v1/chat/completions``
instead, and each streamed reply is also checked for the chunk format (one id, the role
first, one ``finish_reason: "stop"`` chunk last, ``data: [DONE]``): a malformed stream is
an error, a message that does not begin with the answer is incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
from rich.console import Console
from rich.table import Table

from compose.corpora.demo import load_demo


@dataclass
class LoadResult:
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    incomplete: int = 0
    wall_s: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(graph: str, port: int, timeout_s: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "compose.cli", "serve", graph, "--http", "--port",
               str(port), "--timeout-s", str(timeout_s)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("server did not come up in 180 s")


def complete(output: dict) -> bool:
    """An answer, and citations that point into the passages returned with it."""
    passage_ids = {p["id"] for p in output.get("passages") or []}
    return bool(str(output.get("answer") or "").strip()) and \
        set(output.get("citations") or []) <= passage_ids


def read_chat_stream(lines: list[str]) -> tuple[str, dict]:
    """The message and the graph's outputs of an OpenAI chat-completion SSE stream; a
    ValueError when the stream is not well-formed, a RuntimeError for an error event."""
    chunks = [json.loads(line[len("data: "):]) for line in lines
              if line.startswith("data: ") and line != "data: [DONE]"]
    for chunk in chunks:
        if "error" in chunk:
            raise RuntimeError(chunk["error"]["message"])
    if not chunks or lines[-1] != "data: [DONE]":
        raise ValueError("the stream did not end with data: [DONE]")
    if len({chunk["id"] for chunk in chunks}) != 1:
        raise ValueError("the chunks carry different ids")
    if chunks[0]["choices"][0]["delta"].get("role") != "assistant":
        raise ValueError("the first chunk does not carry the assistant role")
    finishing = [n for n, chunk in enumerate(chunks) if chunk["choices"][0]["finish_reason"]]
    if finishing != [len(chunks) - 1] or chunks[-1]["choices"][0]["finish_reason"] != "stop":
        raise ValueError(f"finish_reason is set on chunks {finishing} of {len(chunks)}")
    content = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    return content, chunks[-1]["composerag"]["output"]


async def one_chat_request(client: httpx.AsyncClient, url: str, graph: str, question: str,
                           stream: bool) -> bool:
    """One completion over the OpenAI route; whether it came back complete."""
    body = {"model": graph, "messages": [{"role": "user", "content": question}],
            "stream": stream}
    if stream:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            content, output = read_chat_stream([line async for line in r.aiter_lines() if line])
    else:
        reply = await client.post(f"{url}/v1/chat/completions", json=body)
        reply.raise_for_status()
        data = reply.json()
        content, output = data["choices"][0]["message"]["content"], data["composerag"]["output"]
    return complete(output) and content.startswith(output["answer"])


async def one_request(client: httpx.AsyncClient, url: str, graph: str, question: str,
                      stream: bool, chat: bool, result: LoadResult) -> None:
    started = time.perf_counter()
    try:
        if chat:
            ok = await one_chat_request(client, url, graph, question, stream)
        elif stream:
            output = None
            async with client.stream("POST", f"{url}/graphs/{graph}/stream",
                                     json={"question": question}) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line:
                        event = json.loads(line)
                        if event["event"] == "error":
                            raise RuntimeError(event["detail"])
                        if event["event"] == "end":
                            output = event["output"]
            ok = output is not None and complete(output)
        else:
            reply = await client.post(f"{url}/graphs/{graph}/invoke",
                                      json={"question": question})
            reply.raise_for_status()
            ok = complete(reply.json()["output"])
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        return
    result.latencies.append(time.perf_counter() - started)
    result.incomplete += not ok


async def run_load(url: str, graph: str, questions: list[str], clients: int, requests: int,
                   stream: bool, chat: bool) -> LoadResult:
    result = LoadResult(clients=clients)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(questions[number % len(questions)])

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            await one_request(client, url, graph, queue.get_nowait(), stream, chat, result)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    result.wall_s = time.perf_counter() - started
    return result


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="naive_rag")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=16, help="per client count")
    parser.add_argument("--stream", action="store_true", help="use the streaming endpoint")
    parser.add_argument("--openai", action="store_true",
                        help="use the OpenAI-compatible route /v1/chat/completions")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="server deadline")
    args = parser.parse_args()
    questions = [item.question for item in load_demo().questions]
    port = free_port()
    server = start_server(args.graph, port, args.timeout_s)
    url = f"http://127.0.0.1:{port}"

    def load(clients: int, requests: int) -> LoadResult:
        return asyncio.run(run_load(url, args.graph, questions, clients, requests, args.stream,
                                    args.openai))

    try:
        load(1, 1)  # warm-up: model load
        results = [load(n, args.requests) for n in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    mode = ("openai " if args.openai else "") + ("stream" if args.stream else "invoke")
    table = Table(title=f"HTTP load test: {args.graph} ({mode}), {args.requests} requests "
                        "per row, embedded model, cache off")
    for column in ("clients", "requests", "throughput req/s", "p50 s", "p95 s", "max s",
                   "errors", "incomplete", "wall s"):
        table.add_column(column, justify="right")
    for r in results:
        done = len(r.latencies)
        table.add_row(str(r.clients), str(done + len(r.errors)), f"{done / r.wall_s:.2f}",
                      f"{percentile(r.latencies, 50):.2f}", f"{percentile(r.latencies, 95):.2f}",
                      f"{max(r.latencies, default=float('nan')):.2f}", str(len(r.errors)),
                      str(r.incomplete), f"{r.wall_s:.1f}")
    Console(width=150).print(table)
    for r in results:
        for error in r.errors[:3]:
            print(f"clients={r.clients}: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
