"""Shared pieces of the demo tests: Gradio must be installed (CI installs the `demo` extra), a fake request."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def require_gradio():
    """Gradio, or a loud failure: the demo tests never skip (install with pip install -c constraints.txt -e '.[demo]')."""
    try:
        import gradio
    except ImportError:
        pytest.fail("gradio is not installed: pip install -c constraints.txt -e '.[demo]'", pytrace=False)
    return gradio


def request(session: str = "session1") -> SimpleNamespace:
    """What the app reads from Gradio's request: the session's id."""
    return SimpleNamespace(session_hash=session)


def no_progress(*args, **kwargs) -> None:
    """Stands in for gr.Progress outside a running page."""
