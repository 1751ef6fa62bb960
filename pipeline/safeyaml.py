"""YAML from users, read without letting aliases multiply it.

YAML anchors and aliases (``&a`` ... ``*a``) let a 14-line file stand for a
billion values ("billion laughs"): ``yaml.safe_load`` builds it cheaply, because
every alias is the same Python object, but everything that walks the result
afterwards (pydantic's validation of a config, the repr in its error message)
visits every repeated value, and ``consensa validate`` on such a file grew past
8 GB. :func:`load` composes the node graph first and counts, with memoisation,
how many values the aliases add; past :data:`MAX_ALIAS_VALUES` (or on an alias
that contains itself) it raises :class:`AliasExpansionError` naming the line,
before anything is constructed. Ordinary aliases (a shared list of names, a
``<<: *defaults`` merge) add a few dozen values and load as before.

YAML that Consensa writes (config.yaml, protocol.yaml, codebook.yaml) goes through
:func:`dump`, so that every string it holds reads back exactly: see :class:`Dumper`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: values the aliases of one document may add beyond those written out; a config
#: that reuses a list of names in a few places adds hundreds
MAX_ALIAS_VALUES = 100_000


class AliasExpansionError(yaml.MarkedYAMLError):
    """The aliases of a document stand for too many values, or for themselves.

    A :class:`yaml.YAMLError`, so callers that report YAML errors report it too;
    ``problem_mark`` is where it happened."""


def _check_aliases(root: Node, limit: int) -> None:
    """Raise :class:`AliasExpansionError` when expanding the aliases under ``root``
    would add more than ``limit`` values (or never end).

    A node met a second time is an alias: it adds its whole expanded size again.
    Sizes are memoised, so the check costs one visit per distinct node however
    large the expansion would be.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    added = 0

    def size(node: Node) -> int:
        nonlocal added
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AliasExpansionError(
                problem="an alias (*name) refers to the collection it is inside, so it never "
                        "ends", problem_mark=node.start_mark)
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [x for pair in node.value for x in pair]
        else:
            sizes[key] = 1
            return 1
        open_nodes.add(key)
        total = 1
        for child in children:
            if id(child) in sizes:          # seen before: this is an alias of it
                added += sizes[id(child)]
                if added > limit:
                    raise AliasExpansionError(
                        problem=f"the aliases (*name) here repeat more than {limit:,} values",
                        problem_mark=node.start_mark)
            total += size(child)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping gives the same key twice. YAML loaders keep the last value and drop
    the first without a word (a ``segment:`` section written twice loses the first
    one's settings), so a file from a user that does this is refused, naming both
    lines."""


def _check_duplicate_keys(root: Node) -> None:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in first:
                        raise DuplicateKeyError(
                            problem=f"the key '{key.value}' is given twice (first on line "
                                    f"{first[key.value].start_mark.line + 1}), and only the last "
                                    "would be kept", problem_mark=key.start_mark)
                    first[key.value] = key
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


#: libyaml's parser where PyYAML was built with it: it reads a run's config.yaml in
#: 2 ms where the pure-Python one takes 18, and every command reads one
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BoundedSafeLoader(_SAFE_LOADER):
    """``yaml.SafeLoader`` that checks the composed document with
    :func:`_check_aliases` and :func:`_check_duplicate_keys` before constructing any
    Python object from it."""

    alias_limit = MAX_ALIAS_VALUES

    def get_single_node(self) -> Node | None:
        try:
            node = super().get_single_node()
        except yaml.MarkedYAMLError as exc:
            # libyaml stops at its nesting limit where the pure-Python parser runs out
            # of Python's stack: the same error to the callers, which say "nested too
            # deeply" for it
            if "nesting depth" in str(exc.problem):
                raise RecursionError(exc.problem) from exc
            raise
        if node is not None:
            _check_aliases(node, self.alias_limit)
            _check_duplicate_keys(node)
        return node


#: the characters YAML reads as line breaks besides "\n": carriage return, NEL
#: (U+0085: a Windows-1252 ellipsis read as Latin-1 by another program, which a .qdc or
#: .qdpx file or a pasted note can carry), line separator and paragraph separator
LINE_BREAKS = frozenset("\r\x85\u2028\u2029")


class Dumper(yaml.SafeDumper):
    r"""``yaml.SafeDumper`` whose strings all read back as they were written.

    With ``allow_unicode=True`` PyYAML writes a string holding NEL (U+0085) in single
    quotes, with the NEL itself as a line break, and its loader folds that break into a
    space: a judge's note or a code name from a .qdpx came back changed in
    codebook.yaml or protocol.yaml. U+2028 and U+2029 happen to survive, but as raw
    line breaks that editors and diff programs show as new lines. A string holding any of
    :data:`LINE_BREAKS` is therefore written in double quotes, where PyYAML escapes
    them (``\N``, ``\L``, ``\P``, ``\r``); every other string is written as before.
    """


def _represent_str(dumper: Dumper, data: str) -> yaml.ScalarNode:
    if LINE_BREAKS.isdisjoint(data):
        return dumper.represent_str(data)
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')


Dumper.add_representer(str, _represent_str)


def dump(data: Any, **options: Any) -> str:
    """``yaml.safe_dump(data, allow_unicode=True, sort_keys=False, **options)`` with
    :class:`Dumper`, so that :func:`load` gives ``data`` back exactly."""
    return yaml.dump(data, Dumper=Dumper, **{"allow_unicode": True, "sort_keys": False,
                                              **options})


def load(text: str | bytes) -> Any:
    """``yaml.safe_load(text)`` for text from users: refuses alias bombs.

    Raises :class:`yaml.YAMLError` (:class:`AliasExpansionError` for aliases)."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def error_line(exc: yaml.YAMLError, hint: str) -> tuple[int | None, str]:
    """The line a YAML error names, and ``hint`` with where the part it breaks began
    when that is lines earlier: a quote left open runs on until YAML fails far below
    it, so "that line" alone points past the mistake."""
    mark = getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)
    if mark is None:
        return None, hint
    if start is not None and start.line < mark.line - 1:
        hint = (f"{hint}; the part it breaks begins at line {start.line + 1}: a quote "
                f"left open between lines {start.line + 1} and {mark.line + 1} gives this "
                "error too")
    return mark.line + 1, hint


def load_file(path: str | Path, *, what: str = "YAML file", hint: str = "") -> Any:
    """A YAML file read with :func:`load`; a file that is not valid YAML, or that
    holds an alias bomb, is an :class:`~pipeline.errors.InputError` naming the file
    and line, never a traceback."""
    from .errors import InputError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the {what} ({exc.__class__.__name__})", path=path,
                         hint=hint or "check that it is a UTF-8 text file you can read") from None
    try:
        return load(text)
    except RecursionError:
        raise InputError(f"the {what} is nested too deeply to read", path=path,
                         hint=hint or "a file Consensa reads nests a few levels deep; check "
                                      "the brackets") from None
    except yaml.YAMLError as exc:
        line, hint = error_line(exc, hint or "check the indentation and colons on that line")
        raise InputError(f"the {what} is not valid YAML: {getattr(exc, 'problem', None) or exc}",
                         path=path, line=line, hint=hint) from None
