"""``Param``: one setting a person chooses — a run's (a ``RunConfig`` field) or a loss's hyperparameter.

A param owns everything about its value that the sidebar, the Compare form, the CLI, URLs and config
files need: reading it from text, JSON or YAML (:meth:`Param.parse`), the message when it is not allowed
(:meth:`Param.check`), its text in a link or a flag (:meth:`Param.to_text`) and the widget that edits it
(:attr:`Param.widget`, :meth:`Param.widget_step`). Nothing here imports torch or Streamlit.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any, Literal

QUOTE_CHARS = 60  # a bad value is quoted in a message up to this many characters
MAX_CLASSES = 1000  # a list of class numbers is read only up to this long: a link may hold many thousands
_TEXT_CHARS = 100  # int() of a long text takes quadratic time; no number a setting takes is this long
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

Widget = Literal["select", "toggle", "int", "float", "classes", "text"]


@dataclass(frozen=True)
class Param:
    """One setting, with the values a person may choose from.

    ``kind`` is the type of its value (``int``, ``float``, ``bool``, ``str``, or ``tuple`` for a list of
    class numbers); it defaults to the type of ``default``. ``optional``: ``None`` (written as nothing,
    "none" or "null") means "not set". ``unit`` is spoken in messages ("margin must be between 0 and 1.5
    rad, got 3"). ``choices`` makes the param a pick-list. ``step`` is the increment of a number widget's
    +/- buttons (default: 1 for whole numbers, a hundredth of the default's order of magnitude otherwise).
    """

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    help: str = ""
    unit: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False
    step: float | None = None
    kind: type = type(None)

    def __post_init__(self) -> None:
        if self.kind is type(None):
            object.__setattr__(self, "kind", type(self.default))

    # -- reading --------------------------------------------------------------------------------

    def parse(self, raw: Any) -> Any:
        """Turn a value from JSON, YAML, a URL or a flag into this param's type, or raise ``ValueError``
        saying why not. Ranges and choices are :meth:`check`'s, so every problem of a config is said at once."""
        if self.optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null"))):
            return None
        if self.kind is tuple:
            return self._parse_classes(raw)
        if self.kind is bool:
            return self._parse_bool(raw)
        if self.kind is int:
            return self._parse_int(raw)
        if self.kind is float:
            return self._parse_float(raw)
        if not isinstance(raw, str):
            if self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {quote(raw)}")
            raise ValueError(f"{self.name} must be text, got {quote(raw)}")
        try:
            raw.encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800") that no file or database can hold
            raise ValueError(f"{self.name} must be text, got {quote(raw)}, which holds a character that is not "
                             "Unicode") from None
        return raw.strip()

    def _parse_bool(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"{self.name} must be true or false, got {quote(raw)}")

    def _parse_int(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"{self.name} must be a whole number, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and len(raw) <= _TEXT_CHARS:
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ValueError(f"{self.name} must be a whole number, got {quote(raw)}")

    def _parse_float(self, raw: Any) -> float:
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**300:
            return raw  # out of every range, and float() of it overflows: check() says so
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str) and len(raw) <= _TEXT_CHARS:
            try:
                return float(raw.strip())
            except ValueError:
                pass
        raise ValueError(f"{self.name} must be a number, got {quote(raw)}")

    def _parse_classes(self, raw: Any) -> tuple[int, ...]:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ValueError(f"{self.name} must be a list of class numbers like 0,1,2, got {quote(raw)}")
        items = [item for item in items if not (isinstance(item, str) and not item.strip())]
        if len(items) > MAX_CLASSES:  # before reading them
            raise ValueError(f"{self.name} must name at most {MAX_CLASSES} classes, got {len(items)}")
        try:
            return tuple(self._parse_int(item) for item in items)
        except ValueError:
            raise ValueError(f"{self.name} must be a list of class numbers like 0,1,2, got {quote(raw)}") from None

    # -- checking -------------------------------------------------------------------------------

    def check(self, value: Any) -> str | None:
        """A message a person understands if ``value`` is not allowed, else None."""
        if value is None and self.optional:
            return None
        if self.choices:
            return None if value in self.choices else \
                f"{self.name} must be one of {', '.join(self.choices)}, got {quote(value)}"
        if self.kind is bool:
            return None if isinstance(value, bool) else f"{self.name} must be true or false, got {quote(value)}"
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{self.name} must be a whole number, got {quote(value)}"
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{self.name} must be a number, got {quote(value)}"
            return range_message(self.name, value, self.low, self.high, self.unit)
        return None

    # -- writing --------------------------------------------------------------------------------

    def to_text(self, value: Any) -> str:
        """The value as a link or a flag writes it, which :meth:`parse` reads back to the same value."""
        return to_text(value)

    @property
    def widget(self) -> Widget:
        """The kind of widget that edits this param."""
        if self.choices:
            return "select"
        return {bool: "toggle", int: "int", float: "float", tuple: "classes"}.get(self.kind, "text")

    def widget_value(self, value: Any) -> Any:
        """``value`` as this param's widget holds it: a list of class numbers as its text (nothing for
        all), a whole number given for a real-valued param as a float (a link says "64"; the widget
        needs 64.0). :meth:`parse` reads it back."""
        if self.kind is tuple:
            return self.to_text(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def widget_step(self) -> float:
        """The increment of a number widget's +/- buttons."""
        if self.step is not None:
            return self.step
        if self.kind is int:
            return 1
        default = self.default or 0.0
        return 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.01

    def range_text(self) -> str:
        """What values it takes, for a table: "0 … 1.5 rad", "all / semihard", "true / false"."""
        if self.choices:
            return " / ".join(self.choices)
        if self.kind is bool:
            return "true / false"
        unit = f" {self.unit}" if self.unit else ""
        low = "−∞" if self.low is None else number(self.low)
        high = "∞" if self.high is None else number(self.high)
        return f"{low} … {high}{unit}"


def to_text(value: Any) -> str:
    """A value as a link writes it: lists comma-separated, true/false, "3" for 3.0, nothing for None."""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # "epochs=3", not "epochs=3.0"
    return "" if value is None else str(value)


def range_message(name: str, value: float, low: float | None, high: float | None, unit: str = "") -> str | None:
    """"lr must be between 1e-06 and 10, got 20" when ``value`` is out of range or not finite, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None and not low <= value <= high:
        return f"{name} must be between {number(low)} and {number(high)}{unit}, got {number(value)}"
    if low is not None and value < low:
        return f"{name} must be at least {number(low)}{unit}, got {number(value)}"
    if high is not None and value > high:
        return f"{name} must be at most {number(high)}{unit}, got {number(value)}"
    return None


def number(value: float) -> str:
    """Whole numbers in full ("2147483647", not "2.14748e+09"), others short ("0.01", "1e-06")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if abs(value) < 10**QUOTE_CHARS else quote(value)  # float() of 10**400 overflows
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``value`` as a message quotes it: its ``repr``, cut to a short prefix with the full length said
    ("'xxxxx…' (100000 characters)"), so a huge value is never echoed back (nor expanded to be quoted)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"  # str() stops at 4300
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 3, limit, limit, limit
    short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdict = 6
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"
