"""A local Sphinx extension for the kzr_wsgi manual.

``kzr-commands`` documents every ``kzr-wsgi`` command (and its subcommands) from
the click objects themselves, except those named in ``:exclude:`` (``serve`` has a
page of its own). A command added to :mod:`kzr_wsgi.cli` appears in the manual
without anyone editing it, and no option is ever copied by hand.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

import click
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx_click.ext import ClickDirective


def _generated_here(env: Any) -> None:
    """Remember that the current page is generated from code, to be read on every build.

    Sphinx re-reads a page only when its source changed; a page generated from the click
    commands must also change when an option or a command is added.
    """
    if not hasattr(env, "kzr_generated"):
        env.kzr_generated = set()
    env.kzr_generated.add(env.docname)


class Click(ClickDirective):
    """sphinx-click's ``click`` directive, its page re-read on every build."""

    def run(self) -> list[nodes.Node]:
        _generated_here(self.state.document.settings.env)
        return list(super().run())


class CommandsDirective(ClickDirective):
    """Every subcommand of a click group, each as a section (nested commands in full)."""

    option_spec = {**ClickDirective.option_spec, "exclude": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        self.env = self.state.document.settings.env
        _generated_here(self.env)
        group = self._load_module(self.arguments[0])
        if not isinstance(group, click.Group):
            raise self.error(f"{self.arguments[0]} is not a click group")
        prog = self.options.get("prog")
        if not prog:
            raise self.error(":prog: must be specified")
        excluded = {c.strip() for c in self.options.get("exclude", "").split(",") if c.strip()}
        parent = click.Context(group, info_name=prog)
        result: list[nodes.Node] = []
        for name in sorted(group.commands):
            if name in excluded:
                continue
            result.extend(self._generate_nodes(name, group.commands[name], parent, "full"))
        return result


def _signature(
    app: Any, what: str, name: str, obj: Any, options: Any,
    signature: str | None, return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Dataclass fields with a default factory show as ``<factory>``, which is not Python
    and makes Sphinx split the whole signature on commas (``dict[str`` | ``object]``)."""
    if signature:
        signature = signature.replace("<factory>", "...")
    return signature, return_annotation


def _import(dotted: str) -> Any:
    """The object at a dotted path (``kzr_wsgi.stores.DirectoryStore``), or ``None``."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        try:
            for attr in parts[n:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_short(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference to one of kzr_wsgi's own objects by another of its names.

    The reference documents each object once, where it is defined
    (``kzr_wsgi.stores.directory.DirectoryStore``), while docstrings also name it as a
    package re-exports it (``kzr_wsgi.stores.DirectoryStore``, ``kzr_wsgi.Recording``) or
    by its short name inside its module (``DirectoryStore.sweep``). A qualified name is
    imported and followed to where its object is defined; a short one goes to the one
    documented ``kzr_wsgi`` object whose name ends with it. A ``TypeVar`` in a signature
    is shown as text. Anything else stays unresolved, and ``-n`` reports it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    found: list[str] = []
    if target.startswith("kzr_wsgi."):
        obj = _import(target)
        if isinstance(obj, TypeVar):
            return contnode
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if module and qualname and f"{module}.{qualname}" in domain.objects:
            found = [f"{module}.{qualname}"]
    if not found:
        tail = target.removeprefix("kzr_wsgi.")
        found = [
            full for full, entry in domain.objects.items()
            if full.startswith("kzr_wsgi.") and full.endswith("." + tail) and not entry.aliased
        ]
    if len(found) != 1:
        return None
    node["reftarget"] = found[0]
    resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                   found[0], node, contnode)
    if resolved is None:
        anywhere = domain.resolve_any_xref(env, node["refdoc"], app.builder, found[0],
                                           node, contnode)
        resolved = anywhere[0][1] if anywhere else None
    return resolved


def _outdated(app: Any, env: Any, added: Any, changed: Any, removed: Any) -> list[str]:
    return sorted(getattr(env, "kzr_generated", set()) - set(removed))


def _purge(app: Any, env: Any, docname: str) -> None:
    getattr(env, "kzr_generated", set()).discard(docname)


def _merge(app: Any, env: Any, docnames: Any, other: Any) -> None:
    if not hasattr(env, "kzr_generated"):
        env.kzr_generated = set()
    env.kzr_generated |= getattr(other, "kzr_generated", set())


def setup(app: Any) -> dict[str, Any]:
    """Register the directives and the event handlers."""
    app.setup_extension("sphinx_click")
    app.add_directive("click", Click, override=True)
    app.add_directive("kzr-commands", CommandsDirective)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("autodoc-process-signature", _signature)
    app.connect("missing-reference", _resolve_short)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
