"""The config reference (docs/config.md), generated from the config models.

``python -m roommon.cli.config_reference`` rewrites docs/config.md;
``--check`` exits 1 when the committed file differs from what the models say
(a test does the same). Every section of the TOML file, and every check's
settings table (from :data:`roommon.checks.CHECKS`), is one table: field,
type and allowed range, default, unit, description. Units come from the
field-name suffix the code uses throughout (``_s`` seconds, ``_kpa`` kPa...).
"""

from __future__ import annotations

import argparse
import enum
import inspect
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from roommon.checks import CHECKS
from roommon.config import Config
from roommon.core.ids import validate_identifier

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"

#: Field-name suffix -> unit (the longest matching suffix wins).
UNIT_SUFFIXES = {
    "_s": "s",
    "_ms": "ms",
    "_kpa": "kPa",
    "_mmhg": "mmHg",
    "_pct": "%",
    "_bpm": "/min",
    "_mv": "mV",
    "_au": "au",
    "_hz": "Hz",
    "_bytes": "bytes",
    "_beats": "beats",
    "_samples": "samples",
}
#: Fields whose unit their name does not say.
UNIT_FIELDS = {"fs": "Hz", "baudrate": "bit/s", "port": ""}

#: Placeholder for the keys of a table of tables, by field name.
KEY_NAMES = {
    "rooms": "ROOM",
    "feeds": "FEED",
    "receivers": "RECEIVER",
    "locations": "ROOM",
    "procedures": "PROCEDURE",
    "codes": "NAME",
    "alarms": '"CODE"',
    "profiles": "PHASE",
}


def unit(name: str) -> str:
    if name in UNIT_FIELDS:
        return UNIT_FIELDS[name]
    matches = [s for s in UNIT_SUFFIXES if name.endswith(s)]
    return UNIT_SUFFIXES[max(matches, key=len)] if matches else ""


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _strip(tp: Any) -> tuple[Any, bool]:
    """The type without ``| None`` and ``Annotated``, and whether None was allowed."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = _args(tp)[0]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in _args(tp) if a is not type(None)]
        if len(rest) < len(_args(tp)) and len(rest) == 1:
            return _strip(rest[0])[0], True
    return tp, False


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _identifier(metadata: Sequence[Any]) -> bool:
    return any(getattr(m, "func", None) is validate_identifier for m in metadata)


def type_text(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """A reader's name for a field type (TOML words: string, table, array)."""
    raw = tp
    if _identifier(metadata):
        return "identifier"
    tp, optional = _strip(tp)
    origin = typing.get_origin(tp)
    if typing.get_origin(raw) is typing.Annotated and _identifier(_args(raw)[1:]):
        text = "identifier"
    elif origin is typing.Literal:
        text = " \\| ".join(_literal(v) for v in _args(tp))
    elif inspect.isclass(tp) and issubclass(tp, enum.Enum):
        text = " \\| ".join(_literal(m.value) for m in tp)
    elif origin in (list, Sequence):
        item = type_text(_args(tp)[0])
        text = "array of tables" if item == "table" else f"array of {item}"
    elif origin is dict:
        value = type_text(_args(tp)[1])
        text = "table of tables" if value == "table" else f"table of {value}"
    elif _is_model(tp):
        text = "table"
    elif tp is typing.Any:
        text = "any"
    else:
        text = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
            tp, getattr(tp, "__name__", str(tp))
        )
    return f"{text} (optional)" if optional else text


def _literal(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else _toml(v)


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, enum.Enum):
        return _toml(v.value)
    if isinstance(v, str | Path):
        return f'"{v}"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, BaseModel):
        return "(table)"
    return str(v)


def default_text(f: FieldInfo) -> str:
    if f.is_required():
        return "required"
    if f.default_factory is not None:
        made = f.default_factory()  # type: ignore[call-arg]
        return "(defaults below)" if isinstance(made, BaseModel) else _toml(made)
    if f.default is None:
        return "unset"
    if f.default is PydanticUndefined:  # pragma: no cover - is_required covers it
        return "required"
    return _toml(f.default)


