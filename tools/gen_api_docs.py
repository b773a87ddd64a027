"""Write docs/api.md, the API reference of qtrait, from the docstrings.

    python tools/gen_api_docs.py            # writes docs/api.md (what `make docs` runs)
    python tools/gen_api_docs.py --out F    # writes F instead
    python tools/gen_api_docs.py --check    # lists the public functions/classes without
                                            # a docstring; exit 1 if there are any

Per module (sorted by name): its docstring, then its public constants, classes and
functions, each group sorted by name. Public means listed in the module's ``__all__``,
or, without ``__all__``, a name without a leading underscore defined in that module. A
name that a package re-exports from a module documented here is listed as a link to that
module's entry. Classes show their signature, docstring, dataclass fields (with the
comment written beside each field) and public methods and properties.

The output is deterministic: no memory addresses, no absolute paths, no timestamps. It
imports qtrait only, never torch (``chain_runner`` is not documented here).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import pkgutil
import re
import sys
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

# The public modules, in the order of the brief; the output sorts them by name.
MODULES = [
    "qtrait",
    "qtrait.errors",
    "qtrait.theory",
    "qtrait.theory.calibration",
    "qtrait.theory.closed_forms",
    "qtrait.theory.generation",
    "qtrait.theory.horizon",
    "qtrait.theory.sampler",
    "qtrait.theory.schedules",
    "qtrait.theory.zeroshot",
    "qtrait.simulate",
    "qtrait.fit",
    "qtrait.forecast",
    "qtrait.baselines",
    "qtrait.scoring",
    "qtrait.compare",
    "qtrait.redifine",
    "qtrait.prior_predictive",
    "qtrait.models",
    "qtrait.models.base",
    "qtrait.models.breeder",
    "qtrait.models.data",
    "qtrait.models.exact",
    "qtrait.models.hier",
    "qtrait.models.tilt",
    "qtrait.rundir",
    "qtrait.rundir.manifest",
    "qtrait.rundir.migrate",
    "qtrait.rundir.reader",
    "qtrait.rundir.table",
    "qtrait.rundir.writer",
    "qtrait.stats",
    "qtrait.stats.array",
    "qtrait.stats.collapse",
    "qtrait.stats.generation0",
    "qtrait.stats.labelled",
    "qtrait.stats.pooling",
]
# Documented when present (the report is being added).
OPTIONAL_MODULES = ["qtrait.report"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SIMPLE = (bool, int, float, str, type(None))


def modules() -> list[str]:
    """The module names to document: :data:`MODULES` plus the optional packages that exist
    (a regular package, with its public submodules)."""
    names = list(MODULES)
    for name in OPTIONAL_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None or spec.origin is None:  # absent, or a bare folder
            continue
        names.append(name)
        for sub in pkgutil.iter_modules(spec.submodule_search_locations or []):
            if not sub.name.startswith("_"):
                names.append(f"{name}.{sub.name}")
    return sorted(names)


def _clean(text: str) -> str:
    """Remove what differs between machines or processes: addresses and absolute paths."""
    text = _ADDRESS.sub("", text)
    for path, short in ((str(ROOT), "."), (str(Path.home()), "~")):
        text = text.replace(path, short)
    return text


def public_names(module) -> list[str]:
    """The public names of a module: its ``__all__``, else its own undecorated names."""
    if hasattr(module, "__all__"):
        return sorted(set(module.__all__))
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if getattr(obj, "__module__", None) == module.__name__:
                names.append(name)
        elif name.isupper() and _simple_value(obj):
            names.append(name)
    return sorted(names)


def _simple_value(obj) -> bool:
    if isinstance(obj, _SIMPLE):
        return True
    if isinstance(obj, (tuple, list, frozenset)):
        return all(isinstance(x, _SIMPLE) for x in obj)
    return False


def own_doc(obj) -> str | None:
    """The object's own docstring (not inherited, not dataclasses' generated one)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return None
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        generated = obj.__name__ + str(inspect.signature(obj)).replace(" -> None", "")
        if doc == generated:
            return None
    return inspect.cleandoc(doc)


