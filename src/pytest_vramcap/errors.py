"""Exceptions raised by pytest-vramcap.

    VramcapError                  base of everything we raise on purpose
    └── BadInputError             the user's input is wrong; the CLI exits 2 with one line
        ├── ProfileError          an unknown or malformed VRAM profile
        ├── ModelSourceError      a model that cannot be found, read or understood
        └── ConfigError           contradictory or out-of-range plan options

The CLI catches ``BadInputError`` and prints ``vramcap: error: <message>``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "VramcapError",
    "BadInputError",
    "ProfileError",
    "ModelSourceError",
    "ConfigError",
]


class VramcapError(Exception):
    """Base class for errors raised deliberately by pytest-vramcap."""


class BadInputError(VramcapError):
    """The input (a flag, a file, a profile) is wrong; exit code 2."""


class ProfileError(BadInputError):
    """A VRAM profile string or profile file could not be understood."""


class ModelSourceError(BadInputError):
    """A model source (GGUF path, shape name, ollama:NAME) could not be used."""


class ConfigError(BadInputError):
    """Plan options that are out of range or contradict each other."""
