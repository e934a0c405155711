"""A DICOM series (folder, files, uploads, .zip) or a NIfTI file read as one volume; bad files named."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, RLELossless, generate_uid

from core.data import series as series_module
from core.data.imaging import ImageReadError, read_slice, read_slice_bytes, window
from core.data.series import group_inputs, read_nifti, read_series, read_series_uploads
from tests.dicom_series import AXIAL, ct_slice, dicom_bytes, enhanced_ct, series, slice_hu, write_series


def names(vol) -> list[str]:
    return [s.name for s in vol.slices]


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_folder_reads_as_one_volume_in_body_order(tmp_path):
    datasets = series(6, spacing=2.5, z0=-100.0)
    paths = write_series(tmp_path / "scan", datasets)
    found = read_series(tmp_path / "scan")
    assert found.errors == [] and len(found.volumes) == 1
    vol = found.volumes[0]
    assert names(vol) == [str(p) for p in paths]
    assert vol.ordering == "image position" and vol.series_uid == datasets[0].SeriesInstanceUID
    assert [s.position for s in vol.slices] == pytest.approx([-100.0 + 2.5 * k for k in range(6)])
    assert [s.instance for s in vol.slices] == [200 - k for k in range(6)]
    assert vol.slice_spacing == pytest.approx(2.5) and vol.pixel_spacing == (0.7, 0.7) and vol.shape == (24, 24)
    assert vol.info["SeriesDescription"] == "Thorax 2.0 lung" and vol.info["Modality"] == "CT"
    assert vol.problems == [] and not vol.has_gap
    for s, path in zip(vol.slices, paths):
        np.testing.assert_array_equal(s.image(), read_slice(path))
    summary = vol.summary()
    assert summary["slices"] == 6 and summary["ordering"] == "image position" and summary["slice_spacing_mm"] == 2.5


@pytest.mark.parametrize("removed, ordering", [
    (("ImagePositionPatient",), "slice location"),
    (("ImagePositionPatient", "SliceLocation"), "instance number"),
])
def test_order_falls_back_to_slice_location_then_instance_number(tmp_path, removed, ordering):
    datasets = series(5)
    for ds in datasets:
        for keyword in removed:
            delattr(ds, keyword)
    paths = write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    expected = [str(p) for p in paths]
    # Instance Numbers count down along the body: ordered by them, the volume runs head to foot
    assert vol.ordering == ordering
    assert names(vol) == (expected if ordering == "slice location" else expected[::-1])
    assert vol.problems == []
    assert vol.slice_spacing == (2.5 if ordering == "slice location" else None)


def test_without_any_order_field_the_file_name_orders_and_says_so(tmp_path):
    datasets = series(3)
    for ds in datasets:
        del ds.ImagePositionPatient, ds.SliceLocation, ds.InstanceNumber
    paths = write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    assert vol.ordering == "file name" and names(vol) == sorted(str(p) for p in paths)
    assert any("ordered by file name" in p for p in vol.problems)


def test_oblique_positions_are_projected_on_the_slice_normal(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    tilted = (1.0, 0.0, 0.0, 0.0, c, -s)  # a gantry tilt
    datasets = series(5, spacing=3.0, orientation=tilted)
    for k, ds in enumerate(datasets):
        ds.SliceLocation = -k  # a decoy: ordered by it, the volume would run backwards
        ds.ImagePositionPatient = [float(v) + 7.0 * k for v in ds.ImagePositionPatient[:1]] + \
            list(ds.ImagePositionPatient[1:])  # moving within the slice plane changes nothing
    paths = write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    assert vol.ordering == "image position" and names(vol) == [str(p) for p in paths]
    assert vol.slice_spacing == pytest.approx(3.0)


def test_files_uploads_and_zip_give_the_same_volume(tmp_path):
    datasets = series(5, syntax=RLELossless)
    paths = write_series(tmp_path / "scan", datasets)
    from_folder = read_series(tmp_path / "scan").volumes[0]
    from_files = read_series(reversed(paths)).volumes[0]
    uploads = [(p.name, p.read_bytes()) for p in paths]
    from_uploads = read_series_uploads(uploads).volumes[0]
    archive = zip_of({f"study/series/{name}": data for name, data in uploads})
    from_zip = read_series_uploads([("scan.zip", archive)]).volumes[0]
    (tmp_path / "scan.zip").write_bytes(archive)
    from_zip_file = read_series(tmp_path / "scan.zip").volumes[0]
    assert names(from_files) == names(from_folder)
    assert names(from_uploads) == [p.name for p in paths]
    assert names(from_zip) == [f"scan.zip/study/series/{p.name}" for p in paths]
    assert names(from_zip_file) == [f"{tmp_path / 'scan.zip'}/study/series/{p.name}" for p in paths]
    reference = [read_slice(p) for p in paths]
    for vol in (from_folder, from_files, from_uploads, from_zip, from_zip_file):
        assert vol.ordering == "image position" and len(vol) == 5
        for image, ref in zip(vol.images(), reference):
            np.testing.assert_array_equal(image, ref)


def test_an_uploaded_folder_skips_what_a_folders_walk_skips():
    """A folder uploaded from a browser (or a CD's copy) holds DICOMDIR and hidden files beside its slices."""
    datasets = series(3)
    slices = [(f"study/S1/IM{k:04d}", dicom_bytes(ds)) for k, ds in enumerate(datasets)]
    extra = [("study/DICOMDIR", b"an index"), ("study/S1/._IM0000", b"resource fork"), ("study\\.DS_Store", b"x")]
    found = read_series_uploads(slices + extra)
    assert found.errors == [] and names(found.volumes[0]) == [name for name, _ in slices]
    assert [series_module.skipped(name) for name, _ in extra] == [True, True, True]
    assert not series_module.skipped("study/S1/IM0001") and not series_module.skipped("DICOMDIR.dcm")


def test_zip_member_names_never_become_paths(tmp_path):
    datasets = series(3)
    archive = zip_of({"../../escape.dcm": dicom_bytes(datasets[0]), "/etc/abs.dcm": dicom_bytes(datasets[1]),
                      "odd\nname.dcm": dicom_bytes(datasets[2]), "__MACOSX/._abs.dcm": b"resource fork"})
    before = sorted(tmp_path.parent.rglob("*"))
    found = read_series_uploads([("up.zip", archive)])
    assert found.errors == []
    vol = found.volumes[0]
    assert names(vol) == ["up.zip/../../escape.dcm", "up.zip//etc/abs.dcm", "up.zip/odd?name.dcm"]
    vol.image(0)
    assert sorted(tmp_path.parent.rglob("*")) == before  # nothing extracted anywhere


@pytest.mark.parametrize("limit, value, message", [
    ("MAX_ZIP_BYTES", 4000, "over the 0 MiB limit (refused as a possible zip bomb)"),
    ("MAX_SERIES_FILES", 2, "holds 3 files, over the 2 a series may have"),
])
def test_zip_bombs_are_refused_before_inflating(monkeypatch, limit, value, message):
    monkeypatch.setattr(series_module, limit, value)
    archive = zip_of({f"IM{k}.dcm": dicom_bytes(ds) for k, ds in enumerate(series(3))})
    found = read_series_uploads([("bomb.zip", archive)])
    assert found.volumes == [] and [str(e) for e in found.errors] == [f"bomb.zip: {found.errors[0].problem}"]
    assert message in str(found.errors[0])


def test_a_member_too_big_for_a_slice_is_refused(monkeypatch):
    monkeypatch.setattr(series_module, "MAX_MEMBER_BYTES", 1000)
    found = read_series_uploads([("b.zip", zip_of({"big.dcm": bytes(5000), "ok.txt": b"x"}))])
    assert [str(e) for e in found.errors] == [
        "b.zip/big.dcm: inflates to 0 MiB, over the 0 MiB a slice may take (refused as a possible zip bomb)",
        "b.zip/ok.txt: not a DICOM file (a series is read from DICOM files only)"]


def test_a_broken_zip_is_named():
    found = read_series_uploads([("cut.zip", zip_of({"a.dcm": b"x" * 100})[:30])])
    assert len(found.errors) == 1 and str(found.errors[0]).startswith("cut.zip: ")


def test_several_series_become_volumes_largest_first(tmp_path):
    main = write_series(tmp_path, series(5), prefix="A")
    stray = write_series(tmp_path, series(2, series_uid="1.2.3.4"), prefix="B")
    found = read_series(tmp_path)
    assert found.errors == []
    big, small = found.volumes
    assert names(big) == [str(p) for p in main] and names(small) == [str(p) for p in stray]
    assert big.notes == [] and big.problems == []
    assert small.notes == [(f"{stray[0]} and 1 more: series 1.2.3.4 (2 slices) is not the largest series given "
                            f"({big.series_uid}, 5 slices); read as a volume of its own")]


CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows left to right, columns head to foot: the normal runs front to back
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.mark.parametrize("orientation,plane", [(AXIAL, "axial"), (CORONAL, "coronal"), (SAGITTAL, "sagittal"),
                                               ((1.0, 0.0, 0.0, 0.0, 0.7071, -0.7071), "oblique"),  # tilted 45 degrees
                                               ((1.0, 0.0, 0.0, 0.0, 0.9659, -0.2588), "axial"),  # a 15-degree tilt
                                               (None, None)])
def test_the_plane_is_read_from_the_slices_orientation(orientation, plane):
    assert series_module.plane_of(orientation) == plane


def test_a_lone_slices_plane_is_read_from_its_header_or_its_frames():
    coronal = dicom_bytes(series(1, orientation=CORONAL)[0])
    assert series_module.slice_plane(coronal, "c.dcm") == "coronal"
    assert series_module.not_axial_slice("c.dcm", "coronal").startswith("c.dcm: a coronal slice")
    enhanced = dicom_bytes(enhanced_ct(series(3, orientation=SAGITTAL)))
    assert series_module.slice_plane(enhanced, "e.dcm", 1) == "sagittal"
    assert series_module.slice_plane(dicom_bytes(series(1)[0]), "a.dcm") == "axial"
    assert series_module.slice_plane(b"\x89PNG\r\n\x1a\n" + b"0" * 200, "a.png") is None
    assert series_module.not_axial_slice("a.dcm", "axial") == series_module.not_axial_slice("a.png", None) == ""


PRONE = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # face down: the slice stored upside down
FEET_FIRST = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # as some feet-first scans store it: mirrored


@pytest.mark.parametrize("orientation,turn", [(PRONE, lambda a: a[::-1, ::-1]), (FEET_FIRST, lambda a: a[:, ::-1])])
def test_a_prone_or_mirrored_scan_reads_in_the_radiological_view(tmp_path, orientation, turn):
    """Its slices read as the supine head-first scan's (anterior up, the patient's right on the left), in a
    series and alone, as the networks, the lung finder's right and left lungs and the signs expect."""
    datasets = series(3, orientation=orientation)
    for k, ds in enumerate(datasets):
        ds.PixelData = np.round(turn(slice_hu(k)) + 1024).astype("<u2").tobytes()
    vol = read_series(write_series(tmp_path / "scan", datasets)[0].parent).volumes[0]
    assert vol.plane == "axial" and vol.problems == []
    for k, s in enumerate(vol.slices):
        np.testing.assert_allclose(s.image(), window(slice_hu(k)), atol=1e-6)
    np.testing.assert_allclose(read_slice_bytes(dicom_bytes(datasets[1]), "prone.dcm"), window(slice_hu(1)), atol=1e-6)


def test_a_studys_reformats_are_read_but_the_largest_axial_series_comes_first(tmp_path):
    """A study as a PACS exports it: a coronal reformat with more slices than the axial series, and a one-image
    scout (coronal too); the axial series is read first, the others say why their slices are not scored."""
    axial = write_series(tmp_path / "axial", series(4), prefix="A")
    write_series(tmp_path / "coronal", series(9, orientation=CORONAL, series_uid="1.2.3.9"), prefix="C")
    write_series(tmp_path / "scout", series(1, orientation=CORONAL, series_uid="1.2.3.1"), prefix="S")
    found = read_series(tmp_path)
    first, coronal, scout = found.volumes
    assert names(first) == [str(p) for p in axial] and first.axial and first.plane == "axial" and first.problems == []
    assert (coronal.plane, len(coronal), coronal.axial) == ("coronal", 9, False)
    assert coronal.problems[0] == coronal.not_axial() and "coronal slices" in coronal.not_axial()
    assert "is not the largest axial series given" in coronal.notes[0] and not scout.axial
    assert first.not_axial() == "" and first.summary()["plane"] == "axial"


def test_a_missing_slice_is_a_gap_naming_its_neighbours(tmp_path):
    paths = write_series(tmp_path, series(7, spacing=2.0, z0=0.0))
    paths.pop(3).unlink()
    vol = read_series(tmp_path).volumes[0]
    assert len(vol) == 6 and vol.has_gap
    (gap,) = vol.gaps
    assert (gap.before, gap.after, gap.step, gap.usual, gap.missing) == (str(paths[2]), str(paths[3]), 4.0, 2.0, 1)
    assert vol.problems == [(f"gap: {paths[2]} and {paths[3]}: 4 mm apart, 2.0x the series' usual 2; about 1 "
                             "slice missing between them")]


def test_a_gap_in_instance_numbers_when_they_order(tmp_path):
    datasets = series(6)
    for ds in datasets:
        del ds.ImagePositionPatient, ds.SliceLocation
    paths = write_series(tmp_path, datasets)
    paths.pop(2).unlink()
    paths.pop(2).unlink()
    vol = read_series(tmp_path).volumes[0]
    assert vol.ordering == "instance number"
    (gap,) = vol.gaps
    assert (gap.before, gap.after, gap.unit, gap.missing) == (str(paths[2]), str(paths[1]), "instance numbers", 2)


def test_every_second_slice_is_no_gap(tmp_path):
    # COVID-CT-MD keeps every second slice: an even step of 2 slices is the usual spacing, not a gap
    write_series(tmp_path, series(10, spacing=2.0)[::2])
    vol = read_series(tmp_path).volumes[0]
    assert not vol.has_gap and vol.slice_spacing == pytest.approx(4.0)


def test_two_slices_at_one_position_are_named(tmp_path):
    datasets = series(4)
    datasets[2].ImagePositionPatient = datasets[1].ImagePositionPatient
    paths = write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    assert len(vol) == 4
    # at one position, the higher Instance Number (counting down the body) goes first
    assert [p for p in vol.problems if "both at" in p] == [
        f"{paths[2]} and {paths[1]}: both at -97.5 mm (a duplicate slice, or two acquisitions in one series)"]


def test_bad_files_are_named_one_line_each_and_the_rest_read(tmp_path):
    datasets = series(6)
    uid = datasets[0].SeriesInstanceUID
    good = write_series(tmp_path, datasets[:4])
    bad = {
        "notes.txt": b"exported by the PACS\n",
        "no_pixels.dcm": dicom_bytes(ct_slice(slice_hu(9), series_uid=uid, instance=1, position=(0, 0, 50))),
        "video.dcm": None,
        "small.dcm": dicom_bytes(ct_slice(slice_hu(4, size=16), series_uid=uid, instance=196,
                                          position=datasets[4].ImagePositionPatient)),
        "sagittal.dcm": dicom_bytes(ct_slice(slice_hu(5), series_uid=uid, instance=195,
                                             position=datasets[5].ImagePositionPatient,
                                             orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))),
    }
    nopix = ct_slice(slice_hu(9), series_uid=uid, instance=1, position=(0, 0, 50))
    del nopix.PixelData
    bad["no_pixels.dcm"] = dicom_bytes(nopix)
    video = ct_slice(slice_hu(9), series_uid=uid, instance=2, position=(0, 0, 60))
    video.file_meta.TransferSyntaxUID = MPEG2MPML
    video.PixelData = encapsulate([bytes(64)])
    bad["video.dcm"] = dicom_bytes(video)
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    found = read_series(tmp_path)
    (vol,) = found.volumes
    assert names(vol) == [str(p) for p in good] and vol.problems == []
    lines = {Path(e.name).name: str(e) for e in found.errors}
    assert set(lines) == set(bad)
    assert all("\n" not in line and line.startswith(str(tmp_path / name)) for name, line in lines.items())
    assert lines["notes.txt"].endswith("not a DICOM file (a series is read from DICOM files only)")
    assert lines["no_pixels.dcm"].endswith("DICOM file has no pixel data")
    assert lines["video.dcm"].endswith(f"DICOM transfer syntax 'MPEG2 Main Profile / Main Level' ({MPEG2MPML}) is "
                                       "not supported: no installed decoder reads it")
    assert lines["small.dcm"].endswith(f"slice is 16x16 pixels but most of series {uid} is 24x24; left out of the volume")
    assert lines["sagittal.dcm"].endswith(f"orientation [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] differs from the rest of series "
                                          f"{uid} ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]); left out of the volume")
    assert {Path(e.name).name for e in vol.left_out} == {"small.dcm", "sagittal.dcm"}


