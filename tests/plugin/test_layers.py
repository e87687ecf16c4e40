"""Layers <-> engine files: exports of non-file rasters and any vector layer, styled outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import leftovers
from osgeo import gdal


@pytest.fixture()
def project(qgis_new_project):
    from qgis.core import QgsProject

    yield QgsProject.instance()
    QgsProject.instance().clear()


def xyz_layer(xyz_tiles):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(xyz_tiles.uri, "web tiles", "wms")
    assert layer.isValid()
    return layer


def test_file_rasters_are_used_as_they_are(mt, demo_scene, xyz_tiles, tmp_path):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    assert mt.layers.local_raster_path(layer) == str(demo_scene.before)
    with mt.layers.TempFolder() as temp:
        prepared = mt.layers.prepare_raster(layer, temp, "before")
        assert prepared.export is None and prepared.ensure() == str(demo_scene.before)
        assert list(temp.path.iterdir()) == []
    assert mt.layers.local_raster_path(xyz_layer(xyz_tiles)) is None


def test_web_tiles_are_exported_exactly_for_the_extent(mt, xyz_tiles, private_tmp):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsReferencedRectangle

    layer = xyz_layer(xyz_tiles)
    xmin, ymin, xmax, ymax = xyz_tiles.bounds
    res = xyz_tiles.res
    # A sub-extent in the scene's own CRS would be transformed; take one in 3857 on whole pixels.
    extent = QgsReferencedRectangle(QgsRectangle(xmin + 10 * res, ymax - 90 * res, xmin + 130 * res, ymax - 10 * res),
                                    QgsCoordinateReferenceSystem("EPSG:3857"))
    temp = mt.layers.TempFolder()
    prepared = mt.layers.prepare_raster(layer, temp, "after", extent=extent, resolution=res)
    assert prepared.export is not None and (prepared.export.width, prepared.export.height) == (120, 80)
    assert not prepared.path.exists()  # written later, in the worker thread
    path = prepared.ensure()
    ds = gdal.Open(path)
    assert ds.RasterCount == 3  # the alpha band became a mask
    assert ds.GetRasterBand(1).GetMaskFlags() == gdal.GMF_PER_DATASET
    gt = ds.GetGeoTransform()
    assert gt[0] == pytest.approx(xmin + 10 * res) and gt[3] == pytest.approx(ymax - 10 * res) and gt[1] == pytest.approx(res)
    np.testing.assert_array_equal(ds.ReadAsArray(), xyz_tiles.array[:, 10:90, 10:130])
    assert "3857" in ds.GetProjection() or "Pseudo-Mercator" in ds.GetProjection()
    ds = None
    assert [p.name for p in temp.path.iterdir()] == ["after.tif"]  # the RGBA intermediate is gone
    temp.cleanup()
    assert not temp.path.exists() and leftovers(private_tmp) == []


def test_web_tiles_need_an_extent_and_a_sane_size(mt, xyz_tiles, demo_scene):
    from qgis.core import QgsRasterLayer, QgsReferencedRectangle

    layer = xyz_layer(xyz_tiles)
    with mt.layers.TempFolder() as temp:
        with pytest.raises(mt.layers.LayerProblem, match="choose an extent"):
            mt.layers.prepare_raster(layer, temp, "after")
        scene = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
        extent = QgsReferencedRectangle(scene.extent(), scene.crs())  # EPSG:32636 -> transformed to 3857
        with pytest.raises(mt.layers.LayerProblem, match="coarser resolution"):
            mt.layers.prepare_raster(layer, temp, "after", extent=extent, resolution=1e-4)
        prepared = mt.layers.prepare_raster(layer, temp, "after", extent=extent, resolution=xyz_tiles.res)
        # about 128 m of scene in 3857 metres at zoom 18 (~0.6 m/px): a bit more than 128/0.6 px
        assert 200 < prepared.export.width < 300


def _memory_copy(layer):
    from qgis.core import QgsVectorLayer

    mem = QgsVectorLayer(f"Polygon?crs={layer.crs().authid()}", "drawn labels", "memory")
    mem.dataProvider().addAttributes(layer.fields().toList())
    mem.updateFields()
    mem.dataProvider().addFeatures(list(layer.getFeatures()))
    return mem


def test_memory_labels_are_exported_to_a_geopackage(mt, demo_scene):
    from qgis.core import QgsVectorLayer

    source = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    mem = _memory_copy(source)
    with mt.layers.TempFolder() as temp:
        path = mt.layers.export_vector(mem, temp, "labels")
        assert path.endswith(".gpkg") and path.startswith(str(temp.path))
        back = QgsVectorLayer(f"{path}|layername=labels", "back", "ogr")
        assert back.featureCount() == source.featureCount() > 0
        assert sorted(f["class"] for f in back.getFeatures()) == sorted(f["class"] for f in source.getFeatures())
        assert back.crs() == source.crs()
        with pytest.raises(mt.layers.LayerProblem, match="no field 'damage'"):
            mt.layers.export_vector(mem, temp, "labels", fields=["damage"])


def test_edited_unsaved_labels_are_exported_as_seen_and_left_untouched(mt, demo_scene, tmp_path):
    import shutil

    from qgis.core import QgsVectorLayer

    copy = tmp_path / "labels.gpkg"
    shutil.copy(demo_scene.labels, copy)
    layer = QgsVectorLayer(str(copy), "labels", "ogr")
    assert mt.layers.local_vector_path(layer) == str(copy)  # a plain single-layer file: used directly
    first = next(layer.getFeatures())
    assert layer.startEditing()
    layer.changeAttributeValue(first.id(), layer.fields().indexOf("class"), "greenhouse destroyed")
    assert layer.isModified() and mt.layers.local_vector_path(layer) is None
    with mt.layers.TempFolder() as temp:
        path = mt.layers.export_vector(layer, temp, "labels")
        exported = QgsVectorLayer(f"{path}|layername=labels", "x", "ogr")
        assert exported.getFeature(first.id())["class"] == "greenhouse destroyed"
    assert layer.isEditable() and layer.isModified()  # the user's edit session is intact
    on_disk = QgsVectorLayer(str(copy), "disk", "ogr")
    assert on_disk.getFeature(first.id())["class"] == first["class"]
    layer.rollBack()


def test_rasterized_labels_match_the_truth_raster(mt, demo_scene):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    labels = _memory_copy(QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr"))
    reference = QgsRasterLayer(str(demo_scene.before), "before", "gdal")
    schema = mt.schema.load_preset("gaza")
    grid = mt.layers.label_grid(labels, reference)
    assert grid.res == pytest.approx(0.5) and grid.crs == reference.crs()
    with mt.layers.TempFolder() as temp:
        path = mt.layers.rasterize_labels(labels, "class", schema, grid, temp.file("labels.tif"))
        burnt = gdal.Open(str(path)).ReadAsArray()
    truth_ds = gdal.Open(str(demo_scene.truth))
    tgt = truth_ds.GetGeoTransform()
    col = round((grid.x0 - tgt[0]) / tgt[1])
    row = round((grid.y0 - tgt[3]) / tgt[5])
    truth = truth_ds.ReadAsArray()[row:row + grid.height, col:col + grid.width]
    assert burnt.shape == truth.shape == (grid.height, grid.width)
    assert (burnt == truth).mean() > 0.995  # polygons burnt at pixel centres, as the engine does
    assert set(np.unique(burnt)) == set(np.unique(truth))


def test_rasterizing_unknown_class_names_fails_with_the_list_of_classes(mt, demo_scene):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    labels = _memory_copy(QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr"))
    first = next(labels.getFeatures())
    labels.dataProvider().changeAttributeValues({first.id(): {labels.fields().indexOf("class"): "alien landing"}})
    grid = mt.layers.label_grid(labels, QgsRasterLayer(str(demo_scene.before), "b", "gdal"))
    with mt.layers.TempFolder() as temp, pytest.raises(mt.layers.LayerProblem) as info:
        mt.layers.rasterize_labels(labels, "class", mt.schema.load_preset("gaza"), grid, temp.file("l.tif"))
    assert "'alien landing'" in str(info.value) and "building destroyed" in str(info.value)


def test_change_raster_is_styled_with_the_schema_colours(mt, demo_scene, project):
    from qgis.core import QgsRasterLayer

    schema = mt.schema.load_preset("gaza")
    layer = mt.layers.change_raster_layer(demo_scene.truth, schema)
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    classes = {c.value: c for c in renderer.classes()}
    assert sorted(classes) == [c.id for c in schema.classes]
    for c in schema.change_classes:
        assert classes[c.id].color.name() == c.color.lower() and classes[c.id].label == c.name
    assert classes[0].color.alpha() == 0  # no change: see-through
    group = mt.layers.add_to_group([layer], "MaskTalk run 1", project)
    assert [l.layer() for l in group.findLayers()] == [layer]
    assert project.layerTreeRoot().children()[0] is group
    assert isinstance(project.mapLayersByName("changes")[0], QgsRasterLayer)


def test_captions_layer_places_chips_on_the_grid(mt, demo_scene):
    grid = mt.layers.raster_grid(demo_scene.truth)
    chips = [{"window": {"row_off": 128, "col_off": 0, "height": 128, "width": 64},
              "quadruples": [{"class_id": 1, "category": "buildings", "type": "destroyed", "direction": "north",
                              "quantity": "a few", "pixels": 900},
                             {"class_id": 3, "category": "refugee camp", "type": "newly established", "direction": "center",
                              "quantity": "a single", "pixels": 100}],
              "sentences": ["A few buildings were destroyed in the north.", "A refugee camp was newly established."]}]
    layer = mt.layers.captions_layer(chips, grid, chip=64)
    assert layer.featureCount() == 1 and layer.crs().authid() == "EPSG:32636"
    f = next(layer.getFeatures())
    bbox = f.geometry().boundingBox()
    assert bbox.xMinimum() == pytest.approx(grid.x0) and bbox.width() == pytest.approx(64 * 0.5)
    assert bbox.yMaximum() == pytest.approx(grid.y0 - 128 * 0.5) and bbox.height() == pytest.approx(64.0)
    assert f["caption"] == "A few buildings were destroyed in the north. A refugee camp was newly established."
    assert f["classes"] == "destroyed buildings; newly established refugee camp"
    assert f["directions"] == "north; center" and f["changed_pixels"] == 1000
    assert (f["chip_row"], f["chip_col"]) == (2, 0)  # row and column in the grid of 64 px chips
    assert json.loads(f["quadruples"]) == chips[0]["quadruples"]
    # the same fields, in the same order, as the engine's `captions` GeoPackage layer
    from masktalk.engine.captions import CHIP_CAPTION_FIELDS

    assert layer.fields().names() == list(CHIP_CAPTION_FIELDS)
    assert layer.labelsEnabled()


def test_a_crs_assigned_in_qgis_reaches_the_engine(mt, demo_scene, tmp_path):
    """A GeoTIFF without a CRS that the user gave one in QGIS must not go to the engine CRS-less."""
    from osgeo import osr
    from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer

    src = gdal.Open(str(demo_scene.before))
    bare = tmp_path / "no-crs.tif"
    copy = gdal.GetDriverByName("GTiff").Create(str(bare), src.RasterXSize, src.RasterYSize, src.RasterCount,
                                                src.GetRasterBand(1).DataType)
    copy.SetGeoTransform(src.GetGeoTransform())  # no SetProjection: a file without a CRS
    for i in range(1, src.RasterCount + 1):
        copy.GetRasterBand(i).WriteArray(src.GetRasterBand(i).ReadAsArray())
    copy = None
    layer = QgsRasterLayer(str(bare), "no crs", "gdal")
    assert layer.isValid() and not layer.dataProvider().crs().isValid()
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32636"))
    assert mt.layers.local_raster_path(layer) is None
    with mt.layers.TempFolder() as temp:
        prepared = mt.layers.prepare_raster(layer, temp, "before")
        out = gdal.Open(prepared.ensure())
        assert osr.SpatialReference(out.GetProjection()).GetAuthorityCode(None) == "32636"
        assert out.GetGeoTransform() == pytest.approx(src.GetGeoTransform())
        assert np.array_equal(out.ReadAsArray(), src.ReadAsArray())
        out = None
    assert QgsRasterLayer(str(bare), "again", "gdal").dataProvider().crs().isValid() is False  # the file is untouched


def test_a_class_raster_with_a_crs_assigned_in_qgis_is_captioned_in_that_crs(mt, demo_scene, tmp_path):
    """Captions read only pixel values: the file is used as is, the footprints take the layer's CRS."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer

    src = gdal.Open(str(demo_scene.truth))
    bare = tmp_path / "truth-no-crs.tif"
    copy = gdal.GetDriverByName("GTiff").Create(str(bare), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    copy.SetGeoTransform(src.GetGeoTransform())
    copy.GetRasterBand(1).WriteArray(src.GetRasterBand(1).ReadAsArray())
    copy = None
    layer = QgsRasterLayer(str(bare), "truth", "gdal")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32636"))
    path, grid = mt.layers.class_raster_source(layer)
    assert path == str(bare)
    assert grid.crs.authid() == "EPSG:32636"
    gt = src.GetGeoTransform()
    assert (grid.x0, grid.y0, grid.res) == pytest.approx((gt[0], gt[3], gt[1]))
    assert (grid.width, grid.height) == (src.RasterXSize, src.RasterYSize)
    web = QgsRasterLayer("type=xyz&url=file:///nonexistent/{z}/{x}/{y}.png", "tiles", "wms")
    assert mt.layers.class_raster_source(web) is None


def test_raster_export_reports_progress_and_stops_when_cancelled(mt, xyz_tiles, private_tmp):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRasterBlockFeedback, QgsRectangle, QgsReferencedRectangle

    layer = xyz_layer(xyz_tiles)
    xmin, ymin, xmax, ymax = xyz_tiles.bounds
    extent = QgsReferencedRectangle(QgsRectangle(xmin, ymin, xmax, ymax), QgsCoordinateReferenceSystem("EPSG:3857"))
    temp = mt.layers.TempFolder()
    # done: progress up to 100 %
    prepared = mt.layers.prepare_raster(layer, temp, "after", extent=extent, resolution=xyz_tiles.res)
    feedback = QgsRasterBlockFeedback()
    seen = []
    feedback.progressChanged.connect(seen.append)
    prepared.ensure(feedback)
    assert seen and max(seen) == pytest.approx(100) and len(set(seen)) > 1
    # cancelled at the first progress: no file, the dedicated error
    prepared = mt.layers.prepare_raster(layer, temp, "again", extent=extent, resolution=xyz_tiles.res / 4)
    feedback = QgsRasterBlockFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel())
    with pytest.raises(mt.layers.ExportCancelled):
        prepared.ensure(feedback)
    assert not prepared.path.exists() and not list(temp.path.glob("again*"))
    temp.cleanup()
    assert leftovers(private_tmp) == []


