"""The Gradio page of `rest-hf demo` and of rest_hf Spaces.

Every session has its own folder under the app's temporary root: its uploads (copied out of Gradio's upload
folder at once), the label and probability GeoTIFFs and the pictures. Gradio serves files inside its cache
folder in place, and the app puts that folder under the same root, so the downloads are the files rest_hf
wrote. The session's folder is removed when the page is closed (Gradio's `unload`), the whole root when the
app stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ..distributed import one_line
from ..inference.runtime import resolve_device
from .legend import legend_html, run_summary
from .models import ModelCatalog
from .run import predict_scene
from .scenes import (
    SCENE_SUFFIXES,
    SceneInfo,
    UploadLimits,
    blend,
    chosen_bands,
    colour_labels,
    default_bands,
    inspect_scene,
    render_scene,
    write_sample_scene,
)

__all__ = ["DemoApp", "build_app"]

SAMPLE_NAME = "synthetic shapes (256 x 256, UTM)"


@dataclass
class SessionView:
    """What a session holds between events: its scene and the pictures of the last prediction."""

    scene: SceneInfo | None = None
    scene_picture: Any = None
    label_colours: Any = None
    label_valid: Any = None
    overlay: Path | None = None
    files: list[Path] = field(
        default_factory=list
    )  # this session's outputs and pictures, replaced by the next


def _error(message: str) -> str:
    return f"**Error:** {one_line(Exception(message))}"


class DemoApp:
    """The demo's state shared by all sessions: models, limits, samples and the temporary root.

    Args:
        catalog: The models offered.
        limits: Upload limits (stated in the page).
        samples: Extra sample scenes the operator chose (name -> file); a generated one is always offered.
        device: `auto`, `cpu`, `cuda` or `cuda:N`.
        root: Temporary folder of the app (default: a new one); removed by `close()`.
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        limits: UploadLimits | None = None,
        samples: dict[str, Path] | None = None,
        device: str = "auto",
        root: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.limits = limits or UploadLimits()
        self.device = resolve_device(device)
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="rest-hf-demo-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions_dir = self.root / "sessions"
        self.samples = {SAMPLE_NAME: write_sample_scene(self.root / "samples" / "synthetic_shapes.tif")}
        for name, path in (samples or {}).items():
            self.samples[name] = Path(path)

    # ------------------------------------------------------------- sessions
    def _session_path(self, request: gr.Request | None) -> Path:
        key = getattr(request, "session_hash", None) or "anonymous"
        return self.sessions_dir / "".join(c for c in key if c.isalnum() or c in "-_")

    def session_dir(self, request: gr.Request | None) -> Path:
        folder = self._session_path(request)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def end_session(self, request: gr.Request) -> None:
        """Gradio's `unload`: the session's folder goes."""
        shutil.rmtree(self._session_path(request), ignore_errors=True)

    @staticmethod
    def _forget(view: SessionView) -> None:
        """Remove the previous scene's outputs and pictures (one set per session at a time)."""
        for old in view.files:
            old.unlink(missing_ok=True)
        view.files = []

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --------------------------------------------------------------- events
    def _bands_update(self, info: SceneInfo | None, model_name: str) -> Any:
        """The band selector: shown only when the scene has more bands than the model needs."""
        if info is None:
            return gr.update(visible=False, choices=[], value=[])
        try:
            needed = self.catalog.get(model_name).num_channels
        except ValueError:
            return gr.update(visible=False, choices=[], value=[])
        choices = info.band_choices()
        if info.count <= needed:
            return gr.update(visible=False, choices=choices, value=[])
        value = [choices[b - 1] for b in default_bands(info, needed)]
        return gr.update(
            visible=True, choices=choices, value=value, label=f"Bands in the model's order ({needed} needed)"
        )

    def _use_scene(self, view: SessionView, info: SceneInfo, model_name: str, folder: Path):
        self._forget(view)
        if view.scene is not None and view.scene.path.is_relative_to(folder):
            shutil.rmtree(view.scene.path.parent, ignore_errors=True)  # the previous upload
        view.scene = info
        view.label_colours = view.label_valid = None
        picture = folder / f"scene_{uuid.uuid4().hex[:8]}.png"
        view.files.append(picture)
        try:
            needed = self.catalog.get(model_name).num_channels
        except ValueError:
            needed = min(3, info.count)
        shown = default_bands(info, min(needed, info.count))
        view.scene_picture = render_scene(info.path, shown)
        _save_png(view.scene_picture, picture)
        status = f"Scene {info.summary()}. Press **Segment**."
        return view, self._bands_update(info, model_name), status, str(picture)

    def on_upload(self, file: Any, model_name: str, view: SessionView, request: gr.Request):
        view = view or SessionView()
        if file is None:
            return view, gr.update(), "", gr.update()
        uploaded = Path(file if isinstance(file, str) else file.name)
        folder = self.session_dir(request)
        name = uploaded.name
        target = folder / "uploads" / uuid.uuid4().hex[:8] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(uploaded, target)
            shutil.rmtree(uploaded.parent, ignore_errors=True)  # Gradio's per-upload folder
            info = inspect_scene(target, self.limits, name=name)
            return self._use_scene(view, info, model_name, folder)
        except Exception as error:  # noqa: BLE001 - every failure is one line in the page
            shutil.rmtree(target.parent, ignore_errors=True)
            view.scene = None
            message = str(error).replace(str(target), name)
            return view, self._bands_update(None, model_name), _error(message), None

    def on_sample(self, name: str, model_name: str, view: SessionView, request: gr.Request):
        view = view or SessionView()
        if not name:
            return view, gr.update(), "", gr.update()
        path = self.samples.get(name)
        if path is None:
            return view, gr.update(), _error(f"no sample called {name!r}"), gr.update()
        try:
            info = inspect_scene(path, self.limits, name=path.name)
            return self._use_scene(view, info, model_name, self.session_dir(request))
        except Exception as error:  # noqa: BLE001
            view.scene = None
            return (
                view,
                self._bands_update(None, model_name),
                _error(str(error).replace(str(path), path.name)),
                None,
            )

    def on_model(self, model_name: str, view: SessionView):
        view = view or SessionView()
        try:
            self.catalog.get(model_name)
        except Exception as error:  # noqa: BLE001
            return self._bands_update(None, model_name), _error(str(error))
        return self._bands_update(view.scene, model_name), ""

    def on_predict(
        self,
        model_name: str,
        mode: str,
        window: float,
        bands: list[str],
        probabilities: bool,
        opacity: float,
        view: SessionView,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's progress injection
    ):
        view = view or SessionView()
        empty = (gr.update(value=None),) * 3 + ("", "", None, None)
        try:
            if view.scene is None:
                raise ValueError("upload a scene or choose a sample first")
            progress(0.0, desc="loading the model")
            loaded = self.catalog.get(model_name)
            chosen = chosen_bands(view.scene, bands, loaded.num_channels)
            folder = self.session_dir(request)
            self._forget(view)
            prediction = predict_scene(
                loaded,
                view.scene.path,
                chosen,
                folder / "outputs",
                mode=mode,
                window=int(window) if window else None,
                probabilities=bool(probabilities),
                device=self.device,
                step=lambda fraction, what: progress(fraction, desc=what),
            )
            scene_png = folder / f"scene_{uuid.uuid4().hex[:8]}.png"
            labels_png = folder / f"labels_{uuid.uuid4().hex[:8]}.png"
            view.scene_picture = render_scene(view.scene.path, chosen)
            from ..io import resolve_palette

            palette = resolve_palette(loaded.config.palette, loaded.config.num_labels)
            view.label_colours, view.label_valid = colour_labels(prediction.labels_path, palette)
            _save_png(view.scene_picture, scene_png)
            _save_png(view.label_colours, labels_png)
            overlay = self._overlay(view, opacity, folder)
        except Exception as error:  # noqa: BLE001 - every failure is one line in the page
            return (view, _error(str(error)), *empty)
        view.files = [scene_png, labels_png, prediction.labels_path]
        if prediction.probabilities_path is not None:
            view.files.append(prediction.probabilities_path)
        status = f"Done: {view.scene.name} segmented."
        return (
            view,
            status,
            str(scene_png),
            str(labels_png),
            overlay,
            legend_html(prediction),
            run_summary(prediction, model_name, mode, loaded.random_weights),
            str(prediction.labels_path),
            str(prediction.probabilities_path) if prediction.probabilities_path else None,
        )

    def _overlay(self, view: SessionView, opacity: float, folder: Path) -> str | None:
        if view.label_colours is None or view.scene_picture is None:
            return None
        if view.overlay is not None:
            view.overlay.unlink(missing_ok=True)
        view.overlay = folder / f"overlay_{uuid.uuid4().hex[:8]}.png"
        _save_png(blend(view.scene_picture, view.label_colours, view.label_valid, opacity), view.overlay)
        return str(view.overlay)

    def on_opacity(self, opacity: float, view: SessionView, request: gr.Request):
        view = view or SessionView()
        return self._overlay(view, opacity, self.session_dir(request)) or gr.update()

    # ----------------------------------------------------------------- page
    def blocks(self) -> gr.Blocks:
        names = self.catalog.names
        hub_note = " or type a Hub id (org/name)" if self.catalog.allow_hub_ids else ""
        with gr.Blocks(title="rest_hf demo", analytics_enabled=False, delete_cache=(600, 3600)) as page:
            view = gr.State(SessionView())
            gr.Markdown(
                "# rest_hf: whole-scene segmentation\n"
                f"Upload a scene ({self.limits.describe()}) or pick a sample, choose a model and press "
                "**Segment**. The label GeoTIFF has the scene's CRS, transform and size."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(
                        label=f"Scene: {self.limits.describe()}",
                        file_types=list(SCENE_SUFFIXES),
                        type="filepath",
                        elem_id="scene-upload",
                    )
                    sample = gr.Dropdown(
                        choices=list(self.samples), value=None, label="or a sample scene", elem_id="sample"
                    )
                    model = gr.Dropdown(
                        choices=names,
                        value=names[0],
                        allow_custom_value=self.catalog.allow_hub_ids,
                        label=f"Model: one of the list{hub_note}",
                        elem_id="model",
                    )
                    mode = gr.Radio(["holistic", "windowed"], value="holistic", label="Mode", elem_id="mode")
                    window = gr.Slider(
                        256, 4096, value=2048, step=32, label="Window (px, windowed mode)", elem_id="window"
                    )
                    bands = gr.Dropdown(
                        choices=[], value=[], multiselect=True, visible=False, label="Bands", elem_id="bands"
                    )
                    probabilities = gr.Checkbox(
                        value=False, label="Also the class probabilities (float GeoTIFF)", elem_id="probs"
                    )
                    run = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Column(scale=2):
                    status = gr.Markdown(elem_id="status")
                    with gr.Row():
                        scene_image = gr.Image(
                            label="Scene", type="filepath", interactive=False, elem_id="scene"
                        )
                        labels_image = gr.Image(
                            label="Labels", type="filepath", interactive=False, elem_id="labels"
                        )
                    overlay = gr.Image(label="Overlay", type="filepath", interactive=False, elem_id="overlay")
                    opacity = gr.Slider(
                        0, 1, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity"
                    )
                    legend = gr.HTML(elem_id="legend")
                    summary = gr.Markdown(elem_id="summary")
                    with gr.Row():
                        labels_file = gr.File(label="Label GeoTIFF", interactive=False, elem_id="labels-file")
                        probs_file = gr.File(
                            label="Probabilities GeoTIFF", interactive=False, elem_id="probs-file"
                        )

            upload.upload(self.on_upload, [upload, model, view], [view, bands, status, scene_image])
            sample.input(self.on_sample, [sample, model, view], [view, bands, status, scene_image])
            model.input(self.on_model, [model, view], [bands, status])
            run.click(
                self.on_predict,
                [model, mode, window, bands, probabilities, opacity, view],
                [view, status, scene_image, labels_image, overlay, legend, summary, labels_file, probs_file],
                concurrency_limit=1,
                concurrency_id="predict",
            )
            opacity.release(self.on_opacity, [opacity, view], [overlay])
            page.unload(self.end_session)
        return page


def _save_png(picture: Any, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def build_app(
    catalog: ModelCatalog,
    *,
    limits: UploadLimits | None = None,
    samples: dict[str, Path] | None = None,
    device: str = "auto",
    max_queue: int = 8,
) -> tuple[gr.Blocks, DemoApp]:
    """The page and its state. Gradio's cache folder is put under the app's root first (uploads and served
    files then live there). One prediction runs at a time; at most `max_queue` wait."""
    app = DemoApp(catalog, limits=limits, samples=samples, device=device)
    os.environ["GRADIO_TEMP_DIR"] = str(app.root)
    page = app.blocks()
    page.queue(max_size=max_queue, default_concurrency_limit=1)
    return page, app
