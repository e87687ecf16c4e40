"""QGIS side of MaskTalk. Imports QGIS/Qt; never imports torch or rasterio."""
