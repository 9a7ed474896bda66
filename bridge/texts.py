"""Every text a citizen reads, in one file an office can override.

The defaults are in ``bridge/texts.toml``: one key per text, in Bahasa Indonesia, with
``{placeholders}`` (str.format style) for what the bridge fills in. An office changes any
of them with a ``texts.toml`` beside its config.toml (``Texts.for_config``) holding only
the keys it wants different; every other key keeps its default::

    greeting = \"\"\"
    Selamat datang di layanan pengaduan Disdukcapil Kabupaten Bantul.
    Jam layanan: {hours}.

    {format}
    \"\"\"

The rules, checked when the texts are loaded (``TextsError``, a ``ValueError`` whose one
line names the file and the key):

- a key must be one of the default file's keys, and its value a non-empty string;
- placeholders: a text may use the placeholders its default uses, and no other (those are
  the values the bridge passes for that text); each is written ``{name}``, without
  ``!conversion``, ``:format`` or ``.attribute``; a brace itself is written ``{{`` or ``}}``;
- required placeholders: a small explicit set per key, in the default file's ``[required]``
  table, that an override must keep: what the citizen cannot do without, such as the
  ticket number in ``ticket_reply`` or the staff's question in ``question``. The rest
  (``{name}``, ``{hours}``, ``{due}`` ...) an office may leave out;
- lengths: no text is longer than one message (4096 characters), and the keys in the
  ``[max_length]`` table (WhatsApp button titles: 20) stay within theirs.

``render(key, **values)`` fills a text in; a placeholder the text uses with no value given
raises ``TextsError`` (values it does not use are ignored, so a caller can pass the same
values whichever version of the text is loaded). An empty value leaves no gap: more than
one empty line in a row becomes one, as in ``answer`` without an agenda number.

``template_*`` keys are the bodies of the message templates an office registers with its
channel (WhatsApp: with Meta), for messages sent after the channel's window has closed;
``template_body`` gives a body in the numbered ``{{1}}`` form and the placeholder behind
each number.
"""
from __future__ import annotations

import difflib
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_PATH = Path(__file__).with_name("texts.toml")
OVERRIDE_NAME = "texts.toml"         # beside config.toml
MESSAGE_MAX = 4096                   # one WhatsApp text body, one Telegram message
_TABLES = ("required", "max_length")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