def test_selected_features_are_exported_in_a_worker_thread(mt, demo_scene):
    import threading

    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr")
    ids = [f.id() for f in layer.getFeatures()][:2]
    layer.selectByIds(ids)
    with mt.layers.TempFolder() as temp:
        prepared = mt.layers.prepare_vector(layer, temp, "aoi", selected_only=True)  # main thread: a snapshot
        layer.removeSelection()  # the user goes on working: the export keeps what was selected
        done = {}
        worker = threading.Thread(target=lambda: done.update(path=prepared.ensure()))
        worker.start()
        worker.join(60)
        back = QgsVectorLayer(f"{done['path']}|layername=aoi", "back", "ogr")
        assert back.featureCount() == 2 and back.crs() == layer.crs()
        with pytest.raises(mt.layers.LayerProblem, match="no selected features"):
            mt.layers.prepare_vector(layer, temp, "aoi", selected_only=True)


def test_captions_are_a_geopackage_replaced_on_a_rerun(mt, demo_scene, tmp_path, project):
    from qgis.core import QgsVectorLayer

    grid = mt.layers.raster_grid(demo_scene.truth)
    chip = {"window": {"row_off": 0, "col_off": 0, "height": 128, "width": 128},
            "quadruples": [{"class_id": 1, "category": "buildings", "type": "destroyed", "direction": "north",
                            "quantity": "a few", "pixels": 900}], "sentences": ["A few buildings were destroyed in the north."]}
    path = tmp_path / "labels_captions.gpkg"
    uri = mt.layers.write_captions([chip, chip], grid, path, chip=128)
    layer = QgsVectorLayer(uri, "captions", "ogr")
    project.addMapLayer(layer)
    assert layer.featureCount() == 2
    assert mt.layers.layers_reading(uri, project) == [layer]
    project.removeMapLayer(layer.id())
    uri = mt.layers.write_captions([chip], grid, path, chip=128)
    again = QgsVectorLayer(uri, "captions", "ogr")
    assert again.featureCount() == 1 and again.fields().names() == ["fid", *mt.layers.caption_fields().names()]
    assert mt.layers.captions_path(str(demo_scene.truth), tmp_path) == demo_scene.truth.with_name("truth_captions.gpkg")
    blocked = tmp_path / "a file"
    blocked.write_text("x")
    assert mt.layers.captions_path(str(blocked / "labels.gpkg"), tmp_path / "out") == tmp_path / "out" / "captions.gpkg"


