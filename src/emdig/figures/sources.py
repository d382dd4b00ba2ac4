"""Open-access articles and their figures from Europe PMC.

:class:`EuropePMC` searches the Europe PMC REST API for open-access articles, then downloads
each one's JATS full text and its figure images into a resumable cache, one folder per article::

    <cache_dir>/_search/<sha256 of the URL>.json   a cached page of search results
    <cache_dir>/PMC1234567/article.xml             the JATS full text
    <cache_dir>/PMC1234567/<graphic href>.<ext>    each figure image (ext from its magic bytes)
    <cache_dir>/PMC1234567/done.json               written last: what was fetched and what not

Every write is atomic, so a killed run resumes where it stopped and fetches nothing twice.
Responses are untrusted: sizes are capped, images are checked by magic bytes, and identifiers
are checked before they become paths.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..errors import CorruptFile, EmdigError, FetchError, TooLarge

__all__ = [
    "MAX_BYTES",
    "EuropePMC",
    "FetchResult",
    "Response",
    "Transport",
    "UrllibTransport",
    "default_user_agent",
    "read_capped",
]

log = logging.getLogger(__name__)

REST_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest"
#: Figure images of an open-access article: ``{pmcid}`` and the graphic's file name.
BIN_URL = "https://europepmc.org/articles/{pmcid}/bin/{name}"
#: The largest response accepted, in bytes.
MAX_BYTES = 50 * 1024 * 1024
#: The most figures taken from one article (a guard against hostile XML).
MAX_FIGURES = 300
#: The longest wait a Retry-After header may impose, in seconds.
MAX_RETRY_AFTER_S = 300.0

_PMCID = re.compile(r"PMC[0-9]{1,12}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff")
_MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response: ``status``, ``headers`` (any case) and the ``body`` bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), None)


class Transport(Protocol):
    """Does one HTTP GET. Returns every status as a :class:`Response`; raises OSError (including
    TimeoutError) when no response arrived."""

    def get(self, url: str, *, headers: Mapping[str, str], timeout: float) -> Response: ...


class UrllibTransport:
    """The default :class:`Transport`, on ``urllib.request``; reads at most ``max_bytes`` + 1."""

    def __init__(self, *, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    def get(self, url: str, *, headers: Mapping[str, str], timeout: float) -> Response:
        """GET ``url`` over https; HTTP errors come back as responses, not exceptions."""
        if not url.startswith("https://"):
            raise FetchError("refusing a URL that is not https", path=url)
        request = urllib.request.Request(url, headers=dict(headers), method="GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                body = read_capped(
                    r, max_bytes=self.max_bytes, length=r.headers.get("Content-Length"), url=url
                )
                return Response(r.status, dict(r.headers.items()), body)
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, dict(e.headers.items()), e.read(64 * 1024))


def read_capped(stream: BinaryIO, *, max_bytes: int, length: str | None, url: str) -> bytes:
    """Read ``stream`` to its end, raising :class:`TooLarge` beyond ``max_bytes`` bytes."""
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise TooLarge(f"response declares {int(length)} bytes, over the {max_bytes} cap", path=url)
    body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise TooLarge(f"response exceeds the {max_bytes} byte cap", path=url)
    return body


@dataclass(slots=True)
class FetchResult:
    """What :meth:`EuropePMC.fetch` did: article folders done now, already complete, or failed.

    ``failed`` holds ``(folder, one-line reason)``; ``hits`` the search results used.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    hits: list[dict[str, Any]] = field(default_factory=list)


class _Permanent(FetchError):
    """An answer that retrying will not change (a 4xx other than 429)."""


def default_user_agent() -> str:
    """``emdig/<version>``, plus ``mailto:`` the address in ``EMDIG_CONTACT_EMAIL`` if valid."""
    try:
        agent = f"emdig/{version('emdig')}"
    except PackageNotFoundError:
        agent = "emdig/unknown"
    contact = os.environ.get("EMDIG_CONTACT_EMAIL", "").strip()
    if re.fullmatch(r"[^\s<>()\"';,]+@[^\s<>()\"';,@]+\.[A-Za-z]{2,}", contact):
        return f"{agent} (mailto:{contact})"
    if contact:
        log.warning("EMDIG_CONTACT_EMAIL=%r is not an e-mail address; not sent", contact)
    return agent


