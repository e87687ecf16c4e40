"""``python -m engine train``: two-stage S2M training on a labelled scene or a dataset folder."""

from __future__ import annotations

HELP = "train a change model (stage 1 visual, stage 2 with S2M captions) on labelled rasters or a dataset folder"

EPILOG = """\
Schedule: counted in optimizer steps. By default the length adapts to the labelled area
(about 300 steps for a hand-labelled patch or a few 256 px image pairs, growing with the
square root of the area up to 3000); 30 %% of the steps are stage 2. Each step trains on
--batch-size random --crop px crops drawn afresh inside the training area, with shared
flips/rotations and independent photometric changes per date.

Validation: a spatial split that never shares a pixel with training -- whole images for
folders of 20 or more images (or list/train.txt + list/val.txt), else blocks of a large
labelled area, else a strip of every image. The kept model (RUN/best, what predict uses)
is the moving average of the weights (--ema): the best-scoring one over the validations
when the validation holds enough data (3+ regions, 2 x chip^2 labelled px, 1000 changed px),
otherwise the one at the end of training -- the log says which rule applied.
Its change threshold is calibrated on the validation area (with 1000+ changed pixels):
"changed when 1 - P(no change) >= t" for t in 0.10..0.50, kept in the model card when it
beats the most probable class by 0.005 in F1 (two classes) or SeK, and by as much the
trivial decision of every pixel changed (a model no better than chance is not pushed to
call a whole image change); predict --threshold overrides it, --no-calibrate keeps the
most probable class.

Normalisation: 8-bit imagery uses the backbone's ImageNet convention; 16-bit and float
imagery use per-band statistics measured on the training crops. Both are stored in the
model card and checked again by predict.

Run folder: config.json, best/ (the kept model), last/ (resume state), metrics.jsonl,
metrics.png. --out must not hold files unless --resume.
"""


