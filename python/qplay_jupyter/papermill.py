"""Papermill parameters for Rust notebooks run by the qplay kernel.

papermill injects a cell after the one tagged `parameters`, written by the translator of the
kernel's language. This module writes Rust: `let name = value;` lines whose literals carry
their type, so that an injected value has the type the notebook's own parameters cell gives
(declare them that way there):

| JSON/YAML value | Rust |
|---|---|
| string | `"text"` (a `&str`) |
| integer | `5i64` |
| float | `0.5f64` (`f64::NAN`, `f64::INFINITY`, `f64::NEG_INFINITY`) |
| boolean | `true` / `false` |
| list | `vec![…]` of one of the above, all of one type |
| null | `None::<String>` |

Anything else (a mapping, a mixed list) is refused with an error that names the parameter.

papermill 2.7 finds translators only in its own table, and loads plug-ins only for engines
(`papermill.engine` entry points): importing this module, which papermill does when it loads
the `qplay` engine entry point, registers the translator under the kernel's name (`qplay`)
and its language (`rust`). The engine itself is papermill's default (nbclient).
"""

import math
import re

from papermill.engines import NBClientEngine
from papermill.exceptions import PapermillException
from papermill.models import Parameter
from papermill.translators import Translator, papermill_translators


class RustTranslator(Translator):
    """`let` lines with typed Rust literals."""

    @classmethod
    def translate_escaped_str(cls, str_val):
        out = []
        for ch in str(str_val):
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{{{ord(ch):x}}}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    @classmethod
    def translate_none(cls, val):
        return "None::<String>"

    @classmethod
    def translate_int(cls, val):
        if not -(2**63) <= val < 2**63:
            raise PapermillException(f"{val} does not fit a Rust i64")
        return f"{val}i64"

    @classmethod
    def translate_float(cls, val):
        if math.isnan(val):
            return "f64::NAN"
        if math.isinf(val):
            return "f64::INFINITY" if val > 0 else "f64::NEG_INFINITY"
        text = repr(val)
        if not any(c in text for c in ".e"):
            text += ".0"
        return f"{text}f64"

    @classmethod
    def translate_dict(cls, val):
        raise PapermillException("a mapping has no Rust literal here: pass its fields as parameters")

    @classmethod
    def translate_list(cls, val):
        kinds = {_kind(v) for v in val}
        if len(kinds) > 1:
            raise PapermillException(f"a Rust vec! holds one type; got {sorted(kinds)}")
        return "vec![" + ", ".join(cls.translate(v) for v in val) + "]"

    @classmethod
    def comment(cls, cmt_str):
        return f"// {cmt_str}".strip()

    @classmethod
    def assign(cls, name, str_val):
        return f"let {name} = {str_val};"

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        lines = [cls.comment(comment)]
        for name, val in parameters.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise PapermillException(f"parameter {name!r} is not a Rust variable name")
            try:
                lines.append(cls.assign(name, cls.translate(val)))
            except PapermillException as e:
                raise PapermillException(f"parameter {name!r}: {e}") from None
        return "\n".join(lines) + "\n"

    @classmethod
    def inspect(cls, parameters_cell):
        """The `let` lines of a parameters cell, for `papermill --help-notebook`."""
        params = []
        pattern = re.compile(
            r"^\s*let\s+(?:mut\s+)?(?P<name>[A-Za-z_]\w*)\s*(?::\s*(?P<type>[^=]+?))?\s*="
            r"\s*(?P<value>.+?);\s*(?://\s*(?P<help>.*))?$")
        for line in parameters_cell.source.splitlines():
            m = pattern.match(line)
            if m:
                params.append(Parameter(name=m["name"], inferred_type_name=(m["type"] or "None").strip(),
                                        default=m["value"].strip(), help=(m["help"] or "").strip()))
        return params


def _kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


class QplayEngine(NBClientEngine):
    """papermill's nbclient engine; loading it registers the Rust translator."""


papermill_translators.register("rust", RustTranslator)
papermill_translators.register("qplay", RustTranslator)
