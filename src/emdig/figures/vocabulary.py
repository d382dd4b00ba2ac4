"""A microscopy vocabulary for tagging captions: techniques, detectors, signals, structures.

Each canonical term has spellings. Acronyms ("HAADF STEM", "EDX") match case-sensitively, so
that "SEM" is not found in "sem" and "EDS" not in "eds."; phrases ("selected area electron
diffraction") match in any case. In every spelling a space also matches a hyphen, a dash or
nothing ("HAADF-STEM", "HAADF STEM", "HAADFSTEM" as PDF text layers glue them), and a trailing
plural "s"/"es" is allowed. Where spellings overlap, the longest match wins and the text it
covers is not matched again: "HR-TEM" gives "HRTEM" only, "HAADF-STEM" not also "STEM".
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["ACRONYMS", "PHRASES", "TERMS", "find_terms"]

#: canonical term -> acronym spellings (case-sensitive)
ACRONYMS: dict[str, tuple[str, ...]] = {
    "HAADF-STEM": ("HAADF STEM", "HAADF TEM"),
    "HAADF": ("HAADF",),
    "ADF-STEM": ("ADF STEM", "DF STEM"),
    "ADF": ("ADF",),
    "ABF-STEM": ("ABF STEM",),
    "ABF": ("ABF",),
    "BF-STEM": ("BF STEM",),
    "BF-TEM": ("BF TEM",),
    "DF-TEM": ("DF TEM",),
    "iDPC": ("iDPC", "DPC", "iDPC STEM", "DPC STEM"),
    "4D-STEM": ("4D STEM",),
    "HRTEM": ("HRTEM", "HR TEM"),
    "HR-STEM": ("HRSTEM", "HR STEM"),
    "AC-STEM": ("AC STEM", "Cs STEM"),
    "TEM": ("TEM", "CTEM"),
    "STEM": ("STEM",),
    "SEM": ("SEM", "FESEM", "FE SEM", "HRSEM", "HR SEM"),
    "ESEM": ("ESEM",),
    "cryo-EM": ("cryo EM", "cryoEM", "Cryo EM", "CryoEM"),
    "cryo-TEM": ("cryo TEM", "Cryo TEM", "cryoTEM", "CryoTEM"),
    "cryo-ET": ("cryo ET", "Cryo ET", "cryoET"),
    "SAED": ("SAED", "SAD"),
    "CBED": ("CBED",),
    "NBED": ("NBED", "NBD"),
    "XRD": ("XRD", "PXRD", "GIXRD"),
    "FFT": ("FFT",),
    "IFFT": ("IFFT", "inverse FFT", "Inverse FFT"),
    "EDS": ("EDS", "EDX", "EDXS", "XEDS", "STEM EDS", "STEM EDX"),
    "EELS": ("EELS", "STEM EELS"),
    "EFTEM": ("EFTEM",),
    "EBSD": ("EBSD",),
    "AFM": ("AFM",),
    "STM": ("STM",),
    "FIB": ("FIB", "FIB SEM", "cryo FIB"),
    "XPS": ("XPS",),
    "FTIR": ("FTIR", "FT IR"),
    "UV-vis": ("UV vis", "UV Vis", "UV VIS"),
    "SIMS": ("SIMS", "ToF SIMS", "TOF SIMS"),
    "XAS": ("XAS", "XANES", "EXAFS"),
    "GPA": ("GPA",),
    "FSC": ("FSC",),
    "BSE": ("BSE", "BSD"),
    "electron microscopy": ("EM",),
    "nanoparticle": ("NP", "NPs"),
    "quantum dot": ("QD", "QDs"),
    "carbon nanotube": ("CNT", "CNTs", "MWCNT", "SWCNT"),
    "metal-organic framework": ("MOF", "MOFs"),
}

#: canonical term -> phrase spellings (any case)
PHRASES: dict[str, tuple[str, ...]] = {
    "HAADF-STEM": (
        "high angle annular dark field scanning transmission electron microscopy",
        "high angle annular dark field scanning transmission electron",
        "high angle annular dark field STEM",
        "Z contrast STEM",
    ),
    "HAADF": ("high angle annular dark field",),
    "ADF-STEM": (
        "annular dark field scanning transmission electron microscopy",
        "annular dark field STEM",
    ),
    "ADF": ("annular dark field",),
    "ABF-STEM": ("annular bright field STEM",),
    "ABF": ("annular bright field",),
    "BF-STEM": ("bright field STEM",),
    "BF-TEM": ("bright field TEM", "bright field transmission electron microscopy"),
    "DF-TEM": ("dark field TEM", "dark field transmission electron microscopy"),
    "bright field": ("bright field", "brightfield"),
    "dark field": ("dark field", "darkfield"),
    "iDPC": ("integrated differential phase contrast", "differential phase contrast"),
    "4D-STEM": ("four dimensional STEM",),
    "HRTEM": (
        "high resolution TEM",
        "high resolution transmission electron microscopy",
        "high resolution transmission electron micrograph",
        "high resolution transmission electron microscope",
    ),
    "HR-STEM": ("high resolution STEM", "atomic resolution STEM"),
    "AC-STEM": ("aberration corrected STEM", "aberration corrected scanning transmission"),
    "TEM": (
        "transmission electron microscopy",
        "transmission electron microscope",
        "transmission electron micrograph",
        "transmission electronic microscopy",
    ),
    "STEM": (
        "scanning transmission electron microscopy",
        "scanning transmission electron microscope",
        "scanning transmission electron micrograph",
    ),
    "SEM": (
        "scanning electron microscopy",
        "scanning electron microscope",
        "scanning electron micrograph",
        "scanning electronic microscopy",
        "field emission scanning electron microscopy",
    ),
    "ESEM": ("environmental scanning electron microscopy", "environmental SEM"),
    "cryo-EM": ("cryo electron microscopy", "electron cryo microscopy", "cryogenic EM"),
    "cryo-TEM": ("cryogenic TEM", "cryo transmission electron microscopy"),
    "cryo-ET": ("cryo electron tomography", "electron cryo tomography"),
    "negative stain": ("negative stain", "negative staining", "negatively stained"),
    "electron tomography": ("electron tomography",),
    "tomography": ("tomography", "tomogram", "tomographic"),
    "SAED": ("selected area electron diffraction", "selected area diffraction"),
    "CBED": ("convergent beam electron diffraction",),
    "NBED": ("nanobeam electron diffraction", "nano beam electron diffraction"),
    "electron diffraction": ("electron diffraction",),
    "XRD": ("X ray diffraction", "powder diffraction"),
    "diffraction": ("diffraction", "diffractogram", "diffraction pattern"),
    "FFT": ("fast Fourier transform", "Fourier transform", "power spectrum"),
    "IFFT": ("inverse fast Fourier transform", "inverse Fourier transform", "Fourier filtered"),
    "EDS": (
        "energy dispersive X ray spectroscopy",
        "energy dispersive X ray spectrometry",
        "energy dispersive spectroscopy",
        "energy dispersive X ray",
    ),
    "EELS": (
        "electron energy loss spectroscopy",
        "electron energy loss spectra",
        "electron energy loss spectrum",
        "energy loss spectra",
    ),
    "EFTEM": ("energy filtered TEM", "energy filtered transmission electron microscopy"),
    "EBSD": ("electron backscatter diffraction", "electron backscattered diffraction"),
    "elemental mapping": ("elemental map", "elemental mapping", "element map", "chemical map"),
    "line profile": ("line profile", "line scan", "intensity profile", "line scanning profile"),
    "AFM": ("atomic force microscopy", "atomic force microscope", "atomic force micrograph"),
    "STM": (
        "scanning tunneling microscopy",
        "scanning tunnelling microscopy",
        "scanning tunneling microscope",
        "scanning tunnelling microscope",
    ),
    "optical microscopy": (
        "optical microscopy",
        "optical microscope",
        "light microscopy",
        "optical micrograph",
        "optical image",
    ),
    "fluorescence microscopy": (
        "fluorescence microscopy",
        "fluorescence microscope",
        "fluorescence image",
        "confocal microscopy",
        "confocal",
    ),
    "FIB": ("focused ion beam",),
    "XPS": ("X ray photoelectron spectroscopy",),
    "Raman": ("Raman",),
    "FTIR": ("Fourier transform infrared",),
    "electron holography": ("electron holography", "off axis holography", "hologram"),
    "Lorentz TEM": ("Lorentz TEM", "Lorentz microscopy", "Lorentz transmission electron"),
    "ptychography": ("ptychography", "ptychographic"),
    "secondary electron": ("secondary electron",),
    "BSE": ("backscattered electron", "back scattered electron", "backscatter electron"),
    "in situ": ("in situ",),
    "operando": ("operando",),
    "micrograph": ("micrograph", "electron micrograph"),
    "electron microscopy": ("electron microscopy", "electron microscope"),
    "immunogold": ("immunogold", "immuno gold", "immunogold labeling", "immunogold labelling"),
    "simulation": ("simulated image", "image simulation", "simulation", "simulated"),
    "3D reconstruction": (
        "3D reconstruction",
        "three dimensional reconstruction",
        "reconstruction",
    ),
    "class average": ("class average", "2D class average", "2D class"),
    "zone axis": ("zone axis", "zone axes"),
    "lattice fringes": ("lattice fringe", "lattice fringes", "fringes"),
    "d-spacing": ("d spacing", "interplanar spacing", "lattice spacing", "interplanar distance"),
    "lattice": ("lattice", "lattice plane", "crystal lattice"),
    "atomic column": ("atomic column", "atom column"),
    "atomic resolution": ("atomic resolution", "atomically resolved", "atomic scale"),
    "single atom": ("single atom", "isolated atom", "single atoms"),
    "dislocation": ("dislocation", "edge dislocation", "screw dislocation"),
    "stacking fault": ("stacking fault",),
    "grain boundary": ("grain boundary", "grain boundaries"),
    "twin boundary": ("twin boundary", "twin boundaries", "twinning"),
    "defect": ("defect", "point defect", "vacancy", "vacancies"),
    "interface": ("interface", "heterointerface"),
    "strain": ("strain", "strain map"),
    "grain": ("grain",),
    "precipitate": ("precipitate",),
    "amorphous": ("amorphous",),
    "polycrystalline": ("polycrystalline",),
    "single crystal": ("single crystal", "monocrystalline", "single crystalline"),
    "crystal structure": ("crystal structure", "atomic structure", "atomic model"),
    "phase": ("phase", "phase transformation", "phase transition"),
    "nanoparticle": ("nanoparticle", "nano particle", "nanoparticulate"),
    "nanocrystal": ("nanocrystal",),
    "nanowire": ("nanowire",),
    "nanorod": ("nanorod",),
    "nanotube": ("nanotube",),
    "carbon nanotube": ("carbon nanotube",),
    "nanosheet": ("nanosheet", "nanoflake", "flake"),
    "nanoplate": ("nanoplate", "nanoplatelet", "platelet"),
    "nanocube": ("nanocube",),
    "nanocluster": ("nanocluster",),
    "core-shell": ("core shell", "core/shell", "yolk shell"),
    "quantum dot": ("quantum dot",),
    "thin film": ("thin film",),
    "monolayer": ("monolayer", "bilayer", "few layer"),
    "graphene": ("graphene",),
    "metal-organic framework": ("metal organic framework",),
    "porous": ("porous", "pore", "mesoporous", "microporous", "macroporous"),
    "cross-section": ("cross section", "cross sectional", "cross sectioned"),
    "morphology": ("morphology",),
    "size distribution": (
        "size distribution",
        "particle size",
        "diameter distribution",
        "histogram",
    ),
    "inset": ("inset",),
    "schematic": ("schematic", "illustration", "scheme", "cartoon"),
    "spectrum": ("spectrum", "spectra", "spectroscopy"),
    "magnification": ("magnification", "magnified", "low magnification", "high magnification"),
    "virus": ("virus", "virion", "phage"),
    "membrane": ("membrane",),
    "protein": ("protein",),
}

#: Every canonical term, in a stable order.
TERMS: tuple[str, ...] = tuple(dict.fromkeys([*ACRONYMS, *PHRASES]))

_SEP = r"[\s\-\u2010-\u2014/]*"


def _spelling(text: str) -> str:
    words = [re.escape(w) for w in re.split(r"[\s\-]+", text.strip()) if w]
    return _SEP.join(words)


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    out: list[tuple[str, re.Pattern[str]]] = []
    for table, flags in ((ACRONYMS, 0), (PHRASES, re.IGNORECASE)):
        for term, spellings in table.items():
            body = "|".join(sorted((_spelling(s) for s in spellings), key=len, reverse=True))
            rx = re.compile(rf"(?<![A-Za-z0-9])(?:{body})(?:e?s)?(?![A-Za-z0-9])", flags)
            out.append((term, rx))
    return tuple(out)


def find_terms(text: str) -> list[str]:
    """The canonical vocabulary terms found in ``text``, in order of first occurrence.

    Examples
    --------
    >>> find_terms("HAADF STEM image with its FFT and selected-area electron diffraction")
    ['HAADF-STEM', 'FFT', 'SAED']
    """
    matches: list[tuple[int, int, str]] = []
    for term, rx in _patterns():
        matches.extend((m.start(), m.end(), term) for m in rx.finditer(text))
    # longest first at each place; a match inside a longer one is not counted
    matches.sort(key=lambda m: (m[0], -(m[1] - m[0])))
    covered_until = -1
    first: dict[str, int] = {}
    for start, end, term in matches:
        if end <= covered_until:
            continue
        if start < covered_until:
            continue
        covered_until = end
        first.setdefault(term, start)
    return sorted(first, key=first.__getitem__)