def undocumented() -> list[str]:
    """``module.name`` of every public function or class (and every module) that has no
    docstring of its own."""
    missing = []
    for modname in modules():
        module = importlib.import_module(modname)
        if not (module.__doc__ or "").strip():
            missing.append(f"{modname} (module)")
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if obj.__module__ != modname and obj.__module__ in modules():
                continue  # a re-export: checked where it is defined
            if own_doc(obj) is None:
                missing.append(f"{obj.__module__}.{obj.__qualname__}")
    return sorted(set(missing))


class _Raw(str):
    """An annotation written as source text, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _signature(name: str, obj) -> str:
    """``name(params) -> return``, one parameter a line when it is long."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"

    def raw(a):
        return _Raw(a) if isinstance(a, str) else a

    params = [p.replace(annotation=raw(p.annotation)) for p in sig.parameters.values()]
    sig = sig.replace(parameters=params, return_annotation=raw(sig.return_annotation))
    text = _clean(f"{name}{sig}")
    if len(text) <= 88 or len(params) < 2:
        return text
    parts = [_clean(str(p)) for p in params]
    # the bare "*" and "/" markers that str(signature) inserts
    kinds = [p.kind for p in params]
    out, star_done = [], False
    for i, (part, kind) in enumerate(zip(parts, kinds)):
        if kind is inspect.Parameter.KEYWORD_ONLY and not star_done:
            if not any(k is inspect.Parameter.VAR_POSITIONAL for k in kinds):
                out.append("*")
            star_done = True
        out.append(part)
        last_posonly = (kind is inspect.Parameter.POSITIONAL_ONLY
                        and (i + 1 == len(kinds)
                             or kinds[i + 1] is not inspect.Parameter.POSITIONAL_ONLY))
        if last_posonly:
            out.append("/")
    ret = ""
    if sig.return_annotation is not inspect.Signature.empty:
        ret = " -> " + _clean(inspect.formatannotation(sig.return_annotation))
    return f"{name}(\n" + "".join(f"    {x},\n" for x in out) + f"){ret}"


def _markdown(doc: str) -> str:
    """Docstring text as Markdown: numpydoc section underlines become bold headings (a bare
    ``----`` line would make a Markdown heading) and ``#`` lines cannot become headings."""
    lines = doc.splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"\s*(-{3,}|={3,})\s*", nxt):
            out.append(f"**{line.strip()}**")
            out.append("")
            i += 2
            continue
        if line.lstrip().startswith("#"):
            line = line.replace("#", "\\#", 1)
        out.append(line)
        i += 1
    return _clean("\n".join(out)).strip()


