"""A local Sphinx extension for the kzr_wsgi manual.

``kzr-commands`` documents every ``kzr-wsgi`` command (and its subcommands) from
the click objects themselves, except those named in ``:exclude:`` (``serve`` has a
page of its own). A command added to :mod:`kzr_wsgi.cli` appears in the manual
without anyone editing it, and no option is ever copied by hand. Each command's
environment variables are listed by option, as :mod:`kzr_wsgi.cli.environment` names
them.

``kzr-config-keys`` lists, for every command of a group, the config-file keys and
tables it reads (as its ``--config`` option declares them), and the tables the file may
hold; so the config page cannot drift from the commands.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

import click
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx_click.ext import ClickDirective

from kzr_wsgi.cli.config import readings
from kzr_wsgi.cli.environment import commands, names_for
from kzr_wsgi.configfile import TABLES


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


def _envvars(app: Any, ctx: click.Context, lines: list[str]) -> None:
    """A command's environment variables, one line per option, in the order they are tried.

    (sphinx-click would show each option's list of names as a Python list.)
    """
    path = tuple(ctx.command_path.split()[1:])
    lines[:] = []
    for param in ctx.command.params:
        names = names_for(path, param) if isinstance(param, click.Option) else None
        if names is None:
            continue
        line = (f"- ``{param.opts[0]}``: ``{names.command}`` (this command alone), then "
                f"``{names.general}``")
        if names.older:
            line += "; as before, also " + ", ".join(f"``{n}``" for n in names.older)
        lines.append(line)
    if lines:
        lines.append("")


class ConfigKeysDirective(ClickDirective):
    """What each command of a group reads from the config file: keys and tables."""

    def run(self) -> list[nodes.Node]:
        self.env = self.state.document.settings.env
        _generated_here(self.env)
        group = self._load_module(self.arguments[0])
        read = {found.command: found for found in readings(group)}
        rows = [".. list-table::", "   :header-rows: 1", "   :widths: 15 70 15", "",
                "   * - command", "     - keys it reads", "     - tables"]
        for path, command in commands(group):
            name = " ".join(path)
            if not path or isinstance(command, click.Group):
                continue
            found = read.get(name)
            keys = ", ".join(f"``{key}``" for key in found.keys) if found else \
                "none (it takes no ``--config``)"
            tables = ", ".join(f"``[{t.name}]``" for t in found.tables) if found else ""
            rows += [f"   * - ``{name}``", f"     - {keys}", f"     - {tables or 'none'}"]
        rows += ["", "The tables a file may hold:", ""]
        for table in TABLES:
            readers = [n for n, found in read.items() if table in found.tables]
            rows.append(f"- ``[{table.name}]``: {table.about}; read by "
                        + ", ".join(f"``{n}``" for n in readers))
        node = nodes.container()
        self.state.nested_parse(StringList(rows, source="kzr-config-keys"),
                                self.content_offset, node)
        return list(node.children)


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
    app.add_directive("kzr-config-keys", ConfigKeysDirective)
    # sphinx-click registers "…-envvars" but emits "…-envars" (6.2): listen to both.
    if "sphinx-click-process-envars" not in app.events.events:
        app.add_event("sphinx-click-process-envars")
    app.connect("sphinx-click-process-envars", _envvars)
    app.connect("sphinx-click-process-envvars", _envvars)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("autodoc-process-signature", _signature)
    app.connect("missing-reference", _resolve_short)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