def configure(parser) -> None:
    parser.epilog = EPILOG
    import argparse

    from ..inference.config import DEVICES
    from ..options import BACKBONES, TEXT_ENCODER_PREFIXES, TEXT_ENCODERS, Names, bounded, one_line_errors, path

    one_line_errors(parser)

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    data = parser.add_argument_group("data (either --dataset, or --before/--after/--labels)")
    data.add_argument("--dataset", type=path, help="dataset folder with A/ (before), B/ (after), label/ and optional list/train.txt, list/val.txt")
    data.add_argument("--before", type=path, help="raster of the first date (any GDAL format); its grid is the reference")
    data.add_argument("--after", type=path, help="raster of the second date; reprojected/resampled onto --before's grid")
    data.add_argument("--labels", type=path, help="label polygons (GeoPackage, Shapefile, GeoJSON ...) or a class raster")
    data.add_argument("--class-field", default="class", help="attribute of the label polygons holding the class name or id (default: class)")
    data.add_argument("--labels-layer", help="layer of --labels (default: the only one, or 'labels')")
    data.add_argument("--aoi", type=path, help="polygon layer of the labelled area (default: the extent of the labels); "
                      "unlabelled pixels inside are 'no change', outside are ignored")
    data.add_argument("--aoi-layer", help="layer of --aoi")
    data.add_argument("--preset", help="class schema preset (default: gaza)")
    data.add_argument("--schema", type=path, help="class schema JSON file (wins over --preset)")
    data.add_argument("--label-map", help="raw label value -> class id, e.g. 255:1 for LEVIR-CD / WHU-CD")
    data.add_argument("--chip", type=bounded(int, 16), default=256, help="chip side of the model card, what predict tiles with (default 256; "
                      "multiple of 32 for EfficientNet, 16 for DINOv3)")
    data.add_argument("--crop", type=bounded(int, 16), help="side of the random training crops (default: min(128, --chip))")
    data.add_argument("--val-fraction", type=bounded(float, 0, 0.5, open_min=True), default=0.2, help="share of the labelled area kept for validation (default 0.2)")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", choices=tuple(BACKBONES), help="backbone name (default: DINOv3 when its weights are found, else efficientnet_lite0)")
    model.add_argument("--weights", type=path, help="backbone weights: a DINOv3 folder, a weights file, or 'random'")
    model.add_argument("--init-from", type=path, help="start from this trained model (checkpoint or run folder): its backbone, decoder and head; "
                       "classes new in the schema get new head rows. A new run, unlike --resume")
    model.add_argument("--text-encoder", default="minilm", type=Names(TEXT_ENCODERS, TEXT_ENCODER_PREFIXES), help="frozen text encoder of stage 2 (default minilm, offline; the paper: clip-vit-b32; "
                       "also clip:ARCH[:TAG] of open_clip)")
    model.add_argument("--text-weights", type=path, help="local weights of the text encoder")
    model.add_argument("--lora-rank", type=bounded(int, 0, 256), default=0, help="LoRA rank on the backbone's attention (DINOv3; 0 = full fine-tuning)")
    model.add_argument("--freeze-backbone", action="store_true", help="keep the backbone's weights fixed")

    s2m = parser.add_argument_group("S2M text stage (paper §3)")
    s2m.add_argument("--text-mode", default="s2m", choices=("s2m", "none"), help="s2m: stage 2 with captions and the contrastive loss "
                     "(default); none: the paper's ablation, stage 2 with the same schedule and no text")
    s2m.add_argument("--drop-elements", default="", help="quadruple elements left out of the captions (Table 5 ablation), "
                     "comma-separated from quantity,type,category,location (default: none)")
    s2m.add_argument("--quantity-scale", type=bounded(float, 0, open_min=True), default=1.0, help="multiplies the quantity thresholds of eq. 3 (800/4000/8000 px; "
                     "default 1 = the paper, whatever the chip size)")
    s2m.add_argument("--lam", type=bounded(float, 0), default=0.5, help="weight of the contrastive loss in stage 2 (default 0.5)")
    s2m.add_argument("--tau", type=bounded(float, 0, open_min=True), default=0.7, help="InfoNCE temperature (default 0.7)")

    opt = parser.add_argument_group("optimisation (paper: AdamW lr 1e-4, weight decay 0.05)")
    opt.add_argument("--steps", type=bounded(int, 1), help="optimizer steps of both stages (default: adapted to the labelled area, 300-3000)")
    opt.add_argument("--stage2-share", type=bounded(float, 0, 1, open_max=True), default=0.3, help="share of the steps in stage 2 (default 0.3; 0 = stage 1 only)")
    opt.add_argument("--stage1-epochs", type=bounded(int, 0), help="instead of --steps: passes over the training area in stage 1")
    opt.add_argument("--stage2-epochs", type=bounded(int, 0), help="instead of --steps: passes over the training area in stage 2")
    opt.add_argument("--warmup", type=bounded(float, 0, 0.5), default=0.05, help="share of each stage's steps with a linear warm-up (default 0.05)")
    opt.add_argument("--val-every", type=bounded(int, 1), help="validate every N steps (default: about 8 times per run)")
    opt.add_argument("--batch-size", type=bounded(int, 1), default=8, help="crops per step and process (default 8)")
    opt.add_argument("--lr", type=bounded(float, 0, open_min=True), default=1e-4, help="AdamW learning rate of the backbone (default 1e-4)")
    opt.add_argument("--head-lr-scale", type=bounded(float, 0, open_min=True), default=10.0, help="learning-rate multiplier of the newly initialised decoder, "
                     "head and text modules (default 10; the paper: 1)")
    opt.add_argument("--weight-decay", type=bounded(float, 0), default=0.05, help="AdamW weight decay (default 0.05)")
    opt.add_argument("--ema", type=bounded(float, 0, 1, open_max=True), default=0.99, help="decay of the moving average of the weights that is kept (default 0.99; 0 = off)")
    opt.add_argument("--photometric", type=bounded(float, 0), default=1.0, help="strength of the per-date photometric augmentation (default 1; 0 = off)")
    opt.add_argument("--change-crops", type=bounded(float, 0, 1), default=0.5, help="share of each step's crops centred on a changed pixel, the change "
                     "class drawn uniformly among those labelled (class-balanced; default 0.5; 0 = uniform crops)")
    opt.add_argument("--no-calibrate", action="store_true", help="keep the most probable class as the change decision "
                     "instead of a change threshold calibrated on the validation area")
    opt.add_argument("--device", default="auto", choices=DEVICES, help="device (default auto: CUDA when available)")
    opt.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    opt.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the split and of every random draw (default 0)")
    opt.add_argument("--workers", type=bounded(int, 0), default=0, help="data loader worker processes (default 0)")

    parser.add_argument("--out", required=True, type=path, help="run folder (best/, last/, metrics.jsonl, metrics.png, config.json); must be new or empty")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint, with the settings "
                        "saved in its config.json (only --device and --workers may change)")