def test_a_slice_that_fails_to_decode_fails_alone(tmp_path):
    datasets = series(3, syntax=RLELossless)
    datasets[1].PixelData = encapsulate([b"not RLE at all" * 8])  # the header still reads
    paths = write_series(tmp_path, datasets)
    vol = read_series(tmp_path).volumes[0]
    assert len(vol) == 3
    vol.image(0), vol.image(2)
    with pytest.raises(ImageReadError, match=f"^{paths[1]}: DICOM pixel data cannot be decoded"):
        vol.image(1)


def test_images_are_decoded_only_when_asked(tmp_path, monkeypatch):
    write_series(tmp_path, series(5))
    decoded = []
    real = series_module.read_slice_bytes
    monkeypatch.setattr(series_module, "read_slice_bytes", lambda data, name: decoded.append(name) or real(data, name))
    vol = read_series(tmp_path).volumes[0]
    assert decoded == []
    vol.image(3)
    assert decoded == [vol.slices[3].name]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid values it still reads
def test_every_malformed_file_is_named(tmp_path):
    # refused from its header, or, when the header holds, when its pixels are decoded
    from tests.test_imaging import CORPUS

    found = read_series_uploads([(name, make()) for name, make in CORPUS.items()])
    failed = list(found.errors)
    for s in (s for v in found.volumes for s in v.slices):
        with pytest.raises(ImageReadError) as info:
            s.image()
        failed.append(info.value)
    assert sorted(e.name for e in failed) == sorted(CORPUS)
    assert all(str(e).startswith(f"{e.name}: ") and "\n" not in str(e) for e in failed)


