"""The JSON reports of `rest-hf predict --summary-json` and `rest-hf evaluate --json`: checked before the work,
written atomically, every failure one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["check_report_path", "write_report"]


def check_report_path(path: str | None, option: str) -> None:
    """Refuse a JSON report path that cannot be written (a folder, a device, a read-only folder) before any
    work; an existing regular file is replaced."""
    from ..cli import CommandError
    from ..io import check_output_path

    if path is None:
        return
    try:
        check_output_path(path, overwrite=True)
    except (OSError, ValueError) as error:
        raise CommandError(f"{option}: {' '.join(str(error).split())}") from None


def write_report(path: str | None, report: dict[str, Any], option: str) -> None:
    """Write a JSON report atomically; a failure (e.g. a full disk) is one line, exit code 1."""
    from ..cli import CommandError
    from ..io.writer.temporary import write_text_atomically

    if path is None:
        return
    try:
        write_text_atomically(Path(path), json.dumps(report, indent=2) + "\n")
    except OSError as error:
        raise CommandError(
            f"{option}: cannot write {path}: {error.strerror or ' '.join(str(error).split())}", exit_code=1
        ) from None
