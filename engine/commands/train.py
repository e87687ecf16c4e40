"""``python -m engine train``: two-stage S2M training on a labelled scene or a dataset folder."""

from __future__ import annotations

HELP = "train a change model (stage 1 visual, stage 2 with S2M captions) on labelled rasters or a dataset folder"


def configure(parser) -> None:
    data = parser.add_argument_group("data (either --dataset, or --before/--after/--labels)")
    data.add_argument("--dataset", help="dataset folder with A/ (before), B/ (after), label/ and optional list/train.txt, list/val.txt")
    data.add_argument("--before", help="raster of the first date (any GDAL format); its grid is the reference")
    data.add_argument("--after", help="raster of the second date; reprojected/resampled onto --before's grid")
    data.add_argument("--labels", help="label polygons (GeoPackage, Shapefile, GeoJSON ...) or a class raster")
    data.add_argument("--class-field", default="class", help="attribute of the label polygons holding the class name or id (default: class)")
    data.add_argument("--labels-layer", help="layer of --labels (default: the only one, or 'labels')")
    data.add_argument("--aoi", help="polygon layer of the labelled area (default: the extent of the labels); "
                      "unlabelled pixels inside are 'no change', outside are ignored")
    data.add_argument("--aoi-layer", help="layer of --aoi")
    data.add_argument("--preset", help="class schema preset (default: gaza)")
    data.add_argument("--schema", help="class schema JSON file (wins over --preset)")
    data.add_argument("--label-map", help="raw label value -> class id, e.g. 255:1 for LEVIR-CD / WHU-CD")
    data.add_argument("--chip", type=int, default=256, help="chip side in pixels (default 256; multiple of 32 for EfficientNet, 16 for DINOv3)")
    data.add_argument("--stride", type=int, help="step between training chips (default: the chip size, no overlap)")
    data.add_argument("--val-fraction", type=float, default=0.2, help="share of the labelled area kept for validation (default 0.2)")

    model = parser.add_argument_group("model")
    model.add_argument("--backbone", help="backbone name (default: DINOv3 when its weights are found, else efficientnet_lite0)")
    model.add_argument("--weights", help="backbone weights: a DINOv3 folder, a weights file, or 'random'")
    model.add_argument("--text-encoder", default="minilm", help="frozen text encoder of stage 2 (default minilm, offline; the paper: clip-vit-b32)")
    model.add_argument("--text-weights", help="local weights of the text encoder")
    model.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on the backbone's attention (DINOv3; 0 = full fine-tuning)")
    model.add_argument("--freeze-backbone", action="store_true", help="keep the backbone's weights fixed")

    opt = parser.add_argument_group("optimisation (paper: AdamW lr 1e-4, weight decay 0.05, 150 epochs)")
    opt.add_argument("--stage1-epochs", type=int, default=8, help="epochs of stage 1, visual only (default 8 for a CPU)")
    opt.add_argument("--stage2-epochs", type=int, default=4, help="epochs of stage 2, with captions and the contrastive loss (default 4)")
    opt.add_argument("--batch-size", type=int, default=4, help="chips per step and process (default 4)")
    opt.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    opt.add_argument("--head-lr-scale", type=float, default=10.0, help="learning-rate multiplier of the newly initialised decoder, "
                     "head and text modules (default 10; the paper: 1)")
    opt.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    opt.add_argument("--lam", type=float, default=0.5, help="weight of the contrastive loss in stage 2 (default 0.5)")
    opt.add_argument("--tau", type=float, default=0.7, help="InfoNCE temperature (default 0.7)")
    opt.add_argument("--jitter", type=float, default=0.1, help="per-date radiometric jitter (default 0.1; 0 = off)")
    opt.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device (default auto: CUDA when available)")
    opt.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    opt.add_argument("--seed", type=int, default=0, help="seed of the split and of every random draw (default 0)")
    opt.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")

    parser.add_argument("--out", required=True, help="run folder (best/, last/, metrics.jsonl, metrics.png, config.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint, with the settings "
                        "saved in its config.json (only --device and --workers may change)")


def run(args, progress) -> dict:
    from ..train import TrainConfig, train

    config = TrainConfig(
        out=args.out,
        dataset=args.dataset,
        before=args.before,
        after=args.after,
        labels=args.labels,
        class_field=args.class_field,
        labels_layer=args.labels_layer,
        aoi=args.aoi,
        aoi_layer=args.aoi_layer,
        preset=args.preset,
        schema=args.schema,
        label_map=args.label_map,
        backbone=args.backbone,
        weights=args.weights,
        text_encoder=args.text_encoder,
        text_weights=args.text_weights,
        stage1_epochs=args.stage1_epochs,
        stage2_epochs=args.stage2_epochs,
        chip=args.chip,
        stride=args.stride,
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr_scale=args.head_lr_scale,
        weight_decay=args.weight_decay,
        lora_rank=args.lora_rank,
        freeze_backbone=args.freeze_backbone,
        lam=args.lam,
        tau=args.tau,
        jitter=args.jitter,
        device=args.device,
        amp=not args.no_amp,
        seed=args.seed,
        workers=args.workers,
        resume=args.resume,
    )
    result = train(config, progress)
    if args.progress not in ("jsonl",) and result.get("best_metrics"):
        m = result["best_metrics"]
        progress.log(f"best epoch {result['best_epoch']}: " + " ".join(f"{k} {v:.4f}" for k, v in m.items() if v is not None))
    return result
