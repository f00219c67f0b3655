"""``python -m autonomic ...``: the ``autonomic`` command, where its script is not on PATH (a venv
not activated, a container with only the interpreter)."""

from autonomic.cli import main

main()
