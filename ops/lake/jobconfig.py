"""Each job setting declared once: a dataclass field, from which the job's argparse flags, the
Airflow Params form and the flags a DAG passes are all derived.

A job declares its settings as a dataclass whose fields are made with :func:`setting`::

    @dataclass
    class CleanConfig:
        langs: list[str] = setting(["en"], "ISO 639-1 codes to keep", title="Languages",
                                   item_pattern="^[a-z]{2}$")
        min_lang_score: float = setting(0.5, "least language-ID probability to keep",
                                        minimum=0.0, maximum=1.0)

- :func:`add_arguments` adds ``--langs en,de`` and ``--min-lang-score`` to a parser;
  :func:`from_args` turns the parsed namespace back into the dataclass.
- :func:`param_specs` gives the Airflow Params (plain JSON-schema dicts, no Airflow import) with
  the same defaults, bounds and help; :func:`to_flags` turns a Params dict back into flags.

A job whose flags span several classes (pretraining's loop, optimiser and objective configs)
passes them as a tuple; :class:`Part` shows a subset of a class with defaults of the job's own
(fine-tuning's gentler learning rate). Each setting's namespace attribute is its Param name.

Types: ``bool`` (default False: ``--x``; default True: ``--no-x``), ``int``, ``float``, ``str``,
``list[str]`` (comma-separated on the command line, an array in the form), ``dict`` (JSON on the
command line) and ``X | None`` of these (None: flag left out). Pure Python: DAG files import it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any, Callable

_META = "c2m_setting"


def setting(default: Any, help: str, *, title: str | None = None, flag: str | None = None,
            aliases: tuple[str, ...] = (), choices: tuple | list | None = None,
            minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: float | None = None, form_maximum: float | None = None,
            pattern: str | None = None, item_pattern: str | None = None, min_items: int | None = None,
            max_items: int | None = None, max_length: int | None = None,
            parse: Callable[[str], Any] | None = None, required: bool = False,
            param: bool | str = True) -> Any:
    """A dataclass field carrying its flag, help, bounds and form title.

    ``flag`` overrides the derived ``--field-name`` (``aliases`` are more spellings of it);
    ``parse`` replaces the type's parser on the command line (it raises
    ``argparse.ArgumentTypeError`` with a message that says what to pass); ``required`` makes
    the flag required (the form's default then comes from the DAG); ``param=False`` keeps the
    setting off the Airflow form (a CLI-only setting), a string names its Param when that
    differs from the field (``objective`` for ``ObjectiveConfig.name``). ``pattern``,
    ``item_pattern``, ``min_items``, ``max_length`` and ``exclusive_minimum`` bound the form
    only, and so does ``form_maximum`` (a sane limit for a value typed into a form, where the job
    itself takes more: a test forces divergence with ``--lr 1e30``); ``minimum``/``maximum``/``choices``
    bound both."""
    meta = {"help": help, "title": title, "flag": flag, "aliases": tuple(aliases),
            "choices": tuple(choices) if choices else None, "minimum": minimum, "maximum": maximum,
            "exclusive_minimum": exclusive_minimum, "form_maximum": form_maximum, "pattern": pattern,
            "item_pattern": item_pattern,
            "min_items": min_items, "max_items": max_items, "max_length": max_length, "parse": parse,
            "required": required, "param": param}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={_META: meta})
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclasses.dataclass(frozen=True)
class Setting:
    """One declared setting, resolved: its name, Python type, default and metadata."""
    name: str
    kind: type  # bool, int, float, str, list or dict
    optional: bool
    default: Any
    meta: dict
    prefix: str = ""  # of the namespace attribute (a section's settings beside another's)

    @property
    def flag(self) -> str:
        if self.meta["flag"]:
            return self.meta["flag"]
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.kind is bool and self.default is True else f"--{dashed}"

    @property
    def key(self) -> str:
        """The Param's name: the field's, unless ``param`` names another."""
        return self.meta["param"] if isinstance(self.meta["param"], str) else self.name

    @property
    def dest(self) -> str:
        """The namespace attribute: the Param's name, so ``optim.name`` and ``objective.name`` are
        ``args.optimizer`` and ``args.objective`` side by side."""
        return self.prefix + self.key


@dataclasses.dataclass(frozen=True)
class Part:
    """Some settings of a config class, as one job shows them: ``only`` these fields, with
    ``defaults`` replacing the class's (the job builds the class with those values), their
    namespace attributes prefixed with ``prefix`` (two sections may both have a ``name``)."""
    cls: type
    prefix: str = ""
    only: tuple[str, ...] | None = None
    defaults: dict = dataclasses.field(default_factory=dict)


Spec = typing.Union[type, Part, typing.Sequence[typing.Union[type, Part]]]


def _parts(spec: Spec) -> list[Part]:
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    return [item if isinstance(item, Part) else Part(item) for item in items]


def settings(spec: Spec) -> list[Setting]:
    """The declared settings of a config dataclass (or of a job's parts), in field order."""
    out = []
    for part in _parts(spec):
        for s in _class_settings(part.cls):
            if part.only is None or s.name in part.only:
                default = part.defaults.get(s.name, s.default)
                optional = s.optional or default is None  # a job may leave a setting empty
                out.append(dataclasses.replace(s, default=default, prefix=part.prefix, optional=optional))
    return out


def _class_settings(cls: type) -> list[Setting]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if _META not in f.metadata:
            continue
        kind, optional = _resolve(hints[f.name], cls.__name__, f.name)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out.append(Setting(f.name, kind, optional, default, dict(f.metadata[_META])))
    return out


def _resolve(hint: Any, owner: str, name: str) -> tuple[type, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = len(args) < len(typing.get_args(hint))
    base = args[0] if optional and len(args) == 1 else hint
    base = typing.get_origin(base) or base
    if base not in (bool, int, float, str, list, dict):
        raise TypeError(f"{owner}.{name}: type {hint!r} is not one of bool, int, float, str, "
                        "list[str], dict (or X | None); declare it with one of those")
    return base, optional


def _parse_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_dict(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}); pass a JSON object") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"key\": 1}'")
    return parsed


def _bounded(s: Setting) -> Callable[[str], Any]:
    parse = s.meta["parse"] or {list: _parse_list, dict: _parse_dict}.get(s.kind, s.kind)
    lo, hi = s.meta["minimum"], s.meta["maximum"]

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {s.kind.__name__}") from None
        if lo is not None and value < lo or hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{value} is outside [{lo}, {hi}]")
        return value
    convert.__name__ = s.kind.__name__
    return convert


def add_arguments(parser: argparse.ArgumentParser, spec: Spec) -> argparse.ArgumentParser:
    """Add one flag per declared setting of ``spec`` (a config class, a :class:`Part` or a list
    of them) to ``parser``."""
    for s in settings(spec):
        names = (s.flag, *s.meta["aliases"])
        if s.kind is bool:
            action = "store_false" if s.flag.startswith("--no-") and s.default is True else "store_true"
            parser.add_argument(*names, dest=s.dest, action=action, default=s.default, help=_help(s.meta["help"]))
            continue
        default_text = "" if s.default in (None, [], {}, "") or s.meta["required"] \
            else f" (default: {_show(s.default)})"
        if s.kind is list:
            default_text = f" (comma-separated){default_text}"
        parser.add_argument(*names, dest=s.dest, type=_bounded(s), default=s.default,
                            required=s.meta["required"], choices=s.meta["choices"],
                            help=_help(s.meta["help"] + default_text))
    return parser


def _help(text: str) -> str:
    """argparse formats help with %: a literal one ("30% more") must be doubled."""
    return text.replace("%", "%%")


def from_args(spec: type | Part, namespace: argparse.Namespace, **extra: Any) -> Any:
    """The config dataclass from a parsed namespace (fields not declared with :func:`setting`,
    or left out of a :class:`Part`, come from ``extra`` or the class's defaults)."""
    cls = spec.cls if isinstance(spec, Part) else spec
    values = {s.name: getattr(namespace, s.dest) for s in settings(spec) if hasattr(namespace, s.dest)}
    return cls(**{**values, **extra})


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
_SCHEMA_KEYS = (("minimum", "minimum"), ("maximum", "maximum"), ("form_maximum", "maximum"),
                ("exclusive_minimum", "exclusiveMinimum"),
                ("pattern", "pattern"), ("min_items", "minItems"), ("max_items", "maxItems"),
                ("max_length", "maxLength"))


def param_specs(spec: Spec, section: str | None = None, only: tuple[str, ...] | None = None,
                defaults: dict[str, Any] | None = None) -> dict[str, dict]:
    """Airflow Param specs (default, title, description, section, JSON schema) for the settings of
    ``spec`` (those whose Param is named in ``only``, if given, in that order); ``defaults``
    replaces a default where the DAG's environment decides it (e.g. the local site's URL)."""
    out = {}
    for s in settings(spec):
        if not s.meta["param"] or (only is not None and s.key not in only):
            continue
        jtype = _JSON_TYPES[s.kind]
        # A form sends a cleared text field as null; for an empty-by-default string that means the same
        # (to_flags leaves None out, so the job keeps its "").
        nullable = s.optional or (s.kind is str and s.default == "" and not s.meta["required"])
        item: dict[str, Any] = {
            "default": (defaults or {}).get(s.key, s.default),
            "title": s.meta["title"] or s.key.replace("_", " ").capitalize(),
            "description": s.meta["help"],
            "type": ["null", jtype] if nullable else jtype,
        }
        if section:
            item["section"] = section
        for key, schema_key in _SCHEMA_KEYS:
            if s.meta[key] is not None:
                item[schema_key] = s.meta[key]
        if s.meta["choices"]:
            item["enum"] = list(s.meta["choices"]) + ([None] if nullable else [])
        if s.kind is list:
            item["items"] = {"type": "string", **({"pattern": s.meta["item_pattern"]}
                                                  if s.meta["item_pattern"] else {})}
        out[s.key] = item
    if only is not None:
        out = {key: out[key] for key in only if key in out}
    return out


def to_flags(spec: Spec, values: dict[str, Any], only_changed: bool = True) -> list[str]:
    """The flags that give ``values`` (Param values keyed by Param name) to a job of ``spec``.

    Names ``spec`` does not declare are ignored (a DAG's Params span several jobs), and so are
    CLI-only settings (``param=False``: a Param of another job may share the name); None leaves a
    flag out; with ``only_changed`` a value equal to the job's default is left out too (a
    required setting is always passed)."""
    flags: list[str] = []
    for s in settings(spec):
        if not s.meta["param"] or s.key not in values:
            continue
        value = values[s.key]
        if value is None or (only_changed and value == s.default and not s.meta["required"]):
            continue
        if s.kind is bool:
            if bool(value) != (s.flag.startswith("--no-") and s.default is True):
                flags.append(s.flag)
            continue
        flags += [s.flag, _show(value)]
    return flags
