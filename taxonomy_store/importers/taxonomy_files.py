"""Reading taxonomy definition files (YAML or JSON) into validated plain records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxonomy_store.errors import TaxonomyFileError, UnknownTaxonomy
from taxonomy_store.paths import check_readable_file, package_dir

# Any other key of a node (e.g. xstest_types) is kept in the node's attributes.
_CORE_KEYS = {"code", "name", "short_name", "description", "children"}


@dataclass
class NodeDef:
    code: str
    name: str
    short_name: str | None = None
    description: str | None = None
    children: list["NodeDef"] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def walk(self, depth: int = 0):
        yield self, depth
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass
class TaxonomyDef:
    name: str
    title: str
    description: str | None
    source: str | None
    levels: list[str]
    nodes: list[NodeDef]
    path: str

    def walk(self):
        for node in self.nodes:
            yield from node.walk()


def builtin_dir() -> Path:
    return package_dir("seeds") / "taxonomies"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def locate(name_or_file: str) -> Path:
    """A built-in taxonomy's name, or a path to a YAML/JSON file."""
    candidate = Path(name_or_file)
    if candidate.suffix.lower() in (".yaml", ".yml", ".json") or candidate.exists():
        check_readable_file(candidate)  # a directory, a missing or unreadable file: error with a hint
        return candidate
    builtin = builtin_dir() / f"{name_or_file}.yaml"
    if builtin.is_file():
        return builtin
    raise UnknownTaxonomy(
        f"unknown taxonomy {name_or_file!r}",
        f"built-in taxonomies: {', '.join(builtin_names())}; or give a .yaml/.json file",
    )


def _parse(path: Path) -> Any:
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaxonomyFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise TaxonomyFileError(f"{path}: cannot read: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TaxonomyFileError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from exc
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TaxonomyFileError(f"{path}{where}: invalid YAML: {problem}") from exc


def _required(value: Any, where: str, key: str, path: Path) -> str:
    text = _text(value, where, key, path, True)
    assert text is not None  # _text raised for a missing required value
    return text


def _text(value: Any, where: str, key: str, path: Path, required: bool) -> str | None:
    if value is None:
        if required:
            raise TaxonomyFileError(f"{path}: {where}: missing {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TaxonomyFileError(f"{path}: {where}: {key!r} must be text, not {type(value).__name__}")
    text = str(value).strip()
    if required and not text:
        raise TaxonomyFileError(f"{path}: {where}: {key!r} is empty")
    return text or None


def _node(raw: Any, where: str, path: Path, seen: dict[str, str]) -> NodeDef:
    if not isinstance(raw, dict):
        raise TaxonomyFileError(f"{path}: {where}: a node must be a mapping with 'code' and 'name'")
    code = _required(raw.get("code"), where, "code", path)
    name = _required(raw.get("name"), where, "name", path)
    if code in seen:
        raise TaxonomyFileError(f"{path}: {where}: code {code!r} is already used at {seen[code]}")
    seen[code] = where
    children_raw = raw.get("children") or []
    if not isinstance(children_raw, list):
        raise TaxonomyFileError(f"{path}: {where}: 'children' must be a list")
    extra = {k: v for k, v in raw.items() if k not in _CORE_KEYS}
    return NodeDef(
        code=code,
        name=name,
        short_name=_text(raw.get("short_name"), where, "short_name", path, False),
        description=_text(raw.get("description"), where, "description", path, False),
        children=[_node(c, f"{where}.children[{i}]", path, seen) for i, c in enumerate(children_raw)],
        extra=extra,
    )


def read_taxonomy_file(path: Path) -> TaxonomyDef:
    data = _parse(path)
    if not isinstance(data, dict):
        raise TaxonomyFileError(f"{path}: expected a mapping with 'name' and 'nodes' at the top")
    name = _required(data.get("name"), "top level", "name", path)
    nodes_raw = data.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise TaxonomyFileError(f"{path}: top level: 'nodes' must be a non-empty list")
    levels = data.get("levels") or []
    if not isinstance(levels, list) or not all(isinstance(x, str) for x in levels):
        raise TaxonomyFileError(f"{path}: top level: 'levels' must be a list of names")
    seen: dict[str, str] = {}
    nodes = [_node(n, f"nodes[{i}]", path, seen) for i, n in enumerate(nodes_raw)]
    definition = TaxonomyDef(
        name=name,
        title=_text(data.get("title"), "top level", "title", path, False) or name,
        description=_text(data.get("description"), "top level", "description", path, False),
        source=_text(data.get("source"), "top level", "source", path, False),
        levels=list(levels),
        nodes=nodes,
        path=str(path),
    )
    depth = max(d for _, d in definition.walk()) + 1
    if levels and len(levels) < depth:
        raise TaxonomyFileError(f"{path}: top level: 'levels' names {len(levels)} levels but the tree has {depth}")
    return definition
