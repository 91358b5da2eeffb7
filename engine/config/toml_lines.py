"""Where each key of a TOML document sits: tomllib returns values without line numbers.

A small tokenizer and structural walk over text that tomllib has already accepted, so it only
has to find keys, not judge syntax. Paths are tuples of keys and array indexes, as tomllib's
nesting would spell them: ("backend", "app", "servers", 1, "port") is the `port` of the second
server, whether it was written inline, on its own line, or under [[backend.app.servers]].
"""
from __future__ import annotations

import tomllib

Path = tuple  # of str keys and int array indexes

_PUNCT = "[]{},="
_NOT_BARE = set(_PUNCT) | set(" \t\r\n#\"'")


class TomlLines:
    """Line numbers (1-based) of the keys, table headers and array elements of one document."""

    def __init__(self, text: str) -> None:
        self._walker = _Walker(list(_tokens(text)))
        self._walker.document()
        self.lines: dict[Path, int] = self._walker.lines

    def get(self, path: Path) -> int | None:
        """The line of exactly this path, or None."""
        return self.lines.get(tuple(path))

    def nearest(self, path: Path) -> int | None:
        """The line of the path, or of its longest prefix that was written down."""
        path = tuple(path)
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return None


def _tokens(text: str):
    """(kind, value, line): kind is a punctuation char, "nl", "str" (a decoded string that may
    be a key), "val" (a multi-line string: never a key) or "bare" (keys, numbers, dates...)."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            yield "nl", "", line
            line += 1
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in _PUNCT:
            yield c, c, line
            i += 1
        elif text.startswith('"""', i) or text.startswith("'''", i):
            end = _multiline_end(text, i)
            yield "val", None, line
            line += text.count("\n", i, end)
            i = end
        elif c == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            end += 1
            # tomllib decodes the escapes exactly as it did for the document.
            yield "str", tomllib.loads("k = " + text[i:end])["k"], line
            i = end
        elif c == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            yield "str", text[i + 1:end], line
            i = end + 1
        else:
            end = i
            while end < n and text[end] not in _NOT_BARE:
                end += 1
            yield "bare", text[i:end], line
            i = end


def _multiline_end(text: str, start: int) -> int:
    quote, i, n = text[start:start + 3], start + 3, len(text)
    while i < n and not text.startswith(quote, i):
        i += 2 if quote == '"""' and text[i] == "\\" else 1
    # Up to two quotes may sit just before the closing three: the run's last three close it.
    end = i
    while end < n and end - i < 5 and text[end] == quote[0]:
        end += 1
    return end


class _Walker:
    def __init__(self, tokens: list) -> None:
        self.toks = tokens
        self.i = 0
        self.lines: dict[Path, int] = {}
        self.arrays: dict[Path, int] = {}  # [[array of tables]] path -> entries so far

    def peek(self) -> tuple:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "", 0)

    def skip(self, kind: str) -> None:
        if self.peek()[0] == kind:
            self.i += 1

    def mark(self, path: Path, line: int) -> None:
        # Prefixes keep their first mention; the path itself takes its explicit definition.
        for size in range(1, len(path)):
            self.lines.setdefault(path[:size], line)
        self.lines[path] = line

    def document(self) -> None:
        table: Path = ()
        while (kind := self.peek()[0]) != "eof":
            line = self.peek()[2]
            if kind == "nl":
                self.i += 1
            elif kind == "[":
                self.i += 1
                many = self.peek()[0] == "["
                self.skip("[")
                table = self.resolve(self.key("]"), many)
                self.skip("]")
                self.skip("]")
                self.mark(table, line)
            else:
                path = table + self.key("=")
                self.skip("=")
                self.mark(path, line)
                self.value(path)

    def resolve(self, keys: Path, many: bool) -> Path:
        """A header's keys as a path: through arrays of tables, into their latest entry."""
        path: Path = ()
        for n, key in enumerate(keys, 1):
            path += (key,)
            last = n == len(keys)
            if many and last:
                index = self.arrays.get(path, 0)
                self.arrays[path] = index + 1
                path += (index,)
            elif path in self.arrays:
                path += (self.arrays[path] - 1,)
        return path

    def key(self, stop: str) -> Path:
        parts: list[str] = []
        while (kind := self.peek()[0]) not in (stop, "nl", "eof"):
            value = self.peek()[1]
            self.i += 1
            if kind == "str":
                parts.append(value)
            elif kind == "bare":  # dotted keys: a.b, or a . b across tokens
                parts.extend(p for p in value.split(".") if p)
        return tuple(parts)

    def value(self, path: Path) -> None:
        kind = self.peek()[0]
        if kind == "{":
            self.i += 1
            self.inline_table(path)
        elif kind == "[":
            self.i += 1
            self.array(path)
        else:  # a scalar: possibly several bare tokens (a date with a space before its time)
            start = self.i
            while self.peek()[0] not in (",", "]", "}", "nl", "eof"):
                self.i += 1
            if self.i == start:  # no value where one belongs (text tomllib never saw): move on
                self.i += 1

    def inline_table(self, path: Path) -> None:
        while (kind := self.peek()[0]) not in ("}", "eof"):
            if kind in ("nl", ","):
                self.i += 1
                continue
            line = self.peek()[2]
            sub = path + self.key("=")
            self.skip("=")
            self.mark(sub, line)
            self.value(sub)
        self.skip("}")

    def array(self, path: Path) -> None:
        index = 0
        while (kind := self.peek()[0]) not in ("]", "eof"):
            if kind == "nl":
                self.i += 1
            elif kind == ",":
                self.i += 1
                index += 1
            else:
                self.mark(path + (index,), self.peek()[2])
                self.value(path + (index,))
        self.skip("]")
