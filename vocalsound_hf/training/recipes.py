"""Training recipes: a YAML or JSON file of ``train_hf.py`` arguments, overridable on the command line."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import yaml

RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


def recipe_to_argv(recipe: str | os.PathLike, parser) -> list[str]:
    """Command-line arguments equivalent to a YAML or JSON recipe, for ``parser`` (an ``HfArgumentParser``).

    ``HfArgumentParser.parse_yaml_file`` cannot take command-line overrides, so the recipe is turned into
    arguments placed before the user's: argparse keeps the last value given, and the command line wins.
    Unknown keys are reported with the recipe's name and the closest known argument.
    """
    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(
            f"recipe {path}: expected a mapping of argument names to values, got {type(values).__name__}"
        )
    known = {action.dest for action in parser._actions}
    argv: list[str] = []
    for key, value in values.items():
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ValueError(
                f"recipe {path}: unknown argument {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append(str(value).lower())
        elif isinstance(value, list):
            argv.extend(str(item) for item in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value))
    return argv
