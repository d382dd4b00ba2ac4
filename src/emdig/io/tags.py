"""Declarative tag tables: where each :class:`~emdig.micrograph.Acquisition` field lives.

A table is a sequence of :class:`Tag` rows. For each field the rows are tried in order and the
first one that yields a value wins, so a vendor's preferred tag comes first and fallbacks after.
Paths are dotted paths into the file's ``original_metadata`` as RosettaSciIO returns it (or, for
MRC, into the FEI2 extended header). Three kinds of synthetic path exist:

- ``@title``, ``@date``, ``@time``, ``@time_zone``: from RosettaSciIO's ``General`` metadata;
- ``@md.<path>``: any leaf of RosettaSciIO's (HyperSpy-convention) ``metadata``;
- ``@det.<path>``: for Velox, the entry of ``Detectors`` whose name is the one that recorded the
  image (``BinaryResult.Detector``), so its collection angles can be read declaratively.

Adding a vendor means adding a table here, not code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..micrograph import ACQUISITION_FIELDS

__all__ = [
    "TABLES",
    "Tag",
    "apply_table",
    "canonical_detector",
    "flatten",
    "mode_from_text",
]

Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Tag:
    """One row of a tag table.

    Attributes
    ----------
    field
        The :class:`~emdig.micrograph.Acquisition` field it fills.
    path
        Dotted path, or a tuple of paths whose present values are joined with ``" / "``.
    convert
        Raw value -> field value; returning None means "not usable, try the next row".
    when
        Optional ``(path, regex)``: the row applies only if that path's value matches.
    """

    field: str
    path: str | tuple[str, ...]
    convert: Converter = lambda v: v
    when: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.field not in ACQUISITION_FIELDS:
            raise ValueError(f"unknown Acquisition field {self.field!r}")


# ------------------------------------------------------------------------------- helpers
def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": leaf}``. Iterative, so hostile depth cannot recurse."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Mapping[str, Any]]] = [(prefix, tree)]
    while stack:
        pre, node = stack.pop()
        for k, v in node.items():
            key = f"{pre}.{k}" if pre else str(k)
            if isinstance(v, Mapping):
                stack.append((key, v))
            else:
                out[key] = v
    return out


def _scalar(v: Any) -> Any:
    """Unwrap numpy scalars, bytes and Zeiss ``(label, value[, unit])`` tuples."""
    if isinstance(v, tuple) and len(v) in (2, 3) and isinstance(v[0], str):
        v = v[1]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "size", 1) == 1:
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("latin-1", "replace").strip("\x00 ")
    return v


def _num(v: Any) -> float | None:
    v = _scalar(v)
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        m = re.match(r"\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)", v)
        if not m:
            return None
        f = float(m.group(1))
    else:
        return None
    return f if math.isfinite(f) else None


def scaled(factor: float, *, positive: bool = False, absolute: bool = False) -> Converter:
    """A numeric converter multiplying by ``factor``; zero/negative dropped if ``positive``."""

    def conv(v: Any) -> float | None:
        f = _num(v)
        if f is None:
            return None
        f *= factor
        if absolute:
            f = abs(f)
        if positive and f <= 0:
            return None
        return f

    return conv


number = scaled(1.0)
positive = scaled(1.0, positive=True)
magnitude = scaled(1.0, absolute=True)
v_to_kv = scaled(1e-3, positive=True)
m_to_mm = scaled(1e3, positive=True)
rad_to_mrad = scaled(1e3, positive=True, absolute=True)
rad_to_mrad_any = scaled(1e3, absolute=True)
rad_to_deg = scaled(180.0 / math.pi)
s_to_us = scaled(1e6, positive=True)
a_to_pa = scaled(1e12, positive=True)
na_to_pa = scaled(1e3, positive=True)

_UNIT_TO_US = {"s": 1e6, "ms": 1e3, "us": 1.0, "µs": 1.0, "μs": 1.0, "ns": 1e-3}
_UNIT_TO_PA = {"a": 1e12, "ma": 1e9, "ua": 1e6, "µa": 1e6, "na": 1e3, "pa": 1.0, "fa": 1e-3}
_UNIT_TO_KV = {"v": 1e-3, "kv": 1.0, "mv": 1e3}


def _with_unit(table: Mapping[str, float]) -> Converter:
    """For ``(label, value, unit)`` tuples and ``"50 ns"`` strings."""

    def conv(v: Any) -> float | None:
        unit = None
        if isinstance(v, tuple) and len(v) == 3:
            unit = str(v[2])
        elif isinstance(v, str):
            m = re.match(r"\s*[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?\s*(\S+)", v)
            unit = m.group(1) if m else None
        f = _num(v)
        if f is None or f <= 0:
            return None
        if unit is None:
            return f
        factor = table.get(unit.strip().lower()) or table.get(unit.strip())
        return None if factor is None else f * factor

    return conv


dwell_with_unit = _with_unit(_UNIT_TO_US)
current_with_unit = _with_unit(_UNIT_TO_PA)
kv_with_unit = _with_unit(_UNIT_TO_KV)


def magnification_text(v: Any) -> float | None:
    """``"50.00 K X"`` -> 50000, ``"10Mx"`` -> 1e7, ``105`` -> 105."""
    v = _scalar(v)
    if isinstance(v, str):
        m = re.match(r"\s*(\d*\.?\d+)\s*([kKmM]?)\s*[xX]?", v)
        if not m:
            return None
        f = float(m.group(1)) * {"": 1.0, "k": 1e3, "m": 1e6}[m.group(2).lower()]
        return f if f > 0 else None
    return positive(v)


def text(v: Any) -> str | None:
    v = _scalar(v)
    if v is None or isinstance(v, list | tuple | dict):
        return None
    s = str(v).strip()
    return s or None


def strip_prefix(prefix: str) -> Converter:
    def conv(v: Any) -> str | None:
        s = text(v)
        if s and s.startswith(prefix):
            s = s[len(prefix) :].strip()
        return s or None

    return conv


# Order matters: HAADF before ADF, ABF before BF.
_DETECTOR_RULES: tuple[tuple[str, str], ...] = (
    (r"HAADF", "HAADF"),
    (r"(?<![A-Z])M?ABF|ANNULAR[ _-]?BRIGHT", "ABF"),
    (r"(?<![A-Z])(?:PN|MA|LA)?ADF|ANNULAR[ _-]?DARK", "ADF"),
    (r"BSE|BSD|(?<![A-Z])CBS|(?<![A-Z])VCD|BACKSCATTER", "BSE"),
    (r"(?<![A-Z])DF\d?(?![A-Z])|DARK[ _-]?FIELD", "DF"),
    (r"(?<![A-Z])BF(?![A-Z])|BRIGHT[ _-]?FIELD", "BF"),
    (r"(?<![A-Z])SE\d?(?![A-Z])|INLENS|IN-LENS|(?<![A-Z])ETD|(?<![A-Z])TLD|SECONDARY", "SE"),
    (
        r"CETA|ULTRASCAN|ORIUS|CCD|CAMERA|(?<![A-Z])F\d{3}(?!\d)|ONEVIEW|(?<![A-Z])K[23](?!\d)"
        r"|FALCON|GIF|RIO|METRO",
        "camera",
    ),
)


def known_detector(v: Any) -> str | None:
    """Canonical detector name if the text names a known detector type, else None."""
    s = text(v)
    if not s:
        return None
    up = s.upper()
    for pattern, name in _DETECTOR_RULES:
        if re.search(pattern, up):
            return name
    return None


def canonical_detector(v: Any) -> str | None:
    """Canonical detector name (HAADF, ADF, ABF, BF, DF, SE, BSE, camera), else the vendor's."""
    return known_detector(v) or text(v)