def test_empty_and_missing_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    found = read_series([tmp_path / "empty", tmp_path / "nowhere.dcm"])
    assert [str(e) for e in found.errors] == [
        f"{tmp_path / 'empty'}: holds no files; expected the DICOM files of a series",
        f"{tmp_path / 'nowhere.dcm'}: cannot open (No such file or directory)"]


def test_nifti_reads_as_the_same_kind_of_volume(tmp_path):
    vol = np.stack([slice_hu(k, 20)[:, :16].T for k in range(4)], axis=-1).astype(np.float32)  # (x 16, y 20, z 4)
    affine = np.diag([-0.8, -0.9, -2.5, 1.0])  # stored head to foot, x and y flipped: canonical order undoes it
    affine[:3, 3] = (10.0, 20.0, -40.0)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    v = read_nifti(path)
    assert len(v) == 4 and v.ordering == "NIfTI affine" and v.shape == (20, 16) and v.axial and v.plane == "axial"
    assert v.pixel_spacing == pytest.approx((0.9, 0.8)) and v.slice_spacing == pytest.approx(2.5)
    assert [s.position for s in v.slices] == pytest.approx([-47.5, -45.0, -42.5, -40.0])
    for k, s in enumerate(v.slices):
        assert s.name == str(path) and s.instance is None
        np.testing.assert_array_equal(s.image(), read_slice(path, k))
    assert read_nifti(path.read_bytes(), "upload.nii.gz").slices[0].name == "upload.nii.gz"


