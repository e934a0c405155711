"""COVID-CT-MD reader: slices.csv's records, patients as volumes, labels, the patients that choose and report."""
from __future__ import annotations

import csv
import shutil

import pytest

from core.data.ctmd import LABELS, REPORT, SELECTION, by_patient, ctmd_root, patient_volume, read_ctmd
from core.data.roots import DataError
from tests.dicom_series import CTMD_PATIENTS, write_ctmd


@pytest.fixture
def ctmd(tmp_path):
    write_ctmd(tmp_path, n=3)
    return tmp_path


def test_records_labels_and_roles(ctmd):
    records = read_ctmd(ctmd)
    assert len(records) == 18 and set(by_patient(records)) == set(CTMD_PATIENTS)
    assert {r.patient: r.label for r in records} == {p: int(d == "COVID-19") for p, d in CTMD_PATIENTS.items()}
    assert all(r.path.is_file() and r.path == ctmd / "covid-ct-md" / r.file for r in records)
    assert {r.infection_visible for r in records if r.diagnosis == "Normal"} == {None}
    assert {r.infection_visible for r in records if r.diagnosis != "Normal"} == {True, False}
    assert LABELS == {"COVID-19": 1, "Normal": 0, "CAP": 0}
    # one patient per diagnosis on each side, none on both
    for names in (SELECTION, REPORT):
        assert sorted(CTMD_PATIENTS[p] for p in names) == ["CAP", "COVID-19", "Normal"]
    assert not set(SELECTION) & set(REPORT)
    assert read_ctmd(ctmd / "covid-ct-md") == records  # the folder itself may be passed


def test_a_patient_is_a_volume_in_body_order(ctmd):
    records = by_patient(read_ctmd(ctmd))["cap001"]
    vol = patient_volume(ctmd, "cap001")
    in_body_order = sorted(records, key=lambda r: r.slice_location)
    assert [s.name for s in vol.slices] == [str(r.path) for r in in_body_order]
    assert [s.position for s in vol.slices] == pytest.approx([r.slice_location for r in in_body_order])
    assert vol.ordering == "image position" and not vol.has_gap


def test_absent_or_incomplete_folder_is_named(ctmd, tmp_path):
    root = ctmd / "covid-ct-md"
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=f"^{tmp_path / 'other' / 'covid-ct-md'}: missing; expected the COVID-CT-MD"):
        ctmd_root(tmp_path / "other")
    victim = sorted((root / "CAP" / "cap002").iterdir())[1]
    victim.unlink()
    with pytest.raises(DataError, match=f"files listed in slices.csv missing \\(1\\): {victim}$"):
        read_ctmd(ctmd)
    with pytest.raises(DataError, match=f"missing \\(1\\): {victim}$"):
        patient_volume(ctmd, "cap002")
    assert len(patient_volume(ctmd, "cap001")) == 3  # another patient's missing file is no business of this one
    shutil.copy(min((root / "CAP" / "cap001").iterdir()), root / "CAP" / "cap001" / "stray.dcm")
    with pytest.raises(DataError, match="holds 4 slices, slices.csv lists 3; not listed: .*stray.dcm"):
        patient_volume(ctmd, "cap001")
    with pytest.raises(DataError, match="no patient 'P999'"):
        patient_volume(ctmd, "P999")
    (root / "slices.csv").unlink()
    with pytest.raises(DataError, match="slices.csv: missing"):
        read_ctmd(ctmd)


def test_a_malformed_row_is_named(ctmd):
    path = ctmd / "covid-ct-md" / "slices.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("COVID-19", "Flu")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"slices.csv, line 4: diagnosis 'Flu'; expected one of COVID-19, Normal, CAP"):
        read_ctmd(ctmd)


PUBLISHED = {"P001": 74, "P002": 67, "normal001": 77, "normal002": 84, "cap001": 84, "cap002": 66}


@pytest.mark.realdata
@pytest.mark.parametrize("patient", list(PUBLISHED))
def test_real_patient_volumes_match_slices_csv(data_root, patient):
    assert (data_root / "covid-ct-md").is_dir(), f"{data_root / 'covid-ct-md'} missing"
    with open(data_root / "covid-ct-md" / "slices.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["patient"] == patient]
    vol = patient_volume(data_root, patient)
    assert len(vol) == len(rows) == PUBLISHED[patient]
    in_body_order = sorted(rows, key=lambda r: float(r["slice_location"]))
    assert [s.name for s in vol.slices] == [str(data_root / "covid-ct-md" / r["file"]) for r in in_body_order]
    assert [s.instance for s in vol.slices] == [int(r["instance"]) for r in in_body_order]
    assert [s.position for s in vol.slices] == pytest.approx([float(r["slice_location"]) for r in in_body_order],
                                                             abs=0.05)
    assert vol.ordering == "image position" and vol.problems == [] and not vol.has_gap
    image = vol.image(len(vol) // 2)  # JPEG Lossless, through pylibjpeg-libjpeg
    assert image.shape == (512, 512) and 0 <= image.min() < image.max() <= 1
