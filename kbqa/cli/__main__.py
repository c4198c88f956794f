"""``python -m kbqa.cli``: the same as the ``kbqa`` command."""

from kbqa.cli import main

main()
