"""engine.outputs: checks before any work, temporary names, a commit of all outputs or none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.outputs import OutputSet, atomic_write_text, check_outputs, swap_into_place


def unwritable_folder() -> Path | None:
    """A folder even root cannot create files in (a virtual file system), or None."""
    for p in (Path("/sys"), Path("/proc/self")):
        try:
            fd = os.open(p / ".masktalk-probe", os.O_CREAT | os.O_WRONLY)
        except OSError:
            return p
        os.close(fd)
        os.unlink(p / ".masktalk-probe")
    return None


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "before.tif"
    src.write_bytes(b"input")
    return tmp_path, src


def test_an_output_that_is_an_input_is_refused_also_through_a_symlink(files):
    folder, src = files
    link = folder / "link.tif"
    link.symlink_to(src)
    for out in (src, link, folder / "." / "before.tif"):
        with pytest.raises(InputError, match=r"is the --before input .*destroy the input"):
            OutputSet({"--out": out}, {"--before": src}, overwrite=True)
    os.link(src, folder / "hard.tif")
    with pytest.raises(InputError, match="is the --before input"):
        OutputSet({"--out": folder / "hard.tif"}, {"--before": src}, overwrite=True)
    assert src.read_bytes() == b"input"


def test_existing_output_needs_overwrite_and_outputs_need_their_own_paths(files):
    folder, src = files
    old = folder / "pred.tif"
    old.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        OutputSet({"--out": old}, {"--before": src})
    with pytest.raises(InputError, match="are the same file"):
        check_outputs({"--out": folder / "a.tif", "--vectors": folder / "a.tif"}, {}, overwrite=True)
    assert old.read_bytes() == b"old"


def test_folder_missing_folder_and_unwritable_folder_are_refused(files):
    folder, _ = files
    with pytest.raises(InputError, match="is a folder; give a file path inside it"):
        OutputSet({"--out": folder})
    with pytest.raises(InputError, match="does not exist; create it first"):
        OutputSet({"--vectors": folder / "missing" / "c.gpkg"})
    (folder / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        OutputSet({"--out": folder / "file" / "p.tif"})
    locked = unwritable_folder()
    if locked is None:
        pytest.skip("no unwritable folder on this machine")
    with pytest.raises(InputError, match=f"cannot write in folder {locked}"):
        OutputSet({"--out": locked / "p.tif"})


def test_commit_moves_every_output_and_replaces_old_ones_with_their_sidecars(files):
    folder, _ = files
    old = folder / "pred.tif"
    old.write_bytes(b"old")
    (folder / "pred.tif.aux.xml").write_text("stale statistics")
    with OutputSet({"--out": old, "--vectors": folder / "c.gpkg"}, overwrite=True) as outputs:
        outputs.temp("--out").write_bytes(b"new")
        outputs.temp("--vectors").write_bytes(b"gpkg")
        assert outputs.temp("--out").parent == folder and outputs.temp("--out").name.startswith(".pred.incomplete-")
        assert old.read_bytes() == b"old"  # nothing replaced before the commit
        outputs.commit()
    assert old.read_bytes() == b"new" and (folder / "c.gpkg").read_bytes() == b"gpkg"
    assert not (folder / "pred.tif.aux.xml").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["before.tif", "c.gpkg", "pred.tif"]


def test_a_failure_leaves_the_final_paths_as_they_were_and_no_temporary_file(files):
    folder, _ = files
    old = folder / "pred.tif"
    old.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with OutputSet({"--out": old, "--vectors": folder / "c.gpkg"}, overwrite=True) as outputs:
            outputs.temp("--out").write_bytes(b"new")
            outputs.temp("--vectors").with_name(outputs.temp("--vectors").name + "-wal").write_bytes(b"wal")
            raise RuntimeError("the second output failed")
    assert old.read_bytes() == b"old" and not (folder / "c.gpkg").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["before.tif", "pred.tif"]


def test_commit_refuses_a_missing_output_and_rolls_back_a_failed_rename(files, monkeypatch):
    folder, _ = files
    old = folder / "pred.tif"
    old.write_bytes(b"old")
    with OutputSet({"--out": old, "--vectors": folder / "c.gpkg"}, overwrite=True) as outputs:
        outputs.temp("--out").write_bytes(b"new")
        with pytest.raises(InputError, match="was not written; nothing was replaced"):
            outputs.commit()
        outputs.temp("--vectors").write_bytes(b"gpkg")
        real = os.replace

        def failing(src, dst):
            if str(dst).endswith("c.gpkg"):
                raise OSError(28, "No space left on device", str(dst))
            return real(src, dst)

        monkeypatch.setattr(os, "replace", failing)
        with pytest.raises(InputError, match="No space left on device"):
            outputs.commit()
        monkeypatch.setattr(os, "replace", real)
    assert old.read_bytes() == b"old" and not (folder / "c.gpkg").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["before.tif", "pred.tif"]


def test_atomic_text_and_folder_swap(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").read_text() == "{}"
    target, staging = tmp_path / "best", tmp_path / ".staging"
    target.mkdir()
    (target / "old").write_text("1")
    staging.mkdir()
    (staging / "new").write_text("2")
    swap_into_place(staging, target)
    assert [p.name for p in target.iterdir()] == ["new"] and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "best"]
