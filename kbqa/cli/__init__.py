"""The `kbqa` command line; with api/ and config.Settings, the only code that reads the environment."""

from __future__ import annotations


def main() -> None:
    """Console-script entry point (``kbqa = "kbqa.cli:main"``); builds the app on first call."""
    from kbqa.cli.app import main as run

    run()
