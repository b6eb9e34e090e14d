"""YAML loading that remembers where every value came from.

`load(text, filename)` returns plain dicts, lists and scalars; mappings are `Marked`
dicts that know the line and column of each key and value, so the graph validator
can name file:line:column for any mistake.

Designers write `on: enemy_spotted`. YAML 1.1 reads a bare `on`/`off`/`yes`/`no` as a
boolean, which would silently turn that key into `True`; here only `true` and
`false` are booleans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Marked(dict):
    """A mapping that knows where it, its keys and its values are in the file."""

    mark: Mark
    key_marks: dict
    value_marks: dict

    def key_mark(self, key) -> Mark:
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key) -> Mark:
        return self.value_marks.get(key, self.mark)


class MarkedList(list):
    mark: Mark
    item_marks: list


# libyaml's parser when PyYAML has it: a live reload parses in the daemon's process.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    pass


# Keep YAML 1.1's resolvers except the boolean one, which we narrow to true/false.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mark(node: yaml.Node, filename: str) -> Mark:
    return Mark(filename, node.start_mark.line + 1, node.start_mark.column + 1)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Marked:
    result = Marked()
    result.mark = _mark(node, loader.segue_filename)
    result.key_marks = {}
    result.value_marks = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.MarkedYAMLError(
                "while reading a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = _mark(key_node, loader.segue_filename)
        result.value_marks[key] = _mark(value_node, loader.segue_filename)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.mark = _mark(node, loader.segue_filename)
    result.item_marks = [_mark(child, loader.segue_filename) for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class YamlSyntaxError(ValueError):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(f"{mark}: {message}")
        self.mark = mark
        self.message = message


def load(text: str, filename: str):
    """Parse YAML safely (SafeLoader rules) keeping marks; raises YamlSyntaxError."""
    loader = _Loader(text)
    loader.segue_filename = filename
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        mark = Mark(filename, where.line + 1, where.column + 1) if where else Mark(filename, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSyntaxError(mark, f"YAML syntax: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a byte YAML refuses: say where it sits
        position = exc.position
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        char = exc.character
        what = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise YamlSyntaxError(
            Mark(filename, line, column),
            f"YAML: character {what} is not allowed here "
            "(control characters and NUL bytes cannot appear in YAML)",
        ) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())  # one line
        raise YamlSyntaxError(Mark(filename, 1, 1), f"YAML: {message}") from None
    finally:
        loader.dispose()