class _MinInterval:
    """Spaces calls at least ``1 / rate_per_s`` seconds apart on ``clock``."""

    def __init__(
        self, rate_per_s: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_at: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = max(self.clock(), self.next_at)
        self.next_at = now + self.interval


class EuropePMC:
    """Search Europe PMC and download open-access articles with their figure images.

    Parameters
    ----------
    cache_dir
        Folder of the cache (created if missing); see the module docstring for its layout.
    transport
        Does the HTTP GETs; :class:`UrllibTransport` by default. Tests pass a fake.
    rate_per_s
        Most requests per second; 0 disables the limit. The default 5 is half the 10 per
        second that guides to the API cite as its per-IP limit.
    retries
        Retries after a 429, a 5xx, a timeout or a network error, with exponential backoff
        (``backoff_s * 2**attempt``) or the server's Retry-After. Other 4xx are not retried.
    timeout_s
        Timeout of one request, in seconds.
    user_agent
        The User-Agent header; by default ``emdig/<version>`` with ``EMDIG_CONTACT_EMAIL``.
    max_bytes
        The largest response accepted.
    clock, sleep
        Monotonic clock and sleep, in seconds; injectable so tests run instantly.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        transport: Transport | None = None,
        rate_per_s: float = 5.0,
        retries: int = 4,
        timeout_s: float = 30.0,
        user_agent: str | None = None,
        max_bytes: int = MAX_BYTES,
        backoff_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.transport: Transport = transport or UrllibTransport(max_bytes=max_bytes)
        self.retries = max(0, int(retries))
        self.timeout_s = timeout_s
        self.user_agent = user_agent or default_user_agent()
        self.max_bytes = max_bytes
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._limiter = _MinInterval(rate_per_s, clock, sleep)

    # -- HTTP ---------------------------------------------------------------------------------

    def get(self, url: str) -> Response:
        """GET ``url`` politely: rate-limited, retried, size-capped. Raises :class:`FetchError`."""
        headers = {"User-Agent": self.user_agent, "Accept": "*/*"}
        reason = ""
        for attempt in range(self.retries + 1):
            self._limiter.wait()
            delay = min(self.backoff_s * 2**attempt, 60.0)
            try:
                response = self.transport.get(url, headers=headers, timeout=self.timeout_s)
            except OSError as e:  # TimeoutError and URLError are OSErrors
                reason = f"{type(e).__name__}: {e}".replace("\n", " ")
            else:
                if len(response.body) > self.max_bytes:
                    raise TooLarge(f"response exceeds the {self.max_bytes} byte cap", path=url)
                if 200 <= response.status < 300:
                    return response
                if response.status != 429 and response.status < 500:
                    raise _Permanent(f"HTTP {response.status}", path=url)
                reason = f"HTTP {response.status}"
                delay = _retry_after(response.header("Retry-After"), default=delay)
            if attempt < self.retries:
                log.info("%s: %s; retry %d in %.1f s", url, reason, attempt + 1, delay)
                self._sleep(delay)
        raise FetchError(f"gave up after {self.retries + 1} attempts: {reason}", path=url)

    # -- search -------------------------------------------------------------------------------

    def search(self, query: str, *, max_results: int) -> list[dict[str, Any]]:
        """Open-access articles with a PMCID that match ``query`` (Europe PMC query syntax).

        Returns up to ``max_results`` dicts with the keys ``pmcid``, ``pmid``, ``doi``,
        ``title``, ``authors``, ``journal``, ``year``, ``licence`` (e.g. ``"cc by"``, or None)
        and ``isOpenAccess``; in Europe PMC's order (relevance), without duplicates.
        """
        full_query = f"({query}) AND OPEN_ACCESS:y AND IN_EPMC:y AND HAS_FT:y"
        page_size = max(1, min(int(max_results), 100))
        hits: list[dict[str, Any]] = []
        seen: set[str] = set()
        cursor = "*"
        while len(hits) < max_results:
            params = {
                "query": full_query,
                "resultType": "core",
                "format": "json",
                "pageSize": str(page_size),
                "cursorMark": cursor,
            }
            url = f"{REST_URL}/search?{urllib.parse.urlencode(params)}"
            page = self._search_page(url)
            results = page.get("resultList", {})
            results = results.get("result", []) if isinstance(results, dict) else []
            if not isinstance(results, list):
                raise FetchError("search response: resultList.result is not a list", path=url)
            for record in results:
                hit = _hit(record)
                if hit is not None and hit["pmcid"] not in seen:
                    seen.add(hit["pmcid"])
                    hits.append(hit)
            following = page.get("nextCursorMark")
            if not results or not isinstance(following, str) or following == cursor:
                break
            cursor = following
        log.info("Europe PMC: %d open-access articles for %r", min(len(hits), max_results), query)
        return hits[:max_results]

    def _search_page(self, url: str) -> dict[str, Any]:
        cached = self.cache_dir / "_search" / f"{hashlib.sha256(url.encode()).hexdigest()}.json"
        if cached.is_file():
            with suppress(FetchError):
                return _parse_json(cached.read_bytes(), url=str(cached))
            log.warning("%s: unreadable cached search page; fetching it again", cached)
        body = self.get(url).body
        page = _parse_json(body, url=url)
        _write_atomic(cached, body)
        return page

    # -- articles -----------------------------------------------------------------------------

    def fetch(
        self,
        query: str,
        *,
        max_results: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> FetchResult:
        """Search, then download each hit's JATS XML and figure images into the cache.

        Complete articles (with ``done.json``) are skipped; half-done ones are resumed. The
        failure of one article is logged and recorded, and the others go on.
        """
        result = FetchResult(hits=self.search(query, max_results=max_results))
        for i, hit in enumerate(result.hits):
            folder = self.cache_dir / hit["pmcid"]
            try:
                if self.fetch_article(hit):
                    result.done.append(folder)
                else:
                    result.skipped.append(folder)
            except (EmdigError, OSError) as e:
                reason = " ".join(str(e).split())
                log.warning("%s: failed: %s", hit["pmcid"], reason)
                result.failed.append((folder, reason))
            if progress is not None:
                progress(i + 1, len(result.hits))
        return result

    def fetch_article(self, hit: Mapping[str, Any]) -> bool:
        """Download one article (a :meth:`search` hit) into its folder.

        Returns False if it was already complete. A figure that the server refuses (4xx), that
        is too large or that is not an image is listed under ``missing`` in ``done.json``;
        transient failures raise, so that a later run retries the article.
        """
        pmcid = str(hit.get("pmcid", ""))
        if not _PMCID.fullmatch(pmcid):
            raise FetchError(f"not a PMCID: {pmcid[:40]!r}")
        folder = self.cache_dir / pmcid
        if (folder / "done.json").is_file():
            return False
        folder.mkdir(parents=True, exist_ok=True)
        xml_path = folder / "article.xml"
        if xml_path.is_file():
            root = _parse_xml(xml_path.read_bytes(), path=str(xml_path))
        else:
            url = f"{REST_URL}/{pmcid}/fullTextXML"
            body = self.get(url).body
            root = _parse_xml(body, path=url)
            _write_atomic(xml_path, body)
        # figures refused for good are noted as they happen, so a resumed run skips them too
        refused_path = folder / "refused.json"
        refused = _read_refused(refused_path)
        figures: list[dict[str, Any]] = []
        missing: list[dict[str, str]] = []
        for href in _figure_hrefs(root):
            stem = _safe_stem(href)
            if stem is None:
                missing.append({"href": href[:200], "reason": "unsafe file name"})
                continue
            image = _existing_image(folder, stem)
            url = BIN_URL.format(pmcid=pmcid, name=urllib.parse.quote(f"{stem}.jpg"))
            if image is None and href in refused:
                missing.append(refused[href])
                continue
            if image is None:
                try:
                    image = self._fetch_image(url, folder, stem)
                except (_Permanent, TooLarge, CorruptFile) as e:
                    log.warning("%s: figure %s not fetched: %s", pmcid, href, e.reason)
                    refused[href] = {"href": href, "url": url, "reason": e.reason}
                    missing.append(refused[href])
                    _write_atomic(refused_path, json.dumps(refused).encode())
                    continue
            data = image.read_bytes()
            figures.append(
                {
                    "href": href,
                    "file": image.name,
                    "url": url,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        done = {
            "source": "europepmc",
            "pmcid": pmcid,
            **{k: hit.get(k) for k in ("doi", "title", "licence", "journal", "year")},
            "article": xml_path.name,
            "figures": figures,
            "missing": missing,
            "user_agent": self.user_agent,
        }
        _write_atomic(folder / "done.json", json.dumps(done, indent=1).encode())
        refused_path.unlink(missing_ok=True)
        log.info("%s: %d figures, %d missing", pmcid, len(figures), len(missing))
        return True

    def _fetch_image(self, url: str, folder: Path, stem: str) -> Path:
        body = self.get(url).body
        kind = _image_kind(body)
        if kind is None:
            raise CorruptFile(f"not a JPEG/PNG/GIF/TIFF image: starts with {body[:8]!r}", path=url)
        path = folder / f"{stem}.{kind}"
        _write_atomic(path, body)
        return path


# -- helpers -----------------------------------------------------------------------------------


def _retry_after(value: str | None, *, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    with suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_S)
    return default


def _parse_json(body: bytes, *, url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FetchError(f"Europe PMC returned invalid JSON ({e})", path=url) from None
    if not isinstance(data, dict):
        raise FetchError(f"Europe PMC returned JSON {type(data).__name__}, not an object", path=url)
    return data


def _read_refused(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("%s: unreadable; fetching its figures again", path)
        return {}
    return data if isinstance(data, dict) else {}


def _hit(record: object) -> dict[str, Any] | None:
    """A search hit from a result record, or None if it is not open access with a safe PMCID."""
    if not isinstance(record, dict):
        return None

    def text(key: str) -> str | None:
        value = record.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    pmcid = (text("pmcid") or "").upper()
    if not _PMCID.fullmatch(pmcid) or text("isOpenAccess") != "Y":
        return None
    journal = record.get("journalInfo", {})
    journal = journal.get("journal", {}) if isinstance(journal, dict) else {}
    title = journal.get("title") if isinstance(journal, dict) else None
    return {
        "pmcid": pmcid,
        "pmid": text("pmid"),
        "doi": text("doi"),
        "title": text("title"),
        "authors": text("authorString"),
        "journal": title if isinstance(title, str) else text("journalTitle"),
        "year": text("pubYear"),
        "licence": text("license"),
        "isOpenAccess": True,
    }


def _parse_xml(data: bytes, *, path: str) -> Element:
    try:
        root: Element = SafeET.fromstring(data)
    except (ParseError, DefusedXmlException) as e:
        raise CorruptFile(f"not well-formed JATS XML ({e})", path=path) from None
    if _local(root.tag) != "article":
        raise CorruptFile(f"root element is <{_local(root.tag)}>, not a JATS <article>", path=path)
    return root


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _figure_hrefs(root: Element) -> list[str]:
    """The ``xlink:href`` of every ``<graphic>`` inside a ``<fig>``, in order, without repeats."""
    found: dict[str, None] = {}
    for fig in (e for e in root.iter() if _local(e.tag) == "fig"):
        for graphic in (e for e in fig.iter() if _local(e.tag) == "graphic"):
            href = (graphic.get(_XLINK_HREF) or graphic.get("href") or "").strip()
            if href:
                found[href] = None
    hrefs = list(found)
    if len(hrefs) > MAX_FIGURES:
        log.warning("%d figure graphics; taking the first %d", len(hrefs), MAX_FIGURES)
    return hrefs[:MAX_FIGURES]


def _safe_stem(href: str) -> str | None:
    """The file stem of a graphic href (no folders, no image suffix), or None if unsafe."""
    if "/" in href or "\\" in href or ":" in href:
        return None
    stem = href
    if stem.lower().endswith(_IMAGE_SUFFIXES):
        stem = stem.rsplit(".", 1)[0]
    if not _SAFE_NAME.fullmatch(stem) or ".." in stem:
        return None
    return stem


def _image_kind(data: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def _existing_image(folder: Path, stem: str) -> Path | None:
    for kind in dict.fromkeys(kind for _, kind in _MAGIC):
        path = folder / f"{stem}.{kind}"
        if path.is_file():
            with path.open("rb") as f:
                if _image_kind(f.read(16)) == kind:
                    return path
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
