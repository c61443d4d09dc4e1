"""Turning configs into MLflow params: flattening, stringifying, and the rule for overlong values.

MLflow stores a param value of at most `MAX_PARAM_VALUE_LENGTH` characters and a key of at most
`MAX_KEY_LENGTH`. Our rule, applied with a warning and never silently:

- a value longer than the limit is stored cut to `MAX_PARAM_VALUE_LENGTH - len(OVERFLOW_MARKER)`
  characters followed by `OVERFLOW_MARKER`, and the FULL value is saved in the run artifact
  `OVERFLOW_ARTIFACT` (a JSON object key -> full value), so nothing is lost;
- a key longer than the limit is an error (`ValueError`): a key cannot be shortened without changing
  what it names.

Values that `mlflow run` already logged as raw command-line strings ("1e-3" for 0.001, "" for None)
are compared by meaning, not by text (`same_param_value`), so logging the resolved config over them
is not a conflict.
"""

from __future__ import annotations

import json
import math
import shlex
import warnings
from collections.abc import Mapping
from typing import Any

# mlflow.utils.validation.MAX_PARAM_VAL_LENGTH / MAX_ENTITY_KEY_LENGTH (not imported: keeps this light).
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
OVERFLOW_MARKER = "...[cut: full value in params_overflow.json]"
OVERFLOW_ARTIFACT = "params_overflow.json"
# Tags follow the same rule (mlflow.utils.validation.MAX_TAG_VAL_LENGTH): one 5 MB tag would otherwise
# be a 5 MB journal line and a request the server refuses.
MAX_TAG_VALUE_LENGTH = 8000
TAG_OVERFLOW_MARKER = "...[cut: full value in tags_overflow.json]"
TAG_OVERFLOW_ARTIFACT = "tags_overflow.json"

_NONE_SPELLINGS = {"", "none", "null"}


class ParamOverflowWarning(UserWarning):
    """A param value was longer than MLflow allows; the param holds a cut value, the artifact the rest."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys: {"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def param_string(value: Any) -> str:
    """The text MLflow stores for a param value: None is "" (our configs read "" as None)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def same_param_value(stored: str, value: Any) -> bool:
    """True when `stored` (what the server holds) means the same as `value`.

    `mlflow run -P lr=1e-3` stores "1e-3" where the resolved config says 0.001; "" / "None" stand for
    None; "true"/"True" for True. Only equal meanings count; anything else is a real conflict.
    `mlflow run` stores each value shell-quoted, as it put it on the command line (an unset value is
    the two characters "''"), so a stored value is compared unquoted.
    """
    new = param_string(value)
    if stored == new:
        return True
    stored = _shell_unquoted(stored)
    if stored == new:
        return True
    if stored.strip().lower() in _NONE_SPELLINGS and new.strip().lower() in _NONE_SPELLINGS:
        return True
    if isinstance(value, bool) or stored.lower() in ("true", "false"):
        return stored.strip().lower() == new.strip().lower()
    try:
        a, b = float(stored), float(new)
    except ValueError:
        return False
    return a == b or (math.isnan(a) and math.isnan(b))


def _shell_unquoted(text: str) -> str:
    """ "'a b'" -> "a b", "''" -> ""; text that is not one shell word comes back as it is."""
    try:
        words = shlex.split(text)
    except ValueError:
        return text
    if not words:
        return "" if text.strip() else text
    return words[0] if len(words) == 1 else text


def prepare_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Flatten and stringify params; return (params to log, full values of the overlong ones).

    Raises:
        ValueError: a key is longer than MLflow's key limit.
    """
    prepared: dict[str, str] = {}
    overflow: dict[str, str] = {}
    for key, value in flatten(params).items():
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"param key {key[:60]!r}... is {len(key)} characters; MLflow allows {MAX_KEY_LENGTH}"
            )
        text = param_string(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            overflow[key] = text
            text = text[: MAX_PARAM_VALUE_LENGTH - len(OVERFLOW_MARKER)] + OVERFLOW_MARKER
            warnings.warn(
                f"param {key!r} is {len(overflow[key])} characters, over MLflow's {MAX_PARAM_VALUE_LENGTH}: "
                f"the param holds its first {MAX_PARAM_VALUE_LENGTH - len(OVERFLOW_MARKER)} characters and "
                f"the full value is in the artifact {OVERFLOW_ARTIFACT}",
                ParamOverflowWarning,
                stacklevel=3,
            )
        prepared[key] = text
    return prepared, overflow


def prepare_tags(tags: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Stringify tags; return (tags to log, full values of the overlong ones), cut as params are."""
    prepared: dict[str, str] = {}
    overflow: dict[str, str] = {}
    for key, value in tags.items():
        text = str(value)
        if len(text) > MAX_TAG_VALUE_LENGTH:
            overflow[key] = text
            keep = MAX_TAG_VALUE_LENGTH - len(TAG_OVERFLOW_MARKER)
            text = text[:keep] + TAG_OVERFLOW_MARKER
            warnings.warn(
                f"tag {key!r} is {len(overflow[key])} characters, over MLflow's {MAX_TAG_VALUE_LENGTH}: "
                f"the tag holds its first {keep} characters and the full value is in the artifact "
                f"{TAG_OVERFLOW_ARTIFACT}",
                ParamOverflowWarning,
                stacklevel=3,
            )
        prepared[key] = text
    return prepared, overflow
