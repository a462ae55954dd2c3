"""Command line: ``python -m talking_heads <command> [options]``.

Each command lives in the module that implements it and parses its own arguments, so that
``python -m talking_heads preprocess`` never imports the web app and vice versa.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help). Every module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("talking_heads.data.preprocess", "clips -> face crops + landmarks + metadata"),
    "train": ("talking_heads.training.meta_train", "meta-learning of E, G and D on episodes"),
    "finetune": ("talking_heads.training.finetune", "adapt a model to a person, save an Avatar"),
    "animate": ("talking_heads.animate_cli", "photos + driving clip or preset -> mp4"),
    "evaluate": ("talking_heads.evaluation", "self-reenactment metrics and baselines"),
}


def _usage() -> str:
    lines = ["usage: python -m talking_heads <command> [options]", "", "commands:"]
    lines += [f"  {name:<12}{help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `python -m talking_heads <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