def rules(facts) -> list:
    """The rules between train's options (:mod:`engine.options`), at this environment's ``facts``."""
    from ..options import DEFAULT_ONLY, MULTIPLE_OF, REQUIRED, Rule

    out = []
    for name, bb in facts.backbones.items():
        means = facts.backbone_values(name)  # the name, and None (automatic) when it is the default here
        if not bb.attention:
            out.append(Rule("lora_rank", DEFAULT_ONLY, {"backbone": means},
                            f"LoRA targets attention projections; backbone {name} has none "
                            "(use a dinov3_* backbone, or --lora-rank 0 = full fine-tuning)"))
        if bb.needs_weights and not facts.weights_found(name):
            where = facts.environment.get("weights_dir") or "~/.cache/masktalk/weights (or $MASKTALK_WEIGHTS)"
            out.append(Rule("weights", REQUIRED, {"backbone": (name,)},
                            f"backbone {name} needs weights: give --weights (its downloaded folder, or 'random'), "
                            f"or put that folder in {where} as {name}/; efficientnet_lite0's weights ship with the engine"))
        for dest in ("chip", "crop"):
            out.append(Rule(dest, MULTIPLE_OF, {"backbone": means},
                            f"backbone {name} needs a {dest} side that is a multiple of {bb.size_multiple} px",
                            multiple=bb.size_multiple))
    return out


def effective(values: dict) -> dict:
    """``values`` with the backbone a run will use when none is named (the registry's rule)."""
    if values.get("backbone"):
        return values
    from ..models.registry import default_backbone

    return {**values, "backbone": default_backbone(values.get("weights"))[0]}


FIELDS = ("out", "dataset", "before", "after", "labels", "class_field", "labels_layer", "aoi", "aoi_layer", "preset", "schema",
          "label_map", "backbone", "weights", "init_from", "text_encoder", "text_weights", "lora_rank", "freeze_backbone", "text_mode",
          "quantity_scale", "lam", "tau", "steps", "stage2_share", "stage1_epochs", "stage2_epochs", "warmup", "val_every", "chip",
          "crop", "val_fraction", "batch_size", "lr", "head_lr_scale", "weight_decay", "ema", "photometric", "change_crops", "device", "seed",
          "workers", "resume")


def run(args, progress) -> dict:
    from ..training import TrainConfig, train

    drop = tuple(e.strip() for e in (args.drop_elements or "").split(",") if e.strip())
    config = TrainConfig(**{f: getattr(args, f) for f in FIELDS}, drop_elements=drop, amp=not args.no_amp, calibrate=not args.no_calibrate)
    result = train(config, progress)
    if args.progress not in ("jsonl",) and result.get("best_metrics"):
        m = result["best_metrics"]
        progress.log(f"kept model ({result['rule']}, step {result['best_step']}): " + " ".join(f"{k} {v:.4f}" for k, v in m.items() if v is not None))
    return result