def test_group_inputs_follows_the_commands_rule(tmp_path):
    a = write_series(tmp_path / "a", series(2), prefix="A")
    b = write_series(tmp_path / "b", series(1), prefix="B")
    folder = tmp_path / "folder"
    write_series(folder, series(2))
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    archive = tmp_path / "s.zip"
    archive.write_bytes(zip_of({"a.dcm": a[0].read_bytes()}))
    plan = group_inputs([png, a[1], folder, b[0], a[0], archive])
    assert plan == [("slice", [png]), ("series", [a[1], a[0]]), ("series", [folder]), ("slice", [b[0]]),
                    ("series", [archive])]


def test_a_lone_axial_slice_reads_as_a_volume_of_one(tmp_path):
    path = tmp_path / "one.dcm"
    path.write_bytes(dicom_bytes(ct_slice(slice_hu(0), series_uid=generate_uid(), instance=1,
                                          position=(0, 0, 5), orientation=AXIAL)))
    vol = read_series(path).volumes[0]
    assert len(vol) == 1 and vol.slice_spacing is None and vol.gaps == [] and vol.slices[0].position == 5.0


def test_an_enhanced_ct_file_reads_as_its_series(tmp_path):
    """One multi-frame file (frames stored out of body order, their places and the rescale to HU only in the
    functional groups) reads as the same volume as the series it was made of."""
    datasets = series(5, spacing=2.5, z0=-100.0)
    classic = read_series(write_series(tmp_path / "classic", datasets)[0].parent).volumes[0]
    path = tmp_path / "enhanced.dcm"
    path.write_bytes(dicom_bytes(enhanced_ct(datasets, order=[3, 0, 4, 1, 2])))
    found = read_series(path)
    assert found.errors == [] and len(found.volumes) == 1
    vol = found.volumes[0]
    frames = [2, 4, 5, 1, 3]  # body slice k is stored as frame order.index(k) + 1
    assert names(vol) == [f"{path} (frame {k})" for k in frames] and vol.ordering == "image position"
    assert [s.position for s in vol.slices] == pytest.approx([s.position for s in classic.slices])
    assert vol.pixel_spacing == classic.pixel_spacing and vol.slice_spacing == pytest.approx(2.5)
    assert vol.problems == [] and vol.series_uid == classic.series_uid and vol.shape == classic.shape
    for a, b in zip(vol.slices, classic.slices):
        np.testing.assert_array_equal(a.image(), b.image())  # in HU through the functional groups' rescale
    np.testing.assert_array_equal(read_slice(path, 1), classic.slices[0].image())  # one frame, as read alone
    upload = read_series_uploads([("enh.dcm", path.read_bytes())]).volumes[0]
    assert names(upload) == [f"enh.dcm (frame {k})" for k in frames]
    assert group_inputs([path]) == [("series", [path])]  # `predict` and `check-data` take it as a scan