def mode_from_text(v: Any) -> str | None:
    """Vendor mode strings -> ``STEM``, ``TEM``, ``SEM`` or ``diffraction``.

    A STEM mode string that mentions "diffraction" (TIA's "STEM nP SA Zoom Diffraction": the
    projector is in diffraction in STEM) is STEM.
    """
    s = text(v)
    if not s:
        return None
    up = re.sub(r"\b(?:eos|mode)(?=[A-Z])", "", s).upper()  # JEOL: "eosTEM", "modeDIFF"
    if re.search(r"STEM|SCANNING|(?<![A-Z])PROBE|ASID", up):
        return "STEM"
    if "DIFF" in up:
        return "diffraction"
    if re.search(r"(?<![A-Z])SEM(?![A-Z])", up):
        return "SEM"
    if re.search(r"TEM|IMAGING|(?<![A-Z])MAG|PARALLEL|FREE", up):
        return "TEM"
    return None


def velox_mode(v: Any) -> str | None:
    """Velox ``IlluminationMode / ProjectorMode``: Probe -> STEM; projector 1 -> diffraction."""
    s = text(v) or ""
    parts = [p.strip() for p in s.split("/")]
    if parts and parts[0].lower() == "probe":
        return "STEM"
    if len(parts) > 1 and parts[1] == "1":
        return "diffraction"
    if parts and parts[0]:
        return "TEM"
    return None


