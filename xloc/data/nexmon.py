"""Real WiFi CSI captured with the Nexmon CSI tool: pcap files of its UDP payloads, and the CSU corridors layout.

A Nexmon CSI packet is a UDP datagram (port 5500) whose payload is an 18-byte header -- magic ``0x1111``, RSSI
(int8), frame control, source MAC (6 bytes), sequence number, core / spatial stream, chanspec, chip version --
followed by the CSI as little-endian int16 (real, imaginary) pairs in FFT order (64 for a 20 MHz channel).
:func:`read_nexmon_pcap` keeps the packets whose CSI has the capture's dominant length, counts the rest as
dropped, and returns the CSI of the 802.11ac 20 MHz *used* subcarriers (-28..-1, 1..28) in frequency order: the
DC and guard bins carry leakage and hardware artefacts (up to 20 dB above the used ones in the CSU captures),
not the channel.

:func:`read_csu_csi` reads the CSUIndoorLoc-CSI-RSSI layout (``data/ref/ref_<location>_<n>.pcap``,
``data/test/test_<location>_<n>.pcap``, ``locations/location_coords.xlsx`` with sheets ``ref_coord_path<k>`` /
``test_coord_path<k>``, ``locations/location_info.xlsx`` with the AP's MAC per location): one environment per path,
the reference captures as split ``train`` and the test captures as ``test``. Two forms:

* ``csi``: one sample per packet, complex ``(n, 1 AP, 1 antenna, 56 subcarriers)`` -- the input of the CSI
  networks, WKNN on CSI features, AGNN, ALLoc;
* ``images``: MetaLoc's CSI amplitude images ``(n, 1 AP, packets, 56 subcarriers)``, ``image_packets`` consecutive
  packets of one point each, amplitude [dB] mapped linearly to 0-255 pixels between the 0.5 and 99.5 percentiles
  of the reference captures (the same map for both splits; stored in the environment's attributes).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError

__all__ = ["NexmonCapture", "read_nexmon_pcap", "read_csu_csi", "USED_SUBCARRIERS", "CSU_SPLITS"]

_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
               b"\xa1\xb2\x3c\x4d": ">"}
_ETH_IP_UDP_BYTES = 42
_NEXMON_HEADER_BYTES = 18
_NEXMON_MAGIC = 0x1111
#: 802.11 20 MHz OFDM subcarriers that carry data and pilots (the DC and guard bins are dropped)
USED_SUBCARRIERS = np.r_[-28:0, 1:29]
#: the CSU layout's capture folders and the xloc split each becomes
CSU_SPLITS = {"ref": "train", "test": "test"}


@dataclass(frozen=True)
class NexmonCapture:
    """The CSI packets of one pcap file.

    Attributes
    ----------
    csi : complex64 ``(n_packets, n_subcarriers)``
        CSI of the used subcarriers, in frequency order (:data:`USED_SUBCARRIERS`).
    source_mac : str
        The transmitter's MAC of most packets.
    channel : int
        The 802.11 channel number from the chanspec of most packets.
    dropped : int
        Packets skipped: not UDP-sized, a wrong magic, or a CSI length other than the dominant one.
    fft_size : int
        The dominant CSI length (FFT bins per packet).
    """

    csi: np.ndarray
    source_mac: str
    channel: int
    dropped: int
    fft_size: int


def _records(data: bytes, path: Path) -> list[bytes]:
    """The packet payloads of a classic pcap file (libpcap format, any byte order, micro- or nanoseconds)."""
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise DataValidationError(f"{path}: not a pcap file (the first 4 bytes are {data[:4].hex() or 'missing'}; "
                                  "pcapng is not read: convert it with `editcap -F pcap`)")
    order = _PCAP_MAGIC[data[:4]]
    records, offset, index = [], 24, 0
    while offset < len(data):
        if offset + 16 > len(data):
            raise DataValidationError(f"{path}: packet {index} is cut off in its record header "
                                      f"(byte {offset} of {len(data)})")
        captured = struct.unpack(order + "I", data[offset + 8:offset + 12])[0]
        if offset + 16 + captured > len(data):
            raise DataValidationError(f"{path}: packet {index} says {captured} bytes but the file ends "
                                      f"{len(data) - offset - 16} bytes after its header")
        records.append(data[offset + 16:offset + 16 + captured])
        offset += 16 + captured
        index += 1
    return records


def read_nexmon_pcap(path: str | os.PathLike[str], max_packets: int | None = None) -> NexmonCapture:
    """The CSI of a Nexmon capture (see the module text); at most ``max_packets`` packets, in capture order.

    Raises
    ------
    DataValidationError
        Naming the file (and the packet) when it is not a pcap, is cut off, or holds no Nexmon CSI packet.
    """
    p = Path(path)
    if max_packets is not None and max_packets < 1:
        raise DataValidationError(f"max_packets must be >= 1, got {max_packets}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataValidationError(f"{p}: cannot read ({exc.strerror})") from None
    payloads = [r[_ETH_IP_UDP_BYTES:] for r in _records(data, p)]
    csi_bytes = [len(pl) - _NEXMON_HEADER_BYTES for pl in payloads]
    good = [i for i, pl in enumerate(payloads) if len(pl) > _NEXMON_HEADER_BYTES and csi_bytes[i] % 4 == 0
            and struct.unpack("<H", pl[:2])[0] == _NEXMON_MAGIC]
    if not good:
        raise DataValidationError(f"{p}: none of its {len(payloads)} packets is a Nexmon CSI payload (magic 0x1111 "
                                  f"after {_ETH_IP_UDP_BYTES} bytes of Ethernet/IP/UDP headers)")
    lengths, counts = np.unique([csi_bytes[i] for i in good], return_counts=True)
    dominant = int(lengths[np.argmax(counts)])
    keep = [i for i in good if csi_bytes[i] == dominant]
    fft_size = dominant // 4
    if fft_size < 64:
        raise DataValidationError(f"{p}: CSI of {fft_size} subcarriers; xloc reads 20 MHz captures (64) or wider")
    if max_packets is not None:
        keep = keep[:max_packets]
    raw = np.frombuffer(b"".join(payloads[i][_NEXMON_HEADER_BYTES:] for i in keep), dtype="<i2")
    pairs = raw.reshape(len(keep), fft_size, 2).astype(np.float32)
    spectrum = np.fft.fftshift(pairs[..., 0] + 1j * pairs[..., 1], axes=1)  # bins -N/2 .. N/2-1
    csi = spectrum[:, USED_SUBCARRIERS + fft_size // 2].astype(np.complex64)
    headers = [payloads[i][:_NEXMON_HEADER_BYTES] for i in keep]
    macs, mac_counts = np.unique([h[4:10].hex(":") for h in headers], return_counts=True)
    chanspecs = [struct.unpack("<H", h[14:16])[0] & 0xFF for h in headers]
    dropped = len(payloads) - sum(1 for i in good if csi_bytes[i] == dominant)
    return NexmonCapture(csi=csi, source_mac=str(macs[np.argmax(mac_counts)]).upper(),
                         channel=int(np.bincount(chanspecs).argmax()), dropped=dropped, fft_size=fft_size)


def _sheet_frames(path: Path) -> dict[str, object]:
    import pandas as pd

    if not path.is_file():
        raise DataValidationError(f"{path}: no such file (the CSU layout keeps locations in locations/*.xlsx)")
    try:
        return pd.read_excel(path, sheet_name=None)
    except ImportError as exc:
        raise DataValidationError(f"{path}: reading .xlsx needs openpyxl ({exc})") from None
    except Exception as exc:  # noqa: BLE001 -- any reader failure is the file's fault, said with its name
        raise DataValidationError(f"{path}: not a readable .xlsx workbook ({exc})") from None


def _locations(frame: object, path: Path, sheet: str) -> dict[str, tuple[float, float]]:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    for column in ("location", "x_coord", "y_coord"):
        if column not in frame.columns:
            raise DataValidationError(f"{path}, sheet {sheet!r}: no column {column!r} "
                                      f"(it has {[str(c) for c in frame.columns]})")
    out: dict[str, tuple[float, float]] = {}
    for row, (name, x, y) in enumerate(zip(frame["location"], frame["x_coord"], frame["y_coord"], strict=True)):
        if pd.isna(name):
            continue
        try:
            xy = (float(x), float(y))
        except (TypeError, ValueError):
            xy = (np.nan, np.nan)
        if not np.isfinite(xy).all():
            raise DataValidationError(f"{path}, sheet {sheet!r}, row {row + 2}: location {name!r} has no finite "
                                      f"x_coord / y_coord ({x!r}, {y!r})")
        out[str(name).strip()] = xy
    return out


def _to_pixels(amplitude_db: np.ndarray, floor_db: float, range_db: float) -> np.ndarray:
    return np.clip(np.round((amplitude_db - floor_db) * 255.0 / range_db), 0, 255).astype(np.float32) + 0.0


def read_csu_csi(root: str | os.PathLike[str], *, packets: int | None = None, form: str = "csi",
                 image_packets: int = 25, paths: list[int] | None = None) -> dict[str, FingerprintSet]:
    """The CSU corridors layout (module text) -> ``{"train": references, "test": test points}``, one environment
    ``path<k>`` per path; ``packets`` caps the packets read per capture (the first ones), ``paths`` picks paths.

    Raises
    ------
    DataValidationError
        Naming the file, sheet, row or location when something is missing or malformed.
    """
    base = Path(root)
    if form not in ("csi", "images"):
        raise DataValidationError(f"form must be 'csi' or 'images', got {form!r}")
    if image_packets < 1:
        raise DataValidationError(f"image_packets must be >= 1, got {image_packets}")
    coords_file = base / "locations" / "location_coords.xlsx"
    sheets = _sheet_frames(coords_file)
    found = sorted({int(m.group(1)) for s in sheets if (m := re.fullmatch(r"ref_coord_path(\d+)", s))
                    and len(sheets[s])})  # type: ignore[arg-type]
    if not found:
        raise DataValidationError(f"{coords_file}: no non-empty sheet ref_coord_path<k> (sheets: {list(sheets)})")
    chosen = paths or found
    for k in chosen:
        if k not in found:
            raise DataValidationError(f"{coords_file}: no path {k} (paths: {found})")
    captures: dict[str, dict[int, list[tuple[str, tuple[float, float], NexmonCapture]]]] = {}
    for folder in CSU_SPLITS:
        pcaps = sorted((base / "data" / folder).glob(f"{folder}_*.pcap"))
        by_location: dict[str, Path] = {}
        for pcap in pcaps:
            m = re.fullmatch(rf"{folder}_(.+)_(\d+)\.pcap", pcap.name)
            if m:
                by_location[m.group(1)] = pcap
        captures[folder] = {}
        for k in chosen:
            sheet = f"{folder}_coord_path{k}"
            if sheet not in sheets:
                raise DataValidationError(f"{coords_file}: no sheet {sheet!r} (sheets: {list(sheets)})")
            rows = []
            for name, xy in _locations(sheets[sheet], coords_file, sheet).items():
                if name not in by_location:
                    raise DataValidationError(f"{coords_file}, sheet {sheet!r}: location {name!r} has no capture "
                                              f"{base / 'data' / folder}/{folder}_{name}_<n>.pcap")
                rows.append((name, xy, read_nexmon_pcap(by_location[name], packets)))
            captures[folder][k] = rows
    floor_db = range_db = 0.0
    if form == "images":  # one pixel map for both splits, from the references' amplitudes
        ref_db = np.concatenate([20 * np.log10(np.maximum(np.abs(c.csi), 1e-6)).ravel()
                                 for rows in captures["ref"].values() for _, _, c in rows])
        floor_db, top_db = (float(v) for v in np.percentile(ref_db, [0.5, 99.5]))
        range_db = max(top_db - floor_db, 1e-3)
    # One environment per path, described by both splits' captures: a saved file holds one metadata record per
    # environment, so the references and the test points must agree on it.
    metas: dict[int, EnvironmentMeta] = {}
    for k in chosen:
        both = [c for folder in CSU_SPLITS for _, _, c in captures[folder][k]]
        macs = sorted({c.source_mac for c in both})
        channel = int(np.bincount([c.channel for c in both]).argmax())
        attrs: dict[str, object] = {"source": "CSUIndoorLoc-CSI-RSSI (Nexmon)", "path": k,
                                    "ap_mac": ",".join(macs), "channel": channel,
                                    "dropped_packets": int(sum(c.dropped for c in both)),
                                    "subcarriers": "802.11 20 MHz -28..-1, 1..28"}
        for folder in CSU_SPLITS:
            attrs[f"{folder}_point_names"] = ",".join(name for name, _, _ in captures[folder][k])
        if form == "images":
            attrs |= {"pixel_floor_db": floor_db, "pixel_range_db": range_db, "image_packets": image_packets}
        metas[k] = EnvironmentMeta(name=f"path{k}", kind="csi" if form == "csi" else "csi_image",
                                   ap_ids=(macs[0] if len(macs) == 1 else f"path{k}-ap",),
                                   frequency_hz=5e9 + 5e6 * channel, attrs=attrs)
    out: dict[str, FingerprintSet] = {}
    for folder, split in CSU_SPLITS.items():
        envs = []
        for k, rows in captures[folder].items():
            blocks, positions, point_ids = [], [], []
            for i, (name, xy, cap) in enumerate(rows):
                if form == "csi":
                    block = cap.csi[:, None, None, :]
                else:
                    n_images = len(cap.csi) // image_packets
                    if n_images == 0:
                        raise DataValidationError(f"location {name!r} of path {k} ({folder}): "
                                                  f"{len(cap.csi)} packets, fewer than image_packets="
                                                  f"{image_packets}")
                    amp_db = 20 * np.log10(np.maximum(np.abs(cap.csi[:n_images * image_packets]), 1e-6))
                    block = _to_pixels(amp_db, floor_db, range_db).reshape(n_images, 1, image_packets, -1)
                blocks.append(block)
                positions.append(np.repeat([xy], len(block), axis=0))
                point_ids.append(np.full(len(block), i))
            envs.append(Fingerprints(metas[k], np.concatenate(blocks), np.concatenate(positions),
                                     np.concatenate(point_ids)))
        out[split] = FingerprintSet(envs)
    return out