def test_a_classic_multi_frame_file_is_ordered_by_its_frames(tmp_path):
    """A multi-frame file without functional groups whose top-level Image Position (Patient) places its first frame
    only: the frames keep their stored order (frame numbers), none is a duplicate of another, nothing is left out."""
    import copy

    datasets = series(4, size=32, spacing=2.5)
    ds = copy.deepcopy(datasets[0])
    ds.NumberOfFrames = 4
    ds.PixelData = b"".join(d.PixelData for d in datasets)
    vol = read_series_uploads([("multi.dcm", dicom_bytes(ds))]).volumes[0]
    assert vol.ordering == "frame number" and [s.position for s in vol.slices] == [None] * 4
    assert names(vol) == [f"multi.dcm (frame {k})" for k in range(1, 5)]
    assert vol.problems == [] and vol.left_out == []
    for frame, d in zip(vol.slices, datasets):
        np.testing.assert_array_equal(frame.image(), read_slice_bytes(dicom_bytes(d), "one.dcm"))


def test_a_series_without_part10_headers_reads_as_with_them(tmp_path):
    """Files of the dataset alone (no preamble, no file meta; extensionless, as on a CD) make the same volume."""
    import pydicom

    datasets = series(3, spacing=2.5)
    classic = read_series(write_series(tmp_path / "classic", datasets)[0].parent).volumes[0]
    folder = tmp_path / "raw"
    folder.mkdir()
    for k, ds in enumerate(datasets):
        del ds.file_meta
        pydicom.dcmwrite(folder / f"IM{k:06d}", ds, implicit_vr=True, little_endian=True)
    found = read_series(folder)
    assert found.errors == [] and len(found.volumes) == 1
    vol = found.volumes[0]
    assert [s.position for s in vol.slices] == pytest.approx([s.position for s in classic.slices])
    for a, b in zip(vol.slices, classic.slices):
        np.testing.assert_array_equal(a.image(), b.image())