class TextsError(ValueError):
    """A texts file that cannot be used, or a text rendered without its values."""

    def __init__(self, message: str, *, path: Path | str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


@dataclass(frozen=True)
class Texts:
    """The loaded texts: the defaults with an office's overrides applied."""

    _texts: Mapping[str, str]
    _allowed: Mapping[str, frozenset[str]]
    _required: Mapping[str, frozenset[str]]
    overridden: frozenset[str] = field(default_factory=frozenset)   # keys the office's file set

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, default_path: Path | str = DEFAULT_PATH, override_path: Path | str | None = None, *,
             override: Path | str | None = None) -> "Texts":
        """The texts of ``default_path``, with those of ``override_path`` (if given) in their place.

        ``override``: the same as ``override_path``, by keyword (``Texts.load(override=path)``).
        """
        if override is not None:
            if override_path is not None:
                raise TypeError("Texts.load: give override_path or override, not both")
            override_path = override
        default_path = Path(default_path)
        data = _read(default_path)
        required_table = _table(data, "required", default_path)
        limits = _table(data, "max_length", default_path)
        texts: dict[str, str] = {}
        allowed: dict[str, frozenset[str]] = {}
        for key, value in data.items():
            if key in _TABLES:
                continue
            texts[key] = _text(value, key, default_path)
            allowed[key] = _placeholders(texts[key], key, default_path)
        required: dict[str, frozenset[str]] = {key: frozenset() for key in texts}
        for key, names in required_table.items():
            where = f"{default_path}: [required] {key}"
            if key not in texts:
                raise TextsError(f"{where}: not a text in this file", path=default_path, key=key)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise TextsError(f"{where}: must be a list of placeholder names", path=default_path, key=key)
            extra = set(names) - allowed[key]
            if extra:
                raise TextsError(f"{where}: {_braces(extra)} is not used by the text", path=default_path, key=key)
            required[key] = frozenset(names)
        max_length: dict[str, int] = {}
        for key, limit in limits.items():
            if key not in texts or not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                raise TextsError(f"{default_path}: [max_length] {key}: must name a text and give a positive "
                                 "number", path=default_path, key=key)
            max_length[key] = limit
        for key, text in texts.items():
            _check_length(text, key, max_length.get(key, MESSAGE_MAX), default_path)

        overridden: set[str] = set()
        if override_path is not None:
            override_path = Path(override_path)
            for key, value in _read(override_path).items():
                where = f"{override_path}: {key}"
                if key in _TABLES:
                    raise TextsError(f"{where}: this table is fixed by the default texts; remove it here",
                                     path=override_path, key=key)
                if key not in texts:
                    close = difflib.get_close_matches(key, list(texts), n=1)
                    hint = f" (did you mean {close[0]}?)" if close else " (see bridge/texts.toml for the keys)"
                    raise TextsError(f"{where}: unknown key{hint}", path=override_path, key=key)
                text = _text(value, key, override_path)
                used = _placeholders(text, key, override_path)
                unknown = used - allowed[key]
                if unknown:
                    can = _braces(allowed[key]) if allowed[key] else "none"
                    raise TextsError(f"{where}: unknown placeholder {_braces(unknown)} (this text can use: {can})",
                                     path=override_path, key=key)
                lacking = required[key] - used
                if lacking:
                    raise TextsError(f"{where}: missing required placeholder {_braces(lacking)}",
                                     path=override_path, key=key)
                _check_length(text, key, max_length.get(key, MESSAGE_MAX), override_path)
                texts[key] = text
                overridden.add(key)
        return cls(texts, allowed, required, frozenset(overridden))

    @classmethod
    def default(cls) -> "Texts":
        return cls.load(DEFAULT_PATH)

    @classmethod
    def for_config(cls, config_path: Path | str) -> "Texts":
        """The default texts, overridden by the ``texts.toml`` beside ``config_path`` if there is one."""
        override = Path(config_path).resolve().parent / OVERRIDE_NAME
        return cls.load(DEFAULT_PATH, override if override.is_file() else None)

    # -- use -----------------------------------------------------------------------------
    def render(self, key: str, **values: Any) -> str:
        """The text ``key`` with its placeholders filled from ``values``."""
        text = self.text(key)
        missing = _used(text) - values.keys()
        if missing:
            raise TextsError(f"texts: {key}: no value given for {_braces(missing)}", key=key)
        return _BLANK_LINES.sub("\n\n", text.format_map(values)).strip()

    def text(self, key: str) -> str:
        """The text ``key`` as written, placeholders unfilled."""
        try:
            return self._texts[key]
        except KeyError:
            raise TextsError(f"texts: {key}: no such text", key=key) from None

    def keys(self) -> tuple[str, ...]:
        return tuple(self._texts)

    def placeholders(self, key: str) -> frozenset[str]:
        """The placeholders ``key`` may use: those of its default text."""
        self.text(key)
        return self._allowed[key]

    def required(self, key: str) -> frozenset[str]:
        """The placeholders an override of ``key`` must keep."""
        self.text(key)
        return self._required[key]

    def template_body(self, key: str) -> tuple[str, tuple[str, ...]]:
        """``key``'s text as a template body with numbered parameters ({ticket} -> {{1}}) and the placeholder names
        in parameter order (a placeholder used twice keeps its number)."""
        order: list[str] = []
        body = []
        for literal, name, _spec, _conversion in string.Formatter().parse(self.text(key)):
            body.append(literal)
            if name:
                if name not in order:
                    order.append(name)
                body.append("{{%d}}" % (order.index(name) + 1))
        return "".join(body), tuple(order)


# -- helpers ------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TextsError(f"{path}: file not found", path=path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TextsError(f"{path}: not valid TOML ({e})", path=path) from None


def _table(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise TextsError(f"{path}: [{name}]: must be a table", path=path, key=name)
    return table


def _text(value: Any, key: str, path: Path) -> str:
    if not _NAME.match(key):
        raise TextsError(f"{path}: {key}: a key is lowercase letters, digits and _", path=path, key=key)
    if not isinstance(value, str):
        raise TextsError(f"{path}: {key}: must be a text in quotes, not {type(value).__name__}", path=path, key=key)
    text = value.strip()
    if not text:
        raise TextsError(f"{path}: {key}: must not be empty", path=path, key=key)
    return text


def _placeholders(text: str, key: str, path: Path) -> frozenset[str]:
    """The placeholders ``text`` uses; TextsError for one the bridge could not fill safely."""
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        raise TextsError(f"{path}: {key}: a lone {{ or }} (write {{{{ or }}}} for a brace itself)",
                         path=path, key=key) from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name) or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise TextsError(f"{path}: {key}: placeholder {shown} must be a plain name like {{ticket}}",
                             path=path, key=key)
        names.add(name)
    return frozenset(names)


def _used(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def _check_length(text: str, key: str, limit: int, path: Path) -> None:
    if len(text) > limit:
        raise TextsError(f"{path}: {key}: {len(text)} characters, at most {limit}", path=path, key=key)


def _braces(names: set[str] | frozenset[str]) -> str:
    return ", ".join("{" + n + "}" for n in sorted(names))
