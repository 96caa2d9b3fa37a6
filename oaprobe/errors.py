"""The package's own errors: a user-facing problem the CLI reports as one line, exit code 2.

Every error that a user can cause with a bad parameter, manifest, folder or grid derives from
:class:`OaprobeError`; anything else is a bug and keeps its traceback.

Example:
    >>> issubclass(OaprobeError, Exception), issubclass(ConfigError, ValueError)
    (True, True)
"""

from __future__ import annotations


class OaprobeError(Exception):
    """A problem with the user's input (parameter, file, manifest, grid); the message says what was expected."""


class ConfigError(OaprobeError, ValueError):
    """A configuration value is invalid; the message names the field and what was expected."""
