"""Settings of a training run (``python -m engine train``) as one frozen dataclass."""

from __future__ import annotations

import dataclasses

from ..captions import ELEMENTS as QUADRUPLE_ELEMENTS  # what drop_elements may leave out (Table 5)
from ..config import JobConfig, check_choice, check_positive
from ..errors import InputError
TEXT_MODES = ("s2m", "none")


@dataclasses.dataclass(frozen=True)
class TrainConfig(JobConfig):
    """Settings of a training run.

    Data (one of): ``dataset`` (folder with ``A/ B/ label/ [list/]``) or ``before`` +
    ``after`` + ``labels`` (polygons in any OGR source, or a class raster).

    Attributes:
        out: run folder (must not exist or be empty, unless ``resume``).
        dataset: dataset folder.
        before, after: rasters of the two dates (*after* is aligned on *before*).
        labels: label polygons (``class_field`` holds schema names or ids) or a class raster.
        class_field, labels_layer: attribute and layer of the label polygons.
        aoi, aoi_layer: optional AOI polygons (default: the labels' extent).
        preset, schema: class schema preset or JSON file (the file wins).
        label_map: raw label value -> class id, ``"255:1"`` for LEVIR-CD.
        backbone, weights, backbone_options: the backbone (None = the registry's default).
        decoder_channels: decoder widths per scale (None = the model's default).
        text_encoder, text_weights: frozen text encoder of stage 2 (``minilm`` offline).
        init_from: start from this trained model (backbone, decoder, head; new classes of
            the schema get new head rows); unlike ``resume`` it starts a new run.
        steps: optimizer steps of both stages together; None = adapted to the labelled
            area (see :func:`engine.training.schedule.default_steps`).
        stage2_share: share of ``steps`` spent in stage 2 (0 = stage 1 only).
        stage1_epochs, stage2_epochs: alternative to ``steps``: passes over the
            training area per stage (one pass = training pixels / (crop² x batch) steps).
        warmup: share of each stage's steps with a linear learning-rate warm-up.
        chip: chip side of the model card (what prediction tiles with), px.
        crop: side of the random training crops, px (<= chip; a multiple of the
            backbone's size multiple); None = ``min(128, chip)``.
        val_fraction: share of the labelled area kept for validation.
        val_every: validate every this many steps (None: about 8 times per run).
        batch_size: crops per optimizer step and process.
        lr, weight_decay, head_lr_scale: AdamW (paper: 1e-4, 0.05); the newly initialised
            parts train at ``lr * head_lr_scale``.
        ema: decay of the exponential moving average of the weights (0 = off).
        lora_rank, freeze_backbone: fine-tuning mode (LoRA only on DINOv3 attention).
        alpha, beta, gamma: focal/dice/lovasz weights (0.4/0.3/0.3).
        lam, tau: contrastive weight (0.5) and temperature (0.7).
        text_mode: ``s2m`` (stage 2 with captions) or ``none`` (the paper's ablation:
            stage 2 with the same schedule and segmentation loss only).
        drop_elements: quadruple elements left out of the captions (Table 5 ablation).
        quantity_scale: multiplies the quantity thresholds of eq. 3 (1 = the paper).
        photometric: strength of the per-date photometric augmentation (0 = off).
        change_crops: share of each step's crops centred on a change pixel of a change
            class drawn uniformly (class-balanced, see :mod:`.sampler`); 0 = uniform crops.
        calibrate: calibrate the change threshold of the kept model on the validation area
            (:mod:`.calibrate`); False keeps the most probable class.
        device, amp, seed, workers, resume: as named.
    """

    out: str = "run"
    dataset: str | None = None
    before: str | None = None
    after: str | None = None
    labels: str | None = None
    class_field: str = "class"
    labels_layer: str | None = None
    aoi: str | None = None
    aoi_layer: str | None = None
    preset: str | None = None
    schema: str | None = None
    label_map: str | None = None
    backbone: str | None = None
    weights: str | None = None
    backbone_options: dict | None = None
    decoder_channels: tuple[int, ...] | None = None
    text_encoder: str = "minilm"
    text_weights: str | None = None
    init_from: str | None = None
    steps: int | None = None
    stage2_share: float = 0.3
    stage1_epochs: int | None = None
    stage2_epochs: int | None = None
    warmup: float = 0.05
    chip: int = 256
    crop: int | None = None
    val_fraction: float = 0.2
    val_every: int | None = None
    batch_size: int = 8
    lr: float = 1e-4
    head_lr_scale: float = 10.0
    weight_decay: float = 0.05
    ema: float = 0.99
    lora_rank: int = 0
    freeze_backbone: bool = False
    alpha: float = 0.4
    beta: float = 0.3
    gamma: float = 0.3
    lam: float = 0.5
    tau: float = 0.7
    text_mode: str = "s2m"
    drop_elements: tuple[str, ...] = ()
    quantity_scale: float = 1.0
    photometric: float = 1.0
    change_crops: float = 0.5
    calibrate: bool = True
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    workers: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        # an automatic crop may shrink to fit a small labelled area (training.setup.fit_crop)
        object.__setattr__(self, "crop_auto", self.crop is None)
        if self.crop is None:
            object.__setattr__(self, "crop", min(128, int(self.chip)))
        self._check_data()
        for name in ("lora_rank", "workers", "seed"):
            check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("chip", "crop", "batch_size", "lr", "tau", "head_lr_scale", "quantity_scale"):
            check_positive(name, getattr(self, name))
        for name in ("steps", "val_every"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        for name in ("stage1_epochs", "stage2_epochs"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), allow_zero=True)
        if self.stage1_epochs is not None and self.stage2_epochs is not None and self.stage1_epochs + self.stage2_epochs == 0:
            raise InputError("stage1_epochs and stage2_epochs are both 0: nothing to train")
        if self.steps is not None and (self.stage1_epochs is not None or self.stage2_epochs is not None):
            raise InputError("give either --steps or --stage1-epochs/--stage2-epochs, not both")
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("photometric", self.photometric, allow_zero=True)
        if not 0 <= self.change_crops <= 1:
            raise InputError(f"--change-crops must be within 0..1 (a share of the crops), got {self.change_crops}")
        if self.crop > self.chip:
            raise InputError(f"--crop {self.crop} is larger than --chip {self.chip}; training crops must fit a chip")
        if not 0 < self.val_fraction <= 0.5:
            raise InputError(f"val_fraction must be in (0, 0.5], got {self.val_fraction}")
        if not 0 <= self.stage2_share < 1:
            raise InputError(f"stage2_share must be in [0, 1), got {self.stage2_share}")
        if not 0 <= self.warmup <= 0.5:
            raise InputError(f"warmup must be in [0, 0.5], got {self.warmup}")
        if not 0 <= self.ema < 1:
            raise InputError(f"ema must be in [0, 1), got {self.ema}")
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        check_choice("text_mode", self.text_mode, TEXT_MODES)
        bad = [e for e in self.drop_elements if e not in QUADRUPLE_ELEMENTS]
        if bad:
            raise InputError(f"drop_elements: {', '.join(bad)} not an element of the quadruple ({', '.join(QUADRUPLE_ELEMENTS)})")
        if self.resume and self.init_from:
            raise InputError("--resume continues a run; --init-from starts a new run from a trained model: give one of them")

    def _check_data(self) -> None:
        if self.resume and not (self.dataset or self.before):
            return  # the data comes from the run's config.json
        if self.dataset and (self.before or self.after or self.labels):
            raise InputError("give either --dataset or --before/--after/--labels, not both")
        if not self.dataset and not (self.before and self.after and self.labels):
            raise InputError("no training data: give --dataset DIR, or --before, --after and --labels")

    @property
    def uses_text(self) -> bool:
        """Stage 2 runs with captions and the contrastive loss."""
        return self.text_mode == "s2m" and self.stage2_share > 0 and self.stage2_epochs != 0