def test_caption_labels_show_only_when_a_chip_is_readable(mt, demo_scene):
    grid = mt.layers.raster_grid(demo_scene.truth)
    chips = [{"window": {"row_off": 0, "col_off": 0, "height": 256, "width": 256}, "quadruples": [], "sentences": ["x."]}]
    layer = mt.layers.captions_layer(chips, grid, chip=256)
    settings = layer.labeling().settings()
    assert settings.scaleVisibility and settings.maximumScale == 0
    # a 128 m chip is 10 cm on screen at 1:1280: no labels when zoomed further out
    assert settings.minimumScale == pytest.approx(128 / 0.1, rel=0.01)
    assert settings.fitInPolygonOnly


def test_a_detection_raster_gives_classes_and_confidence_layers(mt, demo_scene, tmp_path):
    src = gdal.Open(str(demo_scene.truth))
    path = tmp_path / "changes.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), src.RasterXSize, src.RasterYSize, 2, gdal.GDT_Byte)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    ds.GetRasterBand(1).WriteArray(src.ReadAsArray())
    ds.GetRasterBand(2).WriteArray(np.full((src.RasterYSize, src.RasterXSize), 80, np.uint8))
    ds = None
    layers = mt.layers.detection_layers(str(path), None, mt.schema.load_preset("gaza"))
    assert [l.name() for l in layers] == ["change classes", "confidence"]
    renderer = layers[1].renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.band() == 2
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0, 100)


def test_labels_on_a_web_reference_are_rasterised_at_the_resolution_given(mt, demo_scene, xyz_tiles):
    from qgis.core import QgsVectorLayer

    labels = _memory_copy(QgsVectorLayer(f"{demo_scene.labels}|layername=labels", "labels", "ogr"))
    web = xyz_layer(xyz_tiles)
    with pytest.raises(mt.layers.LayerProblem, match="give a resolution"):
        mt.layers.label_grid(labels, web)
    grid = mt.layers.label_grid(labels, web, xyz_tiles.res)
    assert grid.crs == web.crs() and grid.res == pytest.approx(xyz_tiles.res)
    with mt.layers.TempFolder() as temp:
        path = mt.layers.rasterize_labels(labels, "class", mt.schema.load_preset("gaza"), grid, temp.file("l.tif"))
        burnt = gdal.Open(str(path)).ReadAsArray()
    assert burnt.shape == (grid.height, grid.width) and (burnt > 0).any()
