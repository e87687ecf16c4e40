"""MaskTalk engine: S2M change detection (captions, model, training, inference).

Plain Python + PyTorch + rasterio. Importing ``engine`` itself is light (standard
library only); heavy packages load in the modules that need them. Never imports QGIS
or Qt. Run it as ``python -m engine <command>``.
"""

__version__ = "0.1.0"
