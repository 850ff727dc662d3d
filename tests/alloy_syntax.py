"""A reader for the part of Grafana Alloy's configuration syntax that loki/alloy/config.alloy uses.

No Alloy binary can run here (`alloy fmt` would be the real check), so the tests read the file with
this: blocks (`name "label" { ... }`), attributes (`key = value`), strings, numbers, booleans, lists,
objects and references to other components' exports (`loki.write.loki.receiver`). Anything else
(function calls, operators) is a syntax error here, so a file that grows past this subset fails loudly
instead of being half read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}\[\],=])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. `discovery.docker.containers.targets`."""

    path: str


@dataclass
class Block:
    name: str
    label: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def children(self, name: str) -> list[Block]:
        return [b for b in self.blocks if b.name == name]

    def child(self, name: str) -> Block:
        [only] = self.children(name)
        return only


class AlloySyntaxError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise AlloySyntaxError(f"line {line}: cannot read {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "", -1)

    def take(self, kind: str, text: str | None = None) -> str:
        k, t, line = self.peek()
        if k != kind or (text is not None and t != text):
            raise AlloySyntaxError(f"line {line}: expected {text or kind}, found {t!r}")
        self.i += 1
        return t

    def body(self, block: Block, closing: str | None) -> Block:
        while True:
            kind, text, line = self.peek()
            if closing is None and kind == "eof":
                return block
            if kind == "punct" and text == closing:
                self.i += 1
                return block
            name = self.take("ident")
            kind, text, line = self.peek()
            if (kind, text) == ("punct", "="):
                if "." in name:
                    raise AlloySyntaxError(f"line {line}: attribute name {name!r} has a dot")
                if name in block.attrs:
                    raise AlloySyntaxError(f"line {line}: {name} set twice")
                self.i += 1
                block.attrs[name] = self.value()
                continue
            label = None
            if kind in ("string", "raw"):
                label = _string(self.take(kind))
            self.take("punct", "{")
            block.blocks.append(self.body(Block(name, label), "}"))

    def value(self) -> Any:
        kind, text, line = self.peek()
        self.i += 1
        if kind in ("string", "raw"):
            return _string(text)
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            if text in ("true", "false"):
                return text == "true"
            if text == "null":
                return None
            return Ref(text)
        if (kind, text) == ("punct", "["):
            items: list[Any] = []
            while self.peek()[1] != "]":
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.i += 1
            self.i += 1
            return items
        if (kind, text) == ("punct", "{"):
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                k, key, kline = self.peek()
                if k not in ("ident", "string"):
                    raise AlloySyntaxError(f"line {kline}: object key expected, found {key!r}")
                self.i += 1
                key = _string(key) if k == "string" else key
                if key in obj:
                    raise AlloySyntaxError(f"line {kline}: key {key} set twice")
                self.take("punct", "=")
                obj[key] = self.value()
                if self.peek()[1] == ",":
                    self.i += 1
                elif self.peek()[1] != "}":
                    raise AlloySyntaxError(f"line {kline}: `,` expected after {key}")
            self.i += 1
            return obj
        raise AlloySyntaxError(f"line {line}: value expected, found {text!r}")


def _string(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return str(json.loads(token))  # Alloy's escapes are Go's, which JSON's cover for what we write


def parse(text: str) -> Block:
    """The file as one root block whose children are its top-level components."""
    return _Parser(text).body(Block("<root>"), None)


def exports(root: Block) -> set[str]:
    """`<component name>.<label>` of every top-level component: what references must start with."""
    return {f"{b.name}.{b.label}" for b in root.blocks if b.label is not None}


def references(block: Block) -> list[Ref]:
    """Every reference anywhere in `block` (attributes of nested blocks included)."""
    found: list[Ref] = []

    def walk(value: Any) -> None:
        if isinstance(value, Ref):
            found.append(value)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(block.attrs)
    for child in block.blocks:
        found.extend(references(child))
    return found
