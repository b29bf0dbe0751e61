"""Go's text rules that etcdctl's input follows: string literals (``strconv.Unquote``), the
``fmt.Sscanf`` verbs a txn compare is read with, and etcdctl's ``argify`` (a line split into
words, with quotes)."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

__all__ = ["GoSyntaxError", "argify", "scan_quoted", "scan_word", "skip_spaces", "unquote"]


class GoSyntaxError(ValueError):
    """Text that is not what Go expects; the message is Go's (``invalid syntax``...)."""


_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX = "0123456789abcdefABCDEF"


def unquote(literal: str) -> bytes:
    """A Go string literal (``"..."`` with escapes, or a raw ```...```) as bytes."""
    if len(literal) >= 2 and literal[0] == literal[-1] == "`":
        body = literal[1:-1]
        if "`" in body:
            raise GoSyntaxError("invalid syntax")
        return body.replace("\r", "").encode("utf-8", "surrogateescape")
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise GoSyntaxError("invalid syntax")
    body = literal[1:-1]
    out = bytearray()
    index = 0
    while index < len(body):
        char = body[index]
        if char == '"' or char == "\n":
            raise GoSyntaxError("invalid syntax")
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            index += 1
            continue
        if index + 1 >= len(body):
            raise GoSyntaxError("invalid syntax")
        kind = body[index + 1]
        index += 2
        if kind in _SIMPLE:
            out.append(_SIMPLE[kind])
        elif kind in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[kind]
            digits = body[index : index + size]
            if len(digits) != size or any(d not in _HEX for d in digits):
                raise GoSyntaxError("invalid syntax")
            value = int(digits, 16)
            index += size
            if kind == "x":
                out.append(value)
            else:
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise GoSyntaxError("invalid syntax")
                out += chr(value).encode("utf-8")
        elif kind in "01234567":
            digits = body[index - 1 : index + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise GoSyntaxError("invalid syntax")
            value = int(digits, 8)
            if value > 255:
                raise GoSyntaxError("invalid syntax")
            out.append(value)
            index += 2
        else:
            raise GoSyntaxError("invalid syntax")
    return bytes(out)


def skip_spaces(text: str, index: int) -> int:
    """Past the spaces at ``index`` (fmt's scanning skips them before each verb)."""
    while index < len(text) and text[index] in " \t\r":
        index += 1
    return index


def scan_quoted(text: str, index: int) -> Tuple[Optional[bytes], int]:
    """fmt's ``%q`` at ``index``: the string and where scanning stopped; None when there is
    no quoted string there. GoSyntaxError for a bad one."""
    index = skip_spaces(text, index)
    if index >= len(text) or text[index] not in '"`':
        return None, index
    quote = text[index]
    end = index + 1
    while end < len(text):
        if text[end] == "\\" and quote == '"':
            end += 2
            continue
        if text[end] == quote:
            break
        end += 1
    if end >= len(text):
        raise GoSyntaxError("unexpected EOF")
    return unquote(text[index : end + 1]), end + 1


def scan_word(text: str, index: int) -> Tuple[Optional[str], int]:
    """fmt's ``%s``: the next run of non-space characters (None at the end)."""
    index = skip_spaces(text, index)
    end = index
    while end < len(text) and not text[end].isspace():
        end += 1
    if end == index:
        return None, index
    return text[index:end], end


_WORD = re.compile(r""""(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?""")


def argify(line: str) -> List[str]:
    """etcdctl's ``argify``: the words of ``line``; "double-quoted" words are Go strings,
    'single-quoted' ones taken as they are (etcdctl 3.5 cuts them wrongly: not copied)."""
    words: List[str] = []
    for word in _WORD.findall(line):
        if word.startswith("'"):
            word = word[1:-1]
        elif word.startswith('"'):
            word = unquote(word).decode("utf-8", "surrogateescape")
        words.append(word)
    return words
