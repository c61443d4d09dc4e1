"""Registered model names the platform can work with, checked before anything is registered.

A name is used inside MLflow filter strings (`name = '<name>'`) to find versions and aliases. MLflow's
filter grammar has no escape for a single quote, and a backslash before the closing quote escapes it
(the server then refuses every search on that model), so such a name would be registered and then be
unusable. MLflow itself refuses '/' and ':' only when registering, i.e. after a run has trained.
No heavy import: configs call this while they parse.
"""

from __future__ import annotations

_REFUSED = {
    "'": "a single quote, which MLflow's filter strings cannot quote",
    "\\": "a backslash, which escapes the closing quote in MLflow's filter strings",
    "/": "a '/', which MLflow's registry refuses",
    ":": "a ':', which MLflow's registry refuses",
}


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a registered model name here, or None when it can."""
    if not name or not name.strip():
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with white space"
    for character, described in _REFUSED.items():
        if character in name:
            return f"it contains {described}"
    if any(not character.isprintable() for character in name):
        return "it contains a control character"
    return None


def invalid_model_name_message(name: str) -> str | None:
    """`invalid model name '<name>': <why>` or None."""
    problem = model_name_problem(name)
    return None if problem is None else f"invalid model name {name!r}: {problem}"