def test_a_series_of_single_frame_enhanced_files_reads_as_its_classic_series(tmp_path):
    """Enhanced CT exported one frame per file keeps each slice's place, orientation and spacing only in its
    functional groups: the series reads as the classic one (order, spacing, plane, HU), and a lone
    single-frame sagittal file is known as sagittal."""
    datasets = series(4, spacing=2.5, z0=-100.0)
    classic = read_series(write_series(tmp_path / "classic", datasets)[0].parent).volumes[0]
    folder = tmp_path / "enhanced"
    folder.mkdir()
    for number, k in enumerate([2, 0, 3, 1]):  # file names out of body order
        (folder / f"IM{number:04d}").write_bytes(dicom_bytes(enhanced_ct([datasets[k]])))
    found = read_series(folder)
    assert found.errors == [] and len(found.volumes) == 1
    vol = found.volumes[0]
    assert vol.ordering == "image position" and vol.plane == "axial" and vol.problems == []
    assert names(vol) == [str(folder / f"IM{n:04d}") for n in (1, 3, 0, 2)]
    assert [s.position for s in vol.slices] == pytest.approx([s.position for s in classic.slices])
    assert vol.pixel_spacing == classic.pixel_spacing and vol.slice_spacing == pytest.approx(2.5)
    for a, b in zip(vol.slices, classic.slices):
        np.testing.assert_array_equal(a.image(), b.image())
    sagittal = dicom_bytes(enhanced_ct(series(1, orientation=SAGITTAL)))
    assert series_module.slice_plane(sagittal, "s.dcm") == "sagittal"
    with pytest.raises(ImageReadError, match="s.dcm: a sagittal slice"):
        series_module.read_axial_slice(sagittal, "s.dcm")


