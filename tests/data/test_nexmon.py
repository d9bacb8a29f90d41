"""Nexmon CSI pcap and the CSU corridors layout: small files written in those layouts, and the real set."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import skip_or_fail
from xloc.cli import app
from xloc.data import load_fingerprints
from xloc.data.nexmon import USED_SUBCARRIERS, read_csu_csi, read_nexmon_pcap
from xloc.errors import DataValidationError

SHARED_CSU = Path(__file__).resolve().parents[3] / "shared" / "data" / "csu-csi"
MAC = bytes.fromhex("b83a5ab26e70")


def nexmon_packet(csi: np.ndarray, seq: int = 0, magic: int = 0x1111, channel: int = 48) -> bytes:
    """A Nexmon CSI UDP datagram with Ethernet/IP/UDP headers (42 bytes) and CSI in FFT order."""
    header = struct.pack("<HbB6sHHHH", magic, -50, 0x08, MAC, seq, 0, 0xD000 | channel, 0x0065)
    pairs = np.stack([csi.real, csi.imag], axis=-1).astype("<i2").tobytes()
    return bytes(42) + header + pairs


def write_pcap(path: Path, packets: list[bytes]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, p in enumerate(packets):
        out.append(struct.pack("<IIII", i, 0, len(p), len(p)) + p)
    path.write_bytes(b"".join(out))
    return path


def fft_order(spectrum_by_bin: dict[int, complex]) -> np.ndarray:
    """64 FFT bins (index k holds subcarrier k for k < 32 and k - 64 above)."""
    out = np.zeros(64, dtype=complex)
    for sc, value in spectrum_by_bin.items():
        out[sc % 64] = value
    return out


def test_used_subcarriers_come_back_in_frequency_order_and_odd_packets_are_dropped(tmp_path):
    spectrum = {int(sc): complex(sc, -sc) for sc in USED_SUBCARRIERS} | {0: 999 + 0j, -32: 777 + 0j}
    good = nexmon_packet(fft_order(spectrum))
    short = nexmon_packet(np.ones(32, dtype=complex))  # another CSI length
    wrong = nexmon_packet(fft_order(spectrum), magic=0x2222)
    cap = read_nexmon_pcap(write_pcap(tmp_path / "c.pcap", [good, short, good, wrong, good]))
    assert cap.csi.shape == (3, 56) and cap.dropped == 2 and cap.channel == 48
    assert cap.source_mac == "B8:3A:5A:B2:6E:70"
    assert np.allclose(cap.csi[0], USED_SUBCARRIERS - 1j * USED_SUBCARRIERS)  # DC and guards gone
    assert read_nexmon_pcap(tmp_path / "c.pcap", max_packets=2).csi.shape == (2, 56)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b"\x00" * 4 + b[4:], "not a pcap file"),
    (lambda b: b[:-10], r"packet 1 says 316 bytes but the file ends 306"),
    (lambda b: b[:24] + struct.pack("<IIII", 0, 0, 50, 50) + bytes(50), "none of its 1 packets is a Nexmon CSI"),
])
def test_malformed_captures_are_named(tmp_path, damage, match):
    body = write_pcap(tmp_path / "ok.pcap", [nexmon_packet(np.ones(64, dtype=complex))] * 2).read_bytes()
    (tmp_path / "bad.pcap").write_bytes(damage(body))
    with pytest.raises(DataValidationError, match=match) as info:
        read_nexmon_pcap(tmp_path / "bad.pcap")
    assert "bad.pcap" in str(info.value)


def write_csu(root: Path, points: dict[str, tuple[float, float]], *, packets: int = 8, missing: str = "") -> Path:
    rng = np.random.default_rng(0)
    for folder in ("ref", "test"):
        (root / "data" / folder).mkdir(parents=True)
        for name, (x, _) in points.items():
            if name == missing and folder == "test":
                continue
            caps = [nexmon_packet(np.round(fft_order({int(sc): 100 * (1 + x) * np.exp(1j * rng.uniform(0, 6))
                                                      for sc in USED_SUBCARRIERS}))) for _ in range(packets)]
            write_pcap(root / "data" / folder / f"{folder}_{name}_{packets}.pcap", caps)
    (root / "locations").mkdir()
    frame = pd.DataFrame([(n, x, y) for n, (x, y) in points.items()], columns=["location", "x_coord", "y_coord"])
    with pd.ExcelWriter(root / "locations" / "location_coords.xlsx") as writer:
        for folder in ("ref", "test"):
            frame.to_excel(writer, sheet_name=f"{folder}_coord_path1", index=False)
    return root


def test_csu_layout_imports_one_environment_per_path_as_packets_or_images(tmp_path):
    root = write_csu(tmp_path / "csu", {"204_1": (0.0, 1.0), "204_2": (2.0, 1.0), "A205_1": (4.0, 1.0)})
    splits = read_csu_csi(root, form="csi")
    ref = splits["train"]["path1"]
    assert ref.measurements.shape == (24, 1, 1, 56) and ref.n_points == 3
    assert np.allclose(ref.positions_m[ref.point_ids == 2], [4.0, 1.0])
    images = read_csu_csi(root, form="images", image_packets=4)["test"]["path1"]
    assert images.environment.kind == "csi_image" and images.measurements.shape == (6, 1, 4, 56)
    assert 0 <= images.measurements.min() and images.measurements.max() <= 255
    # the pixels keep what the amplitude says: the far point (larger amplitude here) is brighter
    assert images.measurements[images.point_ids == 2].mean() > images.measurements[images.point_ids == 0].mean()

    r = CliRunner().invoke(app, ["import", "nexmon", str(root), "-o", str(tmp_path / "csu.h5"), "--packets", "5"])
    assert r.exit_code == 0, r.output
    stored = load_fingerprints(tmp_path / "csu.h5")
    assert sorted(stored) == ["test", "train"] and len(stored["train"]["path1"]) == 15


def test_a_location_without_its_capture_is_named(tmp_path):
    root = write_csu(tmp_path / "csu", {"204_1": (0.0, 1.0), "204_2": (2.0, 1.0)}, missing="204_2")
    with pytest.raises(DataValidationError, match=r"sheet 'test_coord_path1': location '204_2' has no capture"):
        read_csu_csi(root)


def test_the_real_csu_captures_import():
    if not (SHARED_CSU / "locations" / "location_coords.xlsx").is_file():
        skip_or_fail("data", f"the CSU CSI captures are not at {SHARED_CSU}")
    splits = read_csu_csi(SHARED_CSU, packets=20, paths=[2, 3])
    assert sorted(splits["train"]) == ["path2", "path3"]
    path2 = splits["train"]["path2"]
    assert path2.n_points == 30 and path2.measurements.shape[1:] == (1, 1, 56)
    assert path2.environment.ap_ids == ("B8:3A:5A:B2:67:90",)
    assert splits["test"]["path3"].n_points == 20
    assert path2.environment == splits["test"]["path2"].environment  # one record per environment in a saved file
    assert path2.environment.attrs["ref_point_names"] != path2.environment.attrs["test_point_names"]


def test_the_real_csu_captures_import_through_the_cli(tmp_path):
    """Regression: the references and test points of a path once carried different metadata, and the file write
    refused them ("environment 'path1' has different metadata in split 'test'")."""
    if not (SHARED_CSU / "locations" / "location_coords.xlsx").is_file():
        skip_or_fail("data", f"the CSU CSI captures are not at {SHARED_CSU}")
    out = tmp_path / "csu.h5"
    r = CliRunner().invoke(app, ["import", "nexmon", str(SHARED_CSU), "-o", str(out), "--packets", "10"])
    assert r.exit_code == 0, r.output
    stored = load_fingerprints(out)
    assert sorted(stored["train"]) == [f"path{k}" for k in range(1, 6)]
    assert stored["test"]["path1"].n_points == 49 and stored["train"]["path1"].n_points == 52
