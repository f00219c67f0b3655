"""Options every command line of autonomic shares: the config file, ``--json``, and free text.

Free text (a pause reason, a comment, a name) must be UTF-8: a terminal in another encoding
passes bytes that Python keeps only as lone surrogates, which the store and the audit log refuse
(``café`` typed in Latin-1 arrives as byte 0xe9). :func:`text` refuses it at the option, exit 2,
naming the option and the byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def text(value: str) -> str:
    """``value`` as given when it is UTF-8 text, else :class:`typer.BadParameter` naming the first
    byte (or lone surrogate) that is not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise typer.BadParameter(f"not UTF-8 text ({what} at character {exc.start + 1}; is the "
                                 "terminal's encoding UTF-8?)") from None
    return value


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="autonomic.yaml (default: built-in defaults)",
                                                 envvar="AUTONOMIC_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