def test_frames_without_a_place_keep_their_stored_order(tmp_path):
    datasets = series(3)
    path = tmp_path / "enhanced.dcm"
    path.write_bytes(dicom_bytes(enhanced_ct(datasets, order=[2, 0, 1], positions=False)))
    vol = read_series(path).volumes[0]
    assert vol.ordering == "frame number" and names(vol) == [f"{path} (frame {k})" for k in (1, 2, 3)]
    assert [s.position for s in vol.slices] == [None] * 3 and vol.slice_spacing is None and vol.problems == []
    classic = read_series(write_series(tmp_path / "classic", datasets)[0].parent).volumes[0]
    for a, k in zip(vol.slices, (2, 0, 1)):
        np.testing.assert_array_equal(a.image(), classic.slices[k].image())


def test_a_frame_with_its_own_rescale_reads_by_it(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    datasets = series(2)
    ds = enhanced_ct(datasets)
    own = Dataset()
    own.RescaleSlope, own.RescaleIntercept = 1.0, -1024.0 - 300.0  # frame 2 reads 300 HU lower
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = Sequence([own])
    path = tmp_path / "enhanced.dcm"
    path.write_bytes(dicom_bytes(ds))
    vol = read_series(path).volumes[0]
    np.testing.assert_allclose(vol.image(0), window(slice_hu(0)), atol=1e-6)
    np.testing.assert_allclose(vol.image(1), window(slice_hu(1) - 300.0), atol=1e-6)
