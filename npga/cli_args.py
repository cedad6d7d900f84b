"""Argument types and the user-error exception shared by every ``npga`` subcommand module."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from pathlib import Path

import torch

from npga.bundle import AvatarBundle, BundleError, load_bundle
from npga.render import resolve_device


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def make_interruptible() -> None:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt even where the parent left it ignored (a
    shell's background job) or blocked (some CI runners and container init processes; a
    child inherits the signal mask): long jobs checkpoint on it, and a server's job runner
    stops ``npga create`` with it (telepresence/jobs.py). Only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def check_output_file(path: Path | None) -> None:
    """Before any work: a file can be written at ``path`` (its folder exists, it is not a folder);
    else a one-line CliError. None (an optional output not asked for) passes."""
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"{path}: is a folder; give a file name")
    if not path.absolute().parent.is_dir():
        raise CliError(f"{path}: its folder does not exist")


def load_avatar(path: Path, device: torch.device) -> AvatarBundle:
    """The bundle at ``path``, or a one-line CliError saying why it is not one."""
    try:
        return load_bundle(path, device)
    except BundleError as error:
        raise CliError(str(error)) from None


def positive_int(text: str) -> int:
    value = _integer(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text, "0 or more")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _integer(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def detail_arg(text: str) -> float:
    """A level of detail: the fraction of an avatar's Gaussians rendered, within (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction within (0, 1], got {text}")
    return value


def fractions_arg(text: str) -> list[float]:
    """Comma-separated levels of detail, e.g. ``1,0.5,0.35``."""
    return [detail_arg(part) for part in text.split(",") if part.strip()] or [1.0]


def device_arg(text: str) -> torch.device:
    try:
        return resolve_device(text)
    except (ValueError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help where the default says something (not for
    flags, options without a default, or help that already names its default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text:
            return text
        if action.default is None or action.default is False or action.default == "==SUPPRESS==":
            return text
        return f"{text} (default: %(default)s)"


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and every subcommand parser under it, formatted by DefaultsHelpFormatter."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)
    return parser