def const(value: str) -> Converter:
    return lambda _v: value


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def date_time(v: Any) -> str | None:
    """``"2016-02-21 / 17:53:06[ / +09:00]"`` (joined @date/@time/@time_zone) -> ISO 8601."""
    s = text(v)
    if not s:
        return None
    parts = [p.strip() for p in s.split("/")]
    try:
        date = datetime.fromisoformat(parts[0]).date()
    except ValueError:
        return None
    out = date.isoformat()
    if len(parts) > 1 and re.match(r"\d{1,2}:\d{2}", parts[1]):
        out += "T" + parts[1]
        if len(parts) > 2:
            tz = parts[2]
            out += "+00:00" if tz.upper() == "UTC" else tz if re.match(r"[+-]\d", tz) else ""
    return out


def _parse_any_datetime(s: str) -> datetime | None:
    formats = (
        "%m/%d/%Y %I:%M:%S %p",
        "%d %b %Y %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S.%f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S",
    )
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.strip())  # .NET writes 7 fractional digits
    for f in formats:
        try:
            return datetime.strptime(s, f)
        except ValueError:
            continue
    return None


def vendor_datetime(v: Any) -> str | None:
    """Vendor date strings (joined date / time) -> ISO 8601."""
    s = text(v)
    if not s:
        return None
    dt = _parse_any_datetime(s.replace(" / ", " "))
    return None if dt is None else _iso(dt)


def dm_datetime(v: Any) -> str | None:
    """DM ``DataBar`` date / time in the PC's locale: ``8/8/2016``, ``27/08/2016``, ``27.08.2016``.

    Dotted dates and a first field above 12 are day-first; otherwise month-first (US default).
    """
    from dateutil import parser

    s = text(v)
    if not s:
        return None
    date, _, time_part = s.partition(" / ")
    fields = re.split(r"[/.\-]", date.strip())
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    dayfirst = "." in date or int(fields[0]) > 12
    try:
        dt = parser.parse(f"{date} {time_part}".strip(), dayfirst=dayfirst)
    except (ValueError, OverflowError):
        return None
    return _iso(dt)


def ole_date(v: Any) -> str | None:
    """Days since 1899-12-30 (FEI2 'Timestamp') -> ISO 8601."""
    f = _num(v)
    if f is None or f <= 0:
        return None
    return _iso(datetime(1899, 12, 30) + timedelta(days=f))


# ------------------------------------------------------------------------------- tables
_DM = "ImageList.TagGroup0.ImageTags."
_TIA = "ObjectInfo.ExperimentalDescription."
_FEI = "fei_metadata."
_CZ = "CZ_SEM."
_JS = "ImageDescription."
_TV = "TVIPS."
_ACQ = ("@date", "@time", "@time_zone")

_HYPERSPY: tuple[Tag, ...] = (
    *(
        row
        for ins in ("TEM", "SEM")
        for row in (
            Tag("voltage_kv", f"@md.Acquisition_instrument.{ins}.beam_energy", positive),
            Tag("magnification", f"@md.Acquisition_instrument.{ins}.magnification", positive),
            Tag("camera_length_mm", f"@md.Acquisition_instrument.{ins}.camera_length", positive),
            Tag(
                "convergence_mrad", f"@md.Acquisition_instrument.{ins}.convergence_angle", positive
            ),
            Tag("dwell_us", f"@md.Acquisition_instrument.{ins}.dwell_time", s_to_us),
            Tag("beam_current_pa", f"@md.Acquisition_instrument.{ins}.beam_current", na_to_pa),
            Tag("tilt_alpha_deg", f"@md.Acquisition_instrument.{ins}.Stage.tilt_alpha", number),
            Tag("tilt_beta_deg", f"@md.Acquisition_instrument.{ins}.Stage.tilt_beta", number),
            Tag("instrument", f"@md.Acquisition_instrument.{ins}.microscope", text),
            Tag("mode", f"@md.Acquisition_instrument.{ins}.acquisition_mode", mode_from_text),
        )
    ),
    Tag("mode", "@md.Acquisition_instrument.SEM.beam_energy", const("SEM")),
    # emdig's own nodes (HyperSpy has none for STEM detectors): angles in mrad, rotation in deg
    Tag("detector", "@md.Acquisition_instrument.TEM.Detector.STEM.name", canonical_detector),
    Tag(
        "collection_inner_mrad",
        "@md.Acquisition_instrument.TEM.Detector.STEM.collection_angle_inner",
        magnitude,
    ),
    Tag(
        "collection_outer_mrad",
        "@md.Acquisition_instrument.TEM.Detector.STEM.collection_angle_outer",
        positive,
    ),
    Tag("scan_rotation_deg", "@md.Acquisition_instrument.TEM.scan_rotation", number),
    Tag("acquired_at", _ACQ, date_time),
)


