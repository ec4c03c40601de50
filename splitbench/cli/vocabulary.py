"""One option vocabulary for every command, and the old names it replaced.

The shared options (``--weights``, ``--data``, ``--dataset``, ``--train-dataset``, ``--limit``,
``--train-limit``, ``--cache``, ``--workers``, ``--loader-workers``, ``--repeats``, ``--leaf``,
``--device``, ``--precision``, …) are declared once, in :mod:`splitbench.cli.options`, and mean
the same on every command that takes them (tests/test_vocabulary.py checks it; the README's
"Options shared by every command" lists them).

The names they replaced keep working for a deprecation period: :func:`translate` rewrites them
to the new ones before the command parses its arguments, with one warning line per old name
used. The old names are not declared on the commands, so ``--help`` shows the new ones only.
"""

from __future__ import annotations

import sys

# command -> old option -> new option (the same meaning under its new name)
ALIASES: dict[str, dict[str, str]] = {
    "eval": {"--workers": "--loader-workers"},
    "train": {"--workers": "--loader-workers", "--test-limit": "--limit"},
    "prune": {"--checkpoint": "--weights", "--test-limit": "--limit", "--timing-repeats": "--repeats"},
    "group": {"--test-limit": "--limit", "--timing-repeats": "--repeats"},
    "rd": {"--train-data": "--train-dataset", "--test-data": "--dataset", "--test-limit": "--limit",
           "--image-size": "--input-size"},
}

# command -> option whose meaning changed -> (the option that has its old meaning now, the old
# option whose presence marks a command line written for the old meanings). train's --limit
# counted training images; it counts test images now, as everywhere else. Beside the old
# --test-limit it is read the old way; alone it takes its new meaning, with a warning, while
# old command lines may still be about.
MOVED: dict[str, dict[str, tuple[str, str]]] = {
    "train": {"--limit": ("--train-limit", "--test-limit")},
}


def translate(command: str, args: list[str]) -> list[str]:
    """``args`` (after the command name) with every old option name of ``command`` replaced by
    its new one, also in the ``--old=value`` form; one ``warning:`` line on stderr per old name
    used. Arguments after ``--`` are left alone."""
    aliases = ALIASES.get(command, {})
    moved = MOVED.get(command, {})
    if not aliases and not moved:
        return list(args)
    options = _option_names(args)
    renames = dict(aliases)
    for option, (new, old_companion) in moved.items():
        if option not in options:
            continue
        if old_companion in options:  # a command line written for the old meanings
            renames[option] = new
        elif new not in options:
            _warn(f"{option} counts {command}'s test images now, as on every command; the training images are "
                  f"{new} (before, {option} counted them)")
    translated, warned = [], set()
    for index, arg in enumerate(args):
        if arg == "--":
            translated += args[index:]
            break
        name, equals, value = arg.partition("=")
        new = renames.get(name) if name.startswith("--") else None
        if new is None:
            translated.append(arg)
            continue
        if name not in warned:
            warned.add(name)
            meaning = f" (read the old way, beside the old {moved[name][1]})" if name in moved else ""
            _warn(f"{name} is deprecated; use {new}{meaning}")
        translated.append(f"{new}{equals}{value}")
    return translated


def translate_config(command: str, options: dict[str, object]) -> dict[str, object]:
    """A recorded configuration's options (``config.yaml``: parameter names such as
    ``test_limit``) under the new names, as :func:`translate` renames them on the command line
    (one warning line per old name)."""
    args = [f"--{name.replace('_', '-')}" for name in options]
    renamed = translate(command, args)
    return {new.removeprefix("--").replace("-", "_"): value for new, value in zip(renamed, options.values())}


def _option_names(args: list[str]) -> set[str]:
    names = set()
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("--"):
            names.add(arg.partition("=")[0])
    return names


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
