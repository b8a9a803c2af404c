"""``--config FILE``: the command line's long options as keys of a YAML mapping.

    port: [8080, "127.0.0.1:8081"]   # repeatable options: a list (or one value)
    interval: 0.5
    enable-auto-restart: true        # flags: YAML booleans
    command: [python3, app.py]       # the server program: a list, never split

Keys take dashes or underscores. Only the shape is checked here; the values
go through the very validation the command line's do (``config.build``), and
``FileConfig.explain`` turns its error (which names the option and the value)
back into the file, line and key.
Precedence: command line > file > environment variables > defaults.

Values reach ``build`` as the text written in the file (``0.50`` stays
``0.50``), so nothing is lost to YAML's number parsing. yaml is imported
only here, and only when ``--config`` is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional, Union

from .optiontable import aliases, refusals
from .values import ConfigError

if TYPE_CHECKING:
    import yaml

LIST, FLAG, VALUE = "list", "flag", "value"

# Long options that are no setting, with the reason a key naming one is refused;
# two names of one setting (given on the command line under either, the file's
# value under the other gives way too).
REFUSED = {**refusals(), "help": "not a setting", "version": "not a setting"}
ALIASES = aliases()

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float")}
_KIND_NAMES = {"seq": "a list", "map": "a mapping", "bool": "a boolean", "null": "nothing"}

Value = Union[str, bool, tuple[str, ...]]


@dataclass(frozen=True)
class Setting:
    """One key of the file: its value as ``build`` takes it, and where it was written."""

    key: str  # as written
    line: int
    value: Value
    item_lines: tuple[int, ...] = ()  # for a list: the line of each item


@dataclass(frozen=True)
class FileConfig:
    path: str
    settings: Mapping[str, Setting]  # by option name, with underscores

    def at(self, line: Optional[int], key: Optional[str], why: str) -> str:
        where = self.path if line is None else f"{self.path}:{line}"
        return f"--config={where}: " + (f"key {key!r}: " if key is not None else "") + why

    def explain(self, error: ConfigError) -> str:
        """A ``build`` error about a value that came from this file, told in its terms.

        The error names its option and value (``error.option``, ``error.value``);
        when this file set that option to that value (for a list, that item),
        the message names the line. Other errors come back unchanged.
        """
        if error.option == "command" and error.value is None:
            return self.at(
                None, None,
                "no server program: add 'command: [prog, args...]' or give it after '--'",
            )
        name = error.option
        if name is None or not (name == "command" or name.startswith("--")):
            return str(error)  # not an option's: a variable's (KILL_OLD_DELAY=...)
        s = self.settings.get(name.lstrip("-").replace("-", "_"))
        if s is None:
            return str(error)
        if name == "command":
            return self.at(s.line, s.key, str(error))
        if error.value is None:
            return self.at(s.line, s.key, error.reason)
        values = s.value if isinstance(s.value, tuple) else (s.value,)
        lines = s.item_lines or (s.line,) * len(values)
        for value, line in zip(values, lines):
            if value == error.value:
                return self.at(line, s.key, f"value {value!r}: {error.reason}")
        return str(error)


def read(path: str, kinds: Mapping[str, str]) -> FileConfig:
    """Load and shape-check ``path``. ``kinds`` maps option names to LIST, FLAG or VALUE."""
    import yaml

    if not path:
        raise ConfigError.of("--config", "", "empty path")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError.of("--config", path, f"cannot read: {exc.strerror}") from None
    fc = FileConfig(path, {})
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(fc.at(line, None, "not UTF-8 text")) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        why = str(exc.problem or exc.context)
        if exc.problem and exc.context:
            began = exc.context_mark
            if began is None or mark is None or began.line == mark.line:
                why += f" ({exc.context})"
            else:
                why += f" ({exc.context} on line {began.line + 1})"
        if exc.context == "while scanning a block scalar":
            why += "; quote a value that starts with '|', as in log-file: \"| cmd\""
        if exc.problem == "but found another document":
            why = "a second YAML document ('---'): a config file holds one"
        raise ConfigError(
            fc.at(None if mark is None else mark.line + 1, None, f"YAML syntax error: {why}")
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(fc.at(line, None, f"YAML syntax error: {exc.reason}")) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every YAML error has a kind above
        raise ConfigError(fc.at(None, None, f"YAML error: {exc}")) from None
    return FileConfig(path, _settings(fc, root, kinds))


def _settings(
    fc: FileConfig, root: Optional[yaml.Node], kinds: Mapping[str, str]
) -> dict[str, Setting]:
    import yaml

    if root is None or (root.tag == _TAG + "null" and not root.value):
        return {}  # an empty file
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(fc.at(_line(root), None, "expected a mapping of option: value"))
    out: dict[str, Setting] = {}
    for key_node, value_node in root.value:
        line = _line(key_node)
        if key_node.tag == _TAG + "merge":
            raise ConfigError(fc.at(line, "<<", "YAML merge keys are not supported"))
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _TAG + "str":
            raise ConfigError(fc.at(line, None, "keys must be option names"))
        key = key_node.value
        name = key.replace("-", "_")
        if name in REFUSED:
            raise ConfigError(fc.at(line, key, REFUSED[name]))
        if name != "command" and name not in kinds:
            raise ConfigError(fc.at(line, key, "unknown option" + _hint(name, kinds)))
        if name in out:
            raise ConfigError(fc.at(line, key, f"given twice (first on line {out[name].line})"))
        if name == "command":
            out[name] = _command(fc, key, line, value_node)
        else:
            out[name] = _value(fc, key, line, value_node, kinds[name])
    return out


def _hint(name: str, kinds: Mapping[str, str]) -> str:
    known = [k.replace("_", "-") for k in [*kinds, "command"]]
    close = difflib.get_close_matches(name.replace("_", "-"), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    """What a node is, for a message: ``a list``, ``a boolean``, ``a timestamp``."""
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    tag = str(node.tag)
    if tag.startswith(_TAG):
        short = tag[len(_TAG) :]
        return _KIND_NAMES.get(short, f"a {short}")
    return f"a value tagged {tag}"


def _scalar(node: yaml.Node) -> Optional[str]:
    """The text of a plain value (string or number), else None."""
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS:
        return str(node.value)
    return None


def _value(fc: FileConfig, key: str, line: int, node: yaml.Node, kind: str) -> Setting:
    import yaml

    if kind == FLAG:
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "bool":
            flag = yaml.constructor.SafeConstructor.bool_values[str(node.value).lower()]
            return Setting(key, line, bool(flag))
        raise ConfigError(fc.at(line, key, f"expected true or false, got {_kind(node)}"))
    if kind == LIST and isinstance(node, yaml.SequenceNode):
        items, lines = [], []
        for i, item in enumerate(node.value, 1):
            text = _scalar(item)
            if text is None:
                raise ConfigError(
                    fc.at(_line(item), key, f"item {i}: expected a value, got {_kind(item)}")
                )
            items.append(text)
            lines.append(_line(item))
        return Setting(key, line, tuple(items), tuple(lines))
    text = _scalar(node)
    if text is None:
        what = "a value or a list of values" if kind == LIST else "one value"
        hint = " (remove the key for the default)" if node.tag == _TAG + "null" else ""
        raise ConfigError(fc.at(line, key, f"expected {what}, got {_kind(node)}{hint}"))
    if kind == LIST:
        return Setting(key, line, (text,), (line,))
    return Setting(key, line, text)


def _command(fc: FileConfig, key: str, line: int, node: yaml.Node) -> Setting:
    """The server program and its arguments: a list, each item taken as written."""
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            why = (
                "expected a list such as [python3, app.py], got a string: it is not split "
                "into words, since shell quoting rules would be guesswork"
            )
        else:
            why = f"expected a list such as [python3, app.py], got {_kind(node)}"
        raise ConfigError(fc.at(line, key, why))
    if not node.value:
        raise ConfigError(fc.at(line, key, "empty list: name the server program"))
    words = []
    for i, item in enumerate(node.value, 1):
        # Every scalar is a word as written: 'yes' or '1.10' stay what they were.
        if not isinstance(item, yaml.ScalarNode) or item.tag == _TAG + "null":
            raise ConfigError(
                fc.at(_line(item), key, f"item {i}: expected a word, got {_kind(item)}")
            )
        words.append(str(item.value))
    return Setting(key, line, tuple(words))


def merge(
    options: Mapping[str, Any], given: set[str], fc: FileConfig
) -> tuple[dict[str, Any], FileConfig]:
    """Options with the file's settings under those given on the command line.

    ``given`` names the options that came from the command line; the server
    program on the command line (after ``--``) beats ``command:``. Returns the
    options for ``build`` and the file reduced to the settings that were used,
    so ``explain`` only ever blames the file for its own values.
    """
    out = dict(options)
    used: dict[str, Setting] = {}
    for name, s in fc.settings.items():
        if (name == "command" and out.get("command")) or name in given - {"command"}:
            continue
        if ALIASES.get(name) in given:
            continue
        out[name] = s.value
        used[name] = s
    return out, replace(fc, settings=used)