def range_text(f: FieldInfo) -> str:
    parts = []
    for m in f.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            v = getattr(m, attr, None)
            if v is not None and isinstance(m, annotated_types.BaseMetadata):
                parts.append(f"{sign} {v:g}" if isinstance(v, float) else f"{sign} {v}")
        if isinstance(m, annotated_types.MinLen) and m.min_length:
            parts.append(f"at least {m.min_length}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Section:
    heading: str  # TOML table header, e.g. [rooms.ROOM.feeds.FEED]
    model: type[BaseModel]
    note: str = ""


def _children(name: str, tp: Any, path: str) -> Iterator[tuple[str, type[BaseModel], str]]:
    """(path, model, note) of the sections a field opens, if any."""
    tp, _ = _strip(tp)
    origin = typing.get_origin(tp)
    if _is_model(tp):
        yield f"{path}.{name}", tp, ""
    elif origin in (list, Sequence) and _is_model(_strip(_args(tp)[0])[0]):
        yield f"{path}.{name}[]", _strip(_args(tp)[0])[0], "an array of tables"
    elif origin is dict:
        key_tp, value_tp = _args(tp)
        here = f"{path}.{name}.{KEY_NAMES.get(name, 'KEY')}"
        note = _key_note(key_tp)
        value_tp, _ = _strip(value_tp)
        if _is_model(value_tp):
            yield here, value_tp, note
        elif typing.get_origin(value_tp) is dict and _is_model(_strip(_args(value_tp)[1])[0]):
            yield f'{here}."CODE"', _strip(_args(value_tp)[1])[0], note


def _key_note(key_tp: Any) -> str:
    key_tp, _ = _strip(key_tp)
    if inspect.isclass(key_tp) and issubclass(key_tp, enum.Enum):
        return "keys: " + ", ".join(f"`{m.value}`" for m in key_tp)
    return ""


def sections(model: type[BaseModel], path: str = "") -> Iterator[Section]:
    """Every table of the file under ``model`` at ``path``, depth first, in field order."""
    for name, f in model.model_fields.items():
        if name == "checks" and model.model_fields[name].annotation == dict[str, dict[str, Any]]:
            for check_name, check in CHECKS.items():
                doc = _own_doc(check)
                note = f"check `{check_name}`: {doc}" if doc else f"check `{check_name}`"
                yield from _walk(check.settings_model, f"{path}.checks.{check_name}", note)
            continue
        for sub_path, sub_model, note in _children(name, f.annotation, path):
            yield from _walk(sub_model, sub_path, note)


def _own_doc(cls: type) -> str:
    """The first paragraph of the class's own docstring (not an inherited one), one line."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "").replace("``", "`")
    return " ".join(doc.split("\n\n")[0].split()).rstrip(".")


def _walk(model: type[BaseModel], path: str, note: str) -> Iterator[Section]:
    yield Section(path.lstrip("."), model, note)
    yield from sections(model, path.removesuffix("[]"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if text else "—"


def table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | default | unit | description |", "|---|---|---|---|---|"]
    for name, f in model.model_fields.items():
        kind = type_text(f.annotation, f.metadata)
        limits = range_text(f)
        if limits:
            kind = f"{kind}, {limits}"
        rows.append(
            f"| `{name}` | {kind} | {_cell(default_text(f))} | {_cell(unit(name))} "
            f"| {_cell(f.description or '')} |"
        )
    return rows


def reference() -> str:
    """docs/config.md as the models say it is."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m roommon.cli.config_reference` from the config models "
        "(roommon/config.py and the models it uses); a test fails when this file and the "
        "models differ. Do not edit by hand. -->",
        "",
        "A roommon config is one TOML file (`roommon check-config FILE` validates it; "
        "`roommon init-config FILE` writes a commented starter; `config/example-room.toml` is "
        "a full example). Upper-case parts of a table name are keys you choose (a room id, a "
        "feed id); identifiers are letters, digits, `-` and `_`. Unknown fields are errors. "
        "Broker credentials never appear in the file: it names the environment variables "
        "that hold them. A relative `daemon.state_dir` is relative to the config file's folder.",
        "",
        "Units: s seconds, kPa kilopascal, mmHg millimetres of mercury, /min per minute, "
        "mV millivolt, au arbitrary units (pleth), Hz per second.",
        "",
    ]
    top = Section("(top level)", Config, "")
    for section in [top, *sections(Config)]:
        heading = section.heading
        if heading.endswith("[]"):
            title = f"`[[{heading.removesuffix('[]')}]]`"
        elif section.model is Config:
            title = "Top level"
        else:
            title = f"`[{heading}]`"
        out.append(f"## {title}")
        out.append("")
        doc = _own_doc(section.model)
        if doc:
            out += [doc + ".", ""]
        if section.note:
            out += [section.note[0].upper() + section.note[1:] + ".", ""]
        out += table(section.model)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/config.md drifted")
    parser.add_argument("--out", type=Path, default=DOC, help=f"file to write (default {DOC})")
    args = parser.parse_args(argv)
    text = reference()
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        if not same:
            print(f"{args.out} differs from the config models: run python -m "
                  "roommon.cli.config_reference", file=sys.stderr)
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