def _dm_rows(p: str) -> tuple[Tag, ...]:
    """DM rows for one ImageTags prefix (stacks keep theirs under "source.Tags at creation")."""
    return (
        Tag("voltage_kv", p + "Microscope Info.Voltage", v_to_kv),
        Tag(
            "mode",
            (
                p + "Microscope Info.Illumination Mode",
                p + "Microscope Info.Operation Mode",
                p + "Microscope Info.Imaging Mode",
            ),
            mode_from_text,
        ),
        Tag("detector", "@title", known_detector),
        Tag("detector", p + "QuickSaved.original name", known_detector),
        Tag("detector", p + "DataBar.Device Name", canonical_detector),
        Tag("detector", p + "Session Info.Detector", canonical_detector),
        # In diffraction DM records the camera length (mm) as the "magnification".
        Tag(
            "camera_length_mm",
            p + "Microscope Info.Indicated Magnification",
            positive,
            when=(p + "Microscope Info.Operation Mode", "DIFF"),
        ),
        Tag(
            "magnification",
            p + "Microscope Info.Indicated Magnification",
            positive,
            when=(p + "Microscope Info.Operation Mode", "^(?!DIFF)"),
        ),
        Tag("camera_length_mm", p + "Microscope Info.STEM Camera Length", positive),
        Tag("dwell_us", p + "DigiScan.Sample Time", positive),
        Tag(
            "convergence_mrad",
            p + "EELS.Experimental Conditions.Convergence semi-angle (mrad)",
            positive,
        ),
        Tag(
            "collection_outer_mrad",
            p + "EELS.Experimental Conditions.Collection semi-angle (mrad)",
            positive,
        ),
        Tag("beam_current_pa", p + "Microscope Info.Probe Current (nA)", na_to_pa),
        Tag("tilt_alpha_deg", p + "Microscope Info.Stage Position.Stage Alpha", number),
        Tag("tilt_beta_deg", p + "Microscope Info.Stage Position.Stage Beta", number),
        Tag("scan_rotation_deg", p + "DigiScan.Rotation", number),
        Tag("instrument", p + "Session Info.Microscope", text),
        Tag("instrument", p + "Microscope Info.Name", text),
        Tag(
            "acquired_at",
            (p + "DataBar.Acquisition Date", p + "DataBar.Acquisition Time"),
            dm_datetime,
        ),
        Tag("acquired_at", _ACQ, date_time),
    )


