"""Section 3 of the dock: what the labels say, as S2M sentences (``engine caption``)."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QLabel, QPlainTextEdit

from ..i18n import tr
from ..settings import CaptionJob
from .common import RunControls, RunSection
from .options import OptionsForm

#: Caption options the dock fills in itself.
EXCLUDED = ("label", "preset", "schema", "json")


class CaptionsSection(RunSection):
    """*Caption labels*: the label polygons rasterised on the before image's grid (at the
    Layers section's resolution for a web layer) and captioned per chip. The captions are
    saved to a GeoPackage beside the labels (or in the detection output folder) and shown
    as the ``captions`` layer; a re-run replaces it."""

    kind = "caption"

    def __init__(self, layers, classes, output_folder=lambda: "", parent=None):
        super().__init__(tr("3. Captions"), "MaskTalkCaptions", parent)
        self.tip = tr("Caption the label polygons with S2M sentences")
        self.layers_section = layers
        self.classes = classes
        self.output_folder = output_folder
        #: The sentences of the last run, in order.
        self.last_captions: list[str] = []
        intro = QLabel(tr("What your labels say: one S2M sentence (where, what, how, how many) per class and chip."))
        intro.setWordWrap(True)
        self.form.addRow(intro)
        self.options = OptionsForm("caption", ["chip"], exclude=EXCLUDED, labels={"chip": tr("Chip")}, more=True, parent=self)
        self.form.addRow(self.options)
        self.run = RunControls(tr("Caption labels"), "MaskTalkCaption")
        self.form.addRow(self.run)
        self.caption_text = QPlainTextEdit()
        self.caption_text.setObjectName("MaskTalkCaptionText")
        self.caption_text.setReadOnly(True)
        self.caption_text.setMaximumHeight(110)
        self.caption_text.setPlaceholderText(tr("Captions of your labels appear here."))
        self.form.addRow(self.caption_text)
        self.options.changed.connect(self.changed.emit)
        self.connect_run()

    def missing(self) -> list[str]:
        return self.layers_section.missing("caption") + self.classes.missing() + self.options.problems()

    def job(self) -> CaptionJob:
        """The section as a job (raises InputError when the classes are invalid)."""
        layers = self.layers_section
        return CaptionJob(
            labels=layers.labels(),
            class_field=layers.class_field(),
            reference=layers.before(),
            resolution=layers.effective_resolution(""),
            options=self.options.values(),
            add_layer=True,
            out_dir=str(self.output_folder() or ""),
            **self.classes.schema_kwargs(),
        )

    def on_result(self, result: dict) -> None:
        chips = result.get("json") or []
        sentences = [s for chip in chips for s in chip.get("sentences") or []]
        self.last_captions = sentences
        shown = sentences[:8]
        more = "\n" + tr("… and {n} more in the captions layer").format(n=len(sentences) - len(shown)) if len(sentences) > len(shown) else ""
        self.caption_text.setPlainText("\n".join(shown) + more if shown else tr("No change class in the labelled area."))
        self.run.status.setText(tr("{chips} chip(s), {n} sentence(s)").format(chips=len(chips), n=len(sentences)))
        self.notify.emit("success", tr("captions ready: {n} sentence(s) in {chips} chip(s)").format(n=len(sentences), chips=len(chips)), "")
