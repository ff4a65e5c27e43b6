"""Column names: element and attribute names as the document writes them, and paths of them.

Names carry the prefix the document uses for their namespace (``jats:abstract``, ``xml:lang``),
except the document's default namespace, which has none. ``Names`` serves every document that has
the same namespace declarations on its root element (a corpus of deposits usually has one set), so
its caches are shared across documents; a namespace declared further down a document takes the
prefix of the element that first uses it, cached for that document only.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

XML_NAMESPACE: Final = "http://www.w3.org/XML/1998/namespace"
MAX_CACHED_NAMESPACE_SETS: Final = 64
MAX_CACHED_PATHS: Final = 200_000
# Record shapes cached for their paths: only records of up to SHAPE_MAX_ELEMENTS elements (larger
# ones rarely repeat), and the cache is emptied past MAX_CACHED_SHAPE_ELEMENTS elements in all
# (an entry keeps about 120 bytes per element: a few tens of MB at most).
SHAPE_MAX_ELEMENTS: Final = 400
MAX_CACHED_SHAPE_ELEMENTS: Final = 200_000
# One step of an lxml element path: "{uri}local[3]" (namespace and index optional).
_PATH_STEP = re.compile(r"(?:\{([^}]*)\})?([^/\[{]+)(\[\d+\])?")

Element = etree._Element


class Names:
    def __init__(self, prefixes: dict[str, str]) -> None:
        self.prefixes = prefixes  # namespace declared on the root -> its prefix ("" for the default)
        self.has_default = "" in prefixes.values()
        self.elements: dict[str, str] = {}  # tag (Clark notation) -> name
        self.attributes: dict[str, str] = {}  # attribute key (Clark notation) -> name
        self.paths: dict[str, str] = {}  # lxml element path -> column path
        # A record's shape (its descendants' tags and child counts, in document order) -> their
        # column paths; only for records named from the root's declarations alone.
        self.shapes: dict[tuple[tuple[str, ...], tuple[int, ...]], tuple[str, ...]] = {}
        self.shape_elements = 0  # elements held by ``shapes``
        self.local_elements: dict[str, str] = {}  # tag -> name, for namespaces declared below the root

    def remember_shape(self, shape: tuple[tuple[str, ...], tuple[int, ...]], paths: tuple[str, ...]) -> None:
        """Cache the column paths of a record shape (bounded: see ``MAX_CACHED_SHAPE_ELEMENTS``)."""
        if self.shape_elements + len(paths) > MAX_CACHED_SHAPE_ELEMENTS:
            self.shapes.clear()
            self.shape_elements = 0
        self.shapes[shape] = paths
        self.shape_elements += len(paths)

    def start_document(self) -> None:
        self.local_elements = {}

    def element(self, element: Element, tag: str) -> str:
        """The name of ``element`` (whose tag is ``tag``)."""
        known = self.elements.get(tag) or self.local_elements.get(tag)
        if known is not None:
            return known
        if tag[0] != "{":
            self.elements[tag] = tag
            return tag
        uri, _, local = tag[1:].partition("}")
        if uri in self.prefixes:
            name = self.elements[tag] = qualified(self.prefixes[uri], local)
        else:
            name = self.local_elements[tag] = qualified(element.prefix or "", local)
        return name

    def learn(self, element: Element) -> None:
        """Name every element of a subtree that is skipped (not flattened), so that a namespace
        declared below the root gets the prefix of its first use in the *document*, as it would
        if the subtree were flattened (a split document's later ranges skip the earlier records)."""
        known, local = self.elements, self.local_elements
        for descendant in element.iter():
            tag = descendant.tag
            if tag not in known and tag not in local and isinstance(tag, str):
                self.element(descendant, tag)

    def attribute(self, element: Element, key: str) -> str:
        """The name of attribute ``key`` of ``element``."""
        known = self.attributes.get(key)
        if known is not None:
            return known
        if key[0] != "{":
            self.attributes[key] = key
            return key
        uri, _, local = key[1:].partition("}")
        if uri == XML_NAMESPACE:
            name = self.attributes[key] = "xml:" + local
            return name
        # Attributes never take the default namespace: look for a real prefix bound to ``uri``.
        declared = sorted(prefix for prefix, bound in element.nsmap.items() if bound == uri and prefix)
        return qualified(declared[0] if declared else "", local)

    def path(self, element_path: str) -> str | None:
        """The column path of an lxml element path (``{uri}a/{uri}b[2]`` -> ``a.b[2]``), or None
        when it cannot be named from the root's declarations alone (the caller then names each
        element itself)."""
        steps = []
        for match in _PATH_STEP.finditer(element_path):
            uri, local, index = match.groups()
            if uri is None and self.has_default:
                return None  # an unqualified name beside default-namespace ones could clash
            if uri is not None and uri not in self.prefixes:
                return None
            steps.append(qualified(self.prefixes[uri] if uri else "", local) + (index or ""))
        if len(self.paths) >= MAX_CACHED_PATHS:
            self.paths.clear()
        path = self.paths[element_path] = ".".join(steps)
        return path


class NameCache:
    """One ``Names`` per distinct set of root namespace declarations."""

    def __init__(self) -> None:
        self._by_declarations: dict[frozenset[tuple[str | None, str]], Names] = {}

    def for_root(self, root: Element) -> Names:
        declarations = frozenset(root.nsmap.items())
        names = self._by_declarations.get(declarations)
        if names is None:
            if len(self._by_declarations) >= MAX_CACHED_NAMESPACE_SETS:
                self._by_declarations.clear()
            names = self._by_declarations[declarations] = Names(root_prefixes(root.nsmap))
        names.start_document()
        return names


def root_prefixes(nsmap: dict[str | None, str]) -> dict[str, str]:
    """Namespace -> prefix for the root's declarations (the default namespace -> "")."""
    # A namespace bound to several prefixes takes the first in alphabetical order (deterministic).
    declared = sorted(((prefix, uri) for prefix, uri in nsmap.items() if prefix), reverse=True)
    prefixes = {uri: prefix for prefix, uri in declared}
    if None in nsmap:
        prefixes[nsmap[None]] = ""  # the default namespace wins: its elements have no prefix
    return prefixes


def qualified(prefix: str, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local