TABLES: dict[str, tuple[Tag, ...]] = {
    "dm": _dm_rows(_DM) + _dm_rows(_DM + "source.Tags at creation."),
    "velox": (
        Tag("voltage_kv", "Optics.AccelerationVoltage", v_to_kv),
        Tag("mode", ("Optics.IlluminationMode", "Optics.ProjectorMode"), velox_mode),
        Tag("detector", "BinaryResult.Detector", canonical_detector),
        Tag("detector", "@title", canonical_detector),
        Tag("magnification", "CustomProperties.StemMagnification.value", positive),
        Tag("magnification", "Optics.NominalMagnification", positive),
        Tag("camera_length_mm", "Optics.CameraLength", m_to_mm),
        Tag("convergence_mrad", "Optics.BeamConvergence", rad_to_mrad),
        Tag("collection_inner_mrad", "@det.CollectionAngleRange.begin", rad_to_mrad_any),
        Tag("collection_outer_mrad", "@det.CollectionAngleRange.end", rad_to_mrad),
        Tag("dwell_us", "Scan.DwellTime", s_to_us),
        Tag("beam_current_pa", "Optics.LastMeasuredScreenCurrent", a_to_pa),
        Tag("tilt_alpha_deg", "Stage.AlphaTilt", rad_to_deg),
        Tag("tilt_beta_deg", "Stage.BetaTilt", rad_to_deg),
        Tag("scan_rotation_deg", "Scan.ScanRotation", rad_to_deg),
        Tag("instrument", "Instrument.InstrumentModel", text),
        Tag("instrument", "Instrument.InstrumentClass", text),
        Tag("acquired_at", _ACQ, date_time),
    ),
    "tia": (
        Tag("voltage_kv", _TIA + "High tension_kV", positive),
        Tag(
            "voltage_kv",
            "ObjectInfo.ExperimentalConditions.MicroscopeConditions.AcceleratingVoltage",
            v_to_kv,
        ),
        Tag("mode", _TIA + "Mode", mode_from_text),
        Tag("detector", "ObjectInfo.AcquireInfo.CameraNamePath", canonical_detector),
        Tag("magnification", _TIA + "Magnification_x", positive),
        Tag("camera_length_mm", _TIA + "Camera length_m", m_to_mm),
        # TIA writes DwellTimePath for cameras too, where it is the exposure: STEM only.
        Tag(
            "dwell_us",
            "ObjectInfo.AcquireInfo.DwellTimePath",
            s_to_us,
            when=(_TIA + "Mode", "STEM"),
        ),
        Tag("tilt_alpha_deg", _TIA + "Stage A_deg", number),
        Tag("tilt_beta_deg", _TIA + "Stage B_deg", number),
        Tag("scan_rotation_deg", _TIA + "Stem rotation_deg", number, when=(_TIA + "Mode", "STEM")),
        Tag("instrument", _TIA + "Microscope", strip_prefix("Microscope")),
        Tag("acquired_at", _ACQ, date_time),
    ),
    "fei_tiff": (
        Tag("voltage_kv", _FEI + "Beam.HV", v_to_kv),
        Tag("voltage_kv", _FEI + "EBeam.HV", v_to_kv),
        Tag("mode", _FEI + "Beam.HV", const("SEM")),
        Tag("detector", _FEI + "Detectors.Mode", known_detector),
        Tag("detector", _FEI + "Detectors.Name", canonical_detector),
        Tag("dwell_us", _FEI + "Scan.Dwelltime", s_to_us),
        Tag("dwell_us", _FEI + "EScan.Dwell", s_to_us),
        Tag("beam_current_pa", _FEI + "EBeam.BeamCurrent", a_to_pa),
        Tag("tilt_alpha_deg", _FEI + "Stage.StageT", rad_to_deg),
        Tag("tilt_beta_deg", _FEI + "Stage.StageTb", rad_to_deg),
        Tag("scan_rotation_deg", _FEI + "EBeam.ScanRotation", rad_to_deg),
        Tag("instrument", _FEI + "System.SystemType", text),
        Tag("instrument", _FEI + "System.Type", text),
        Tag("acquired_at", (_FEI + "User.Date", _FEI + "User.Time"), vendor_datetime),
    ),
    "zeiss_tiff": (
        Tag("voltage_kv", _CZ + "ap_actualkv", kv_with_unit),
        Tag("mode", _CZ + "ap_actualkv", const("SEM")),
        Tag("detector", _CZ + "dp_detector_type", canonical_detector),
        Tag("magnification", _CZ + "ap_mag", magnification_text),
        Tag("dwell_us", _CZ + "dp_dwell_time", dwell_with_unit),
        Tag("beam_current_pa", _CZ + "ap_iprobe", current_with_unit),
        Tag("tilt_alpha_deg", _CZ + "ap_stage_at_t", number),
        Tag("scan_rotation_deg", _CZ + "ap_scanrotation", number),
        Tag("instrument", _CZ + "sv_serial_number", text),
        Tag("acquired_at", (_CZ + "ap_date", _CZ + "ap_time"), vendor_datetime),
    ),
    "jeol_tiff": (
        Tag("voltage_kv", _JS + "ElectronGun.AccelerationVoltage", v_to_kv),
        Tag(
            "mode",
            (_JS + "Eos.EosMode", _JS + "ImageFormingSystem.ModeString"),
            mode_from_text,
        ),
        Tag(
            "magnification",
            _JS + "ImageFormingSystem.SelectorValue",
            positive,
            when=(_JS + "ImageFormingSystem.ModeString", "MAG"),
        ),
        Tag(
            "camera_length_mm",
            _JS + "ImageFormingSystem.SelectorValue",
            positive,
            when=(_JS + "ImageFormingSystem.ModeString", "DIFF"),
        ),
        Tag("tilt_alpha_deg", _JS + "GonioStage.StagePosition.TX", number),
        Tag("tilt_beta_deg", _JS + "GonioStage.StagePosition.TY", number),
        Tag("instrument", _JS + "Instruments", text),
        Tag("acquired_at", _JS + "DateTime", vendor_datetime),
    ),
    "tvips_tiff": (
        # The raw HighTension/Magnification tags are scaled inconsistently; the Tem* ones are SI.
        Tag("voltage_kv", _TV + "TemHighTension", v_to_kv),
        Tag("magnification", _TV + "TemMagnification", positive),
        Tag("detector", _TV + "CameraType", canonical_detector),
        Tag("mode", _TV + "TemHighTension", const("TEM")),
    ),
    "jeol_img": (
        Tag("voltage_kv", "Instrument.AccV", positive),
        Tag("magnification", "Instrument.Mag", positive),
        Tag("detector", "@title", known_detector),
        Tag("instrument", "Instrument.Name", text),
        Tag("scan_rotation_deg", "Instrument.ScanR", number),
        Tag("acquired_at", _ACQ, date_time),
    ),
    "prz": (
        Tag("voltage_kv", "electron_gun.voltage", v_to_kv),
        Tag("mode", "condenser.mode", mode_from_text),
        Tag("detector", "scan_generator.detector", canonical_detector),
        Tag("magnification", "scan_driver.magnification", positive),
        Tag("camera_length_mm", "projector.camera_length", m_to_mm),
        Tag("dwell_us", "scan_generator.dwell_time", s_to_us),
        Tag("instrument", "source.name", text),
    ),
    "bcf": (
        Tag("voltage_kv", "Microscope.HV", positive),
        Tag("magnification", "Microscope.Mag", positive),
        Tag("detector", "@title", canonical_detector),
        Tag("mode", "@md.Acquisition_instrument.SEM.beam_energy", const("SEM")),
        Tag("mode", "@md.Acquisition_instrument.TEM.beam_energy", const("STEM")),
    ),
    "mrc_fei2": (
        Tag("voltage_kv", "HT", v_to_kv),
        Tag("mode", ("Illumination mode", "Projection mode"), velox_mode),
        Tag(
            "detector",
            "STEM Detector name",
            canonical_detector,
            when=("Illumination mode", "Probe"),
        ),
        Tag("detector", "Camera name", canonical_detector),
        Tag("magnification", "Magnification", positive),
        Tag("camera_length_mm", "Camera length", m_to_mm),
        Tag("convergence_mrad", "Convergence angle", rad_to_mrad),
        Tag("dwell_us", "Dwell time", s_to_us, when=("Illumination mode", "Probe")),
        Tag("tilt_alpha_deg", "Alpha tilt", number),
        Tag("tilt_beta_deg", "Beta tilt", number),
        Tag("scan_rotation_deg", "Scan rotation", number),
        Tag("instrument", "Microscope type", text),
        Tag("acquired_at", "Timestamp", ole_date),
    ),
    "berkeley_emd": (
        Tag("voltage_kv", "microscope.high tension", v_to_kv),
        Tag("magnification", "microscope.magnification", positive),
        Tag("camera_length_mm", "microscope.camera length", m_to_mm),
        Tag("convergence_mrad", "microscope.convergence angle", rad_to_mrad),
        Tag("dwell_us", "microscope.dwell time", s_to_us),
        Tag("instrument", "microscope.name", text),
    ),
    # HyperSpy has no node for STEM detectors: the signal title is the usual carrier
    "hspy": (Tag("detector", "@title", known_detector),),
    "hyperspy": _HYPERSPY,
}


def _value(flat: Mapping[str, Any], path: str | tuple[str, ...]) -> Any:
    if isinstance(path, str):
        return flat.get(path)
    parts = [text(flat.get(p)) for p in path]
    present = [p for p in parts if p]
    return " / ".join(present) if present else None


def apply_table(flat: Mapping[str, Any], tables: Iterable[Sequence[Tag]]) -> dict[str, Any]:
    """Fill Acquisition fields from a flattened metadata dict, table rows in order.

    Later tables only fill fields the earlier ones left empty.
    """
    out: dict[str, Any] = {}
    for table in tables:
        for tag in table:
            if tag.field in out:
                continue
            if tag.when is not None:
                cond = text(flat.get(tag.when[0])) or ""  # a missing tag tests as ""
                if not re.search(tag.when[1], cond, re.IGNORECASE):
                    continue
            raw = _value(flat, tag.path)
            if raw is None:
                continue
            try:
                val = tag.convert(raw)
            except (ValueError, TypeError, OverflowError):
                val = None
            if val is not None:
                out[tag.field] = val
    return out