def _field_comments(cls) -> dict[str, str]:
    """The ``# comment`` written on the line of each annotated field in the class body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    found = {}
    body = ast.parse(source).body[0]
    for node in getattr(body, "body", []):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno) or comments.get(node.lineno)
            if not text:  # Sphinx's ``#:`` comment lines just above the field
                above, line = [], node.lineno - 1
                while comments.get(line, "").startswith(":"):
                    above.insert(0, comments[line][1:].strip())
                    line -= 1
                text = " ".join(above)
            if text:
                found[node.target.id] = text
    return found


def _fields(cls) -> list[str]:
    comments = _field_comments(cls)
    rows = ["| field | type | default | note |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f"`{_clean(repr(f.default))}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{_clean(getattr(f.default_factory, '__name__', 'factory'))}()`"
        else:
            default = "required"
        ftype = f.type if isinstance(f.type, str) else inspect.formatannotation(f.type)
        cells = [f"`{f.name}`", f"`{_clean(ftype)}`", default, comments.get(f.name, "")]
        # a | ends a table cell even inside a code span
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def _members(cls) -> list[tuple[str, object]]:
    out = []
    for name, obj in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if inspect.isfunction(obj) or isinstance(obj, property):
            out.append((name, obj))
    return sorted(out)


def _doc_or_none(obj) -> str:
    doc = inspect.getdoc(obj)
    return _markdown(doc) if doc else "*(no docstring)*"


def _class(modname: str, name: str, cls) -> list[str]:
    lines = [f"### class `{name}`", "", "```python", _signature(name, cls), "```", ""]
    doc = own_doc(cls)
    lines += [_markdown(doc) if doc else "*(no docstring)*", ""]
    bases = [b for b in cls.__bases__ if b is not object]
    if bases:
        names = ", ".join(f"`{b.__module__}.{b.__qualname__}`" for b in bases)
        lines += [f"Bases: {names}", ""]
    if dataclasses.is_dataclass(cls):
        lines += ["Fields:", ""] + _fields(cls) + [""]
    for mname, member in _members(cls):
        if isinstance(member, property):
            lines += [f"#### property `{name}.{mname}`", ""]
            lines += [_doc_or_none(member.fget) if member.fget else "*(no docstring)*", ""]
        else:
            lines += [f"#### `{name}.{mname}`", "", "```python",
                      _signature(mname, member), "```", "", _doc_or_none(member), ""]
    return lines


def _function(name: str, func) -> list[str]:
    return [f"### `{name}`", "", "```python", _signature(name, func), "```", "",
            _doc_or_none(func), ""]


def _anchor(modname: str) -> str:
    """The GitHub anchor of a module's heading (dots dropped)."""
    return modname.replace(".", "")


def render() -> str:
    """The whole of docs/api.md as a string."""
    names = modules()
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python tools/gen_api_docs.py` (`make docs`); do not",
        "edit it by hand: `tests/test_docs.py` fails when it is stale. The command line is",
        "described in [cli.md](cli.md); this page is for using qtrait from Python. The chain",
        "runner (`chain_runner`, which needs torch) is not covered here; see",
        "[chain.md](chain.md).",
        "",
        "Public names: a module's `__all__`, or, without one, the names without a leading",
        "underscore defined in it. Modules are in alphabetical order, and so are the names",
        "within each group (constants, classes, functions).",
        "",
        "## Modules",
        "",
    ]
    for modname in names:
        module = importlib.import_module(modname)
        first = (inspect.getdoc(module) or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append(f"- [`{modname}`](#{_anchor(modname)}): {_clean(first)}")
    out.append("")
    for modname in names:
        module = importlib.import_module(modname)
        out += [f"## {modname}", ""]
        doc = inspect.getdoc(module)
        out += [_markdown(doc) if doc else "*(no docstring)*", ""]
        consts, classes, funcs, reexports = [], [], [], []
        for name in public_names(module):
            obj = getattr(module, name)
            home = getattr(obj, "__module__", None)
            is_def = inspect.isclass(obj) or inspect.isfunction(obj)
            if is_def and home != modname and home in names:
                reexports.append((name, home))
            elif inspect.isclass(obj):
                classes.append((name, obj))
            elif inspect.isfunction(obj):
                funcs.append((name, obj))
            else:
                consts.append((name, obj))
        if reexports:
            out += ["Re-exported:", ""]
            out += [f"- `{name}`: see [`{home}`](#{_anchor(home)})" for name, home in reexports]
            out.append("")
        if consts:
            out += ["Constants:", ""]
            for name, obj in consts:
                value = repr(obj) if _simple_value(obj) else f"<{type(obj).__name__}>"
                if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
                    value = "{" + ", ".join(repr(k) + ": ..." for k in sorted(obj)) + "}"
                out.append(f"- `{name} = {_clean(value)}`")
            out.append("")
        for name, obj in classes:
            out += _class(modname, name, obj)
        for name, obj in funcs:
            out += _function(name, obj)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    """Write the reference (or, with ``--check``, list the missing docstrings)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output file (docs/api.md)")
    parser.add_argument("--check", action="store_true",
                        help="list public functions/classes without a docstring")
    args = parser.parse_args(argv)
    if args.check:
        missing = undocumented()
        print("\n".join(missing) if missing else "every public function and class has a "
              "docstring")
        return 1 if missing else 0
    args.out.write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
