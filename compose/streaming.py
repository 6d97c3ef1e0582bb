"""Token streaming of a graph's final answer.

Modules emit JSON (``{"answer": "...", "citations": [1]}``), so the raw tokens of the model
are not the answer. :class:`FieldStream` reads the JSON text as it is generated and gives the
decoded characters of one top-level string field as they appear, normalised as the module's
``postprocess`` normalises it (``answer.strip()``), so the streamed text is the final answer
and not a prefix that later changes.

:class:`TokenSink` is where one node's answer goes: LangGraph's custom stream, as events

- ``{"event": "token", "node": NODE, "text": PIECE}``: the next piece of the answer;
- ``{"event": "token_reset", "node": NODE}``: forget the node's pieces so far; the pieces
  that follow are a new answer. This happens when a structured call is retried after text
  was streamed (a reply that did not parse), when a module makes a second streamed call, or
  when the node's final answer is not what was streamed.

When the node finishes, :meth:`TokenSink.settle` makes the pieces since the last reset equal
the node's answer output: an answer that came from the cache, or from a module path without
a streamed call, arrives as one piece. Token events are produced only when asked for
(:func:`with_tokens` in the run's config), so plain runs pass no callback to the generator.

Usage::

    for event in graph.stream({"question": "..."}, stream_mode="tokens"):
        if event["event"] == "token":
            print(event["text"], end="", flush=True)

or, on the compiled LangGraph object (say, as a subgraph of another application)::

    graph.graph.stream(state, with_tokens(config), stream_mode="custom")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

TOKENS_KEY = "composerag_stream_tokens"
"""The ``configurable`` key that asks the answer-writing nodes for token events."""

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def with_tokens(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with token events switched on."""
    merged = dict(config or {})
    merged["configurable"] = {**merged.get("configurable", {}), TOKENS_KEY: True}
    return merged


def tokens_requested(config: Mapping[str, Any] | None) -> bool:
    return bool((config or {}).get("configurable", {}).get(TOKENS_KEY))


class FieldStream:
    """The decoded, stripped characters of one top-level string field of a JSON object, fed
    the object's text in pieces of any size.

    Text before the object's first ``{`` is skipped (a backend without schema support may
    write chatter first). Escapes (``\\"``, ``\\n``, ``\\u00e9``, surrogate pairs) are
    decoded as ``json.loads`` decodes them, even when split across pieces. Leading whitespace
    is dropped and trailing whitespace is held back until more text follows it, so what is
    returned concatenates to ``json.loads(text)[field].strip()``.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.done = False
        self._depth = 0            # open objects/arrays
        self._expect_key = False   # at depth 1: the next string is a key
        self._value_started = False
        self._last_key: str | None = None
        self._role: str | None = None  # inside a string: "key", "target" or "skip"
        self._key: list[str] = []
        self._escape = False
        self._hex: str | None = None   # digits of a \\u escape being read
        self._high: int | None = None  # a high surrogate waiting for its low half
        self._started = False          # a non-space character of the field was returned
        self._spaces = ""              # whitespace held back

    def feed(self, piece: str) -> str:
        """The field's characters that ``piece`` completes ("" when none)."""
        out: list[str] = []
        for char in piece:
            if self.done:
                break
            if self._role is not None:
                self._string_char(char, out)
            else:
                self._structure_char(char)
        return "".join(out)

    def _structure_char(self, char: str) -> None:
        if self._depth == 0:
            if char == "{":
                self._depth, self._expect_key = 1, True
            return
        if char == '"':
            if self._depth > 1:
                self._role = "skip"
            elif self._expect_key:
                self._role, self._key = "key", []
            else:
                self._role = "target" if (self._last_key == self.field
                                          and not self._value_started) else "skip"
                self._value_started = True
        elif char in "{[":
            self._depth += 1
            self._value_started = True
        elif char in "}]":
            self._depth -= 1
            if self._depth == 0:
                self.done = True
        elif self._depth == 1:
            if char == ":":
                self._expect_key, self._value_started = False, False
            elif char == ",":
                self._expect_key = True
            elif not char.isspace():
                self._value_started = True  # a number, true, false or null

    def _string_char(self, char: str, out: list[str]) -> None:
        if self._hex is not None:
            if char not in _HEX_DIGITS:  # not JSON: the node's settle corrects the answer
                self.done = True
                return
            self._hex += char
            if len(self._hex) == 4:
                code, self._hex = int(self._hex, 16), None
                self._code_unit(code, out)
            return
        if self._escape:
            self._escape = False
            if char == "u":
                self._hex = ""
            else:
                self._decoded(_ESCAPES.get(char, char), out)
            return
        if char == "\\":
            self._escape = True
        elif char == '"':
            self._close_string(out)
        else:
            self._decoded(char, out)

    def _code_unit(self, code: int, out: list[str]) -> None:
        """One ``\\uXXXX`` escape: surrogate halves pair up, as in ``json.loads``."""
        if self._high is not None and 0xDC00 <= code <= 0xDFFF:
            high, self._high = self._high, None
            self._emit(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)), out)
        elif 0xD800 <= code <= 0xDBFF:
            self._flush_high(out)
            self._high = code
        else:
            self._decoded(chr(code), out)

    def _decoded(self, char: str, out: list[str]) -> None:
        self._flush_high(out)
        self._emit(char, out)

    def _flush_high(self, out: list[str]) -> None:
        if self._high is not None:
            high, self._high = self._high, None
            self._emit(chr(high), out)

    def _emit(self, char: str, out: list[str]) -> None:
        if self._role == "key":
            self._key.append(char)
        elif self._role == "target":
            if char.isspace():
                if self._started:
                    self._spaces += char
            else:
                out.append(self._spaces + char)
                self._spaces, self._started = "", True

    def _close_string(self, out: list[str]) -> None:
        self._flush_high(out)
        role, self._role = self._role, None
        if role == "key":
            self._last_key = "".join(self._key)
        elif role == "target":
            self.done = True  # trailing whitespace is never returned


class TokenSink:
    """One node's answer as token events, written to LangGraph's custom stream."""

    def __init__(self, node: str, write: Callable[[dict[str, Any]], None]) -> None:
        self.node = node
        self._write = write
        self._shown = ""      # the pieces the consumer holds since the last reset
        self._stale = False   # a new call began: its first piece replaces what is shown

    def attempt(self, field: str) -> Callable[[str], None]:
        """The ``on_text`` of one generator call whose JSON reply carries the answer in
        ``field``: its decoded characters become token events."""
        extractor = FieldStream(field)
        self._stale = bool(self._shown)

        def on_text(piece: str) -> None:
            text = extractor.feed(piece)
            if text:
                if self._stale:
                    self._reset()
                self._show(text)

        return on_text

    def settle(self, answer: Any) -> None:
        """Make the pieces since the last reset equal the node's answer output."""
        final = answer if isinstance(answer, str) else ""
        self._stale = False
        if final == self._shown:
            return
        if not final.startswith(self._shown):
            self._reset()
        self._show(final[len(self._shown):])

    def _show(self, text: str) -> None:
        if text:
            self._write({"event": "token", "node": self.node, "text": text})
            self._shown += text

    def _reset(self) -> None:
        self._write({"event": "token_reset", "node": self.node})
        self._shown, self._stale = "", False
