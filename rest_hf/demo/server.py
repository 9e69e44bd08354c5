"""Start the demo: `serve` (what `rest-hf demo` runs) and `serve_space` (what a rest_hf Space's app.py runs)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from .models import ModelCatalog
from .scenes import UploadLimits

__all__ = ["serve", "serve_space"]

LOCALHOST = "127.0.0.1"


def serve(
    catalog: ModelCatalog,
    *,
    host: str = LOCALHOST,
    port: int = 7860,
    limits: UploadLimits | None = None,
    samples: dict[str, Path] | None = None,
    device: str = "auto",
    max_queue: int = 8,
) -> None:
    """Run the demo until interrupted, then remove its temporary files.

    Binds `host` (127.0.0.1 unless told otherwise); never opens a public share link; no analytics, no
    server-side rendering, no MCP server.
    """
    from .app import build_app

    limits = limits or UploadLimits()
    page, app = build_app(catalog, limits=limits, samples=samples, device=device, max_queue=max_queue)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # A service manager (or a test) stops the demo with SIGTERM: stop like Ctrl+C, so the files go too.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=limits.max_bytes,
            show_error=False,
            ssr_mode=False,
            mcp_server=False,
            footer_links=[],
        )
    finally:
        app.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_space(model_id: str, *, revision: str | None = None, extra_models: Sequence[str] = ()) -> None:
    """The app of a rest_hf Space: `model_id` first (loaded from the Hub), on the port the Space gives.

    Hugging Face Spaces set GRADIO_SERVER_NAME (0.0.0.0) and GRADIO_SERVER_PORT; elsewhere the app binds
    127.0.0.1:7860. Typed Hub ids are not accepted and the random-weight presets are not offered: the Space
    serves its model. The model is loaded before the page starts, so a Space that cannot load it fails at once
    with that one-line reason in its logs.
    """
    catalog = ModelCatalog(
        [model_id, *extra_models], allow_hub_ids=False, include_defaults=False, revision=revision
    )
    catalog.get(model_id)
    serve(
        catalog,
        host=os.environ.get("GRADIO_SERVER_NAME", LOCALHOST),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
