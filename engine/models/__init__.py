"""S2M model parts: backbones (registry, DINOv3, EfficientNet-Lite0), the change model,
text-guided alignment, frozen text encoders and LoRA.

Importing this package is light; torch and friends load with the submodules:

- ``registry``: ``create_backbone``, ``BACKBONES``, ``default_backbone``, ``available_weights``
- ``change``: ``S2MChangeModel``
- ``text``: ``create_text_encoder``
- ``lora``: ``apply_lora``, ``freeze_backbone``, ``count_parameters``, ``merge_lora``
"""
