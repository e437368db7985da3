"""Public Google Drive files, fetched the way a browser gets them, with a configurable host.

The published weights live in the authors' public Drive folder. Two of its files have known ids;
the others are found by name in the folder's public listing. This module does what ``gdown`` does
(the ``_DRIVE_ivd`` listing, the ``uc?export=download`` link, the virus-scan confirmation form),
but through glaviz's own resumable :func:`~glaviz.registry.download.download`, with one clear error
per failure and a host that ``$GLAVIZ_DRIVE_URL`` can replace. gdown was not used because it
hardcodes ``drive.google.com`` (tests could not imitate Drive on 127.0.0.1 without patching it),
brings BeautifulSoup and its own progress output, and reports a quota page as a generic failure.

Drive answers a download with HTML in several cases; each becomes one error naming the source:

- a virus-scan confirmation page ("can't scan this file for viruses") → follow its form;
- a quota page ("Too many users have viewed or downloaded this file recently") → error;
- a sign-in or "request access" page (the file is not public, or the id is wrong) → error;
- any other HTML page where an HDF5 file was expected → error.
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin

from glaviz.errors import DownloadError
from glaviz.registry.download import (
    DEFAULT_POLICY,
    HTTPStatusError,
    RetryPolicy,
    discard_partial,
    download,
)

DRIVE_URL_ENV = "GLAVIZ_DRIVE_URL"
DEFAULT_DRIVE_URL = "https://drive.google.com"
FOLDER_MIME = "application/vnd.google-apps.folder"

#: Bytes read from a downloaded file to tell an HTML page from the expected binary file.
_SNIFF = 512
#: An HTML answer larger than this is not a Drive page; only its start is parsed.
_MAX_PAGE = 4 << 20
#: Confirmation pages followed before giving up (Drive asks once; a loop means something is off).
_MAX_HOPS = 3

_QUOTA = re.compile(r"too many users have viewed or downloaded|quota (?:has been )?exceeded", re.I)
_ACCESS = re.compile(
    r"accounts\.google\.com/(?:ServiceLogin|v3/signin)|you need access|request access|"
    r"you need permission|sign in to continue",
    re.I,
)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_FORM = re.compile(r'<form([^>]*\bid="download-form"[^>]*)>(.*?)</form>', re.I | re.S)
_ACTION = re.compile(r'\baction="([^"]+)"', re.I)
_HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*>', re.I)
_ATTR = re.compile(r'(name|value)="([^"]*)"', re.I)
_CONFIRM_HREF = re.compile(r'href="(/uc\?export=download[^"]*confirm=[^"]+)"', re.I)
_DOWNLOAD_URL = re.compile(r'"downloadUrl":"([^"]+)"')
_ERROR_CAPTION = re.compile(r'<p class="uc-error-subcaption">(.*?)</p>', re.I | re.S)
_JS_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
#: Drive serves the folder page with its embedded listing to browsers; gdown sends this agent too.
_BROWSER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/98.0.4758.102 Safari/537.36"
)


def drive_url() -> str:
    """The Drive host: ``$GLAVIZ_DRIVE_URL`` (a proxy, or a test server) or drive.google.com."""
    return (os.environ.get(DRIVE_URL_ENV, "").strip() or DEFAULT_DRIVE_URL).rstrip("/")


def file_url(file_id: str, base: str | None = None) -> str:
    """The public download link of one file."""
    return f"{base or drive_url()}/uc?export=download&id={quote(file_id)}"


def folder_url(folder_id: str, base: str | None = None) -> str:
    """The public page of a folder (``hl=en``: messages in English, so they can be recognised)."""
    return f"{base or drive_url()}/drive/folders/{quote(folder_id)}?hl=en"


# --------------------------------------------------------------------------------------------------
# Pages


def html_page(path: Path) -> str | None:
    """The text of ``path`` if it is an HTML page instead of the expected binary file, else None."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF)
            if not _looks_like_html(head):
                return None
            rest = handle.read(_MAX_PAGE)
    except OSError:
        return None
    return (head + rest).decode("utf8", errors="replace")


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml"))


def page_title(page: str) -> str:
    match = _TITLE.search(page)
    title = html.unescape(match.group(1)).strip() if match else ""
    return " ".join(title.split())[:120] or "untitled"


def confirmation_url(page: str, page_url: str) -> str | None:
    """The link behind Drive's "can't scan this file for viruses" page, or None if it is not one."""
    form = _FORM.search(page)
    action_attr = _ACTION.search(form.group(1)) if form else None
    if form and action_attr:
        action = urljoin(page_url, html.unescape(action_attr.group(1)))
        params = {}
        for tag in _HIDDEN.findall(form.group(2)):
            attrs = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(tag)}
            if "name" in attrs:
                params[attrs["name"]] = attrs.get("value", "")
        return f"{action}?{urlencode(params)}" if params else action
    href = _CONFIRM_HREF.search(page)
    if href:
        return urljoin(page_url, html.unescape(href.group(1)))
    direct = _DOWNLOAD_URL.search(page)
    if direct:
        return direct.group(1).replace("\\u003d", "=").replace("\\u0026", "&")
    return None


def refusal(page: str, *, source: str, file: str) -> DownloadError:
    """The error for a Drive HTML page that is not a confirmation page."""
    caption = _ERROR_CAPTION.search(page)
    said = (
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", caption.group(1))).split())
        if caption
        else ""
    )
    if _QUOTA.search(page):
        return DownloadError(
            f"Google Drive refuses {file} ({source}): its download quota is exceeded"
            f"{f' ({said[:160]})' if said else ''}; try again in a few hours, or download it in a "
            "browser and import it with --from FILE"
        )
    if _ACCESS.search(page):
        return DownloadError(
            f"Google Drive asks to sign in for {file} ({source}): the file is not shared publicly "
            "or its id is wrong; check the id, or pin another with $GLAVIZ_REGISTRY"
        )
    return DownloadError(
        f"{source} answered with an HTML page ({page_title(page)!r}"
        f"{f': {said[:160]}' if said else ''}) instead of {file}; nothing was kept"
    )


# --------------------------------------------------------------------------------------------------
# Folder listing


@dataclass(frozen=True)
class DriveItem:
    """One entry of a public folder listing."""

    id: str
    name: str
    mime: str

    @property
    def is_folder(self) -> bool:
        return self.mime == FOLDER_MIME


def parse_folder(page: str) -> list[DriveItem]:
    """The items of a public folder page: the JSON array Drive embeds as ``window['_DRIVE_ivd']``.

    The second JavaScript string literal in the script that mentions ``_DRIVE_ivd`` holds the
    array, escaped; its first element lists ``[id, [parent], name, mime type, …]`` per item.
    """
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page, re.S | re.I):
        if "_DRIVE_ivd" not in script:
            continue
        strings = _JS_STRING.findall(script)
        if len(strings) < 2:
            break
        try:
            decoded = strings[1].encode("utf8").decode("unicode_escape")
            data = json.loads(decoded)
        except (UnicodeDecodeError, ValueError):
            break
        items = data[0] if isinstance(data, list) and data and data[0] else []
        out = []
        for item in items:
            if isinstance(item, list) and len(item) > 3:
                name = str(item[2]).encode("latin-1", errors="ignore").decode("utf8", "replace")
                out.append(DriveItem(id=str(item[0]), name=name, mime=str(item[3])))
        return out
    raise ValueError("no _DRIVE_ivd listing in the page")


def list_folder(
    folder_id: str,
    *,
    base: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    depth: int = 2,
) -> dict[str, str]:
    """``{file name: file id}`` of a public folder, descending ``depth`` levels into subfolders."""
    import tempfile

    url = folder_url(folder_id, base)
    with tempfile.TemporaryDirectory(prefix="glaviz-drive-") as tmp:
        page_file = Path(tmp) / "folder.html"
        try:
            download(url, page_file, policy=policy, user_agent=_BROWSER_AGENT)
        except DownloadError as exc:
            raise DownloadError(f"cannot list the Google Drive folder {url}: {exc}") from None
        page = page_file.read_text("utf8", errors="replace")
    try:
        items = parse_folder(page)
    except ValueError:
        if _QUOTA.search(page) or _ACCESS.search(page):
            raise refusal(page, source=url, file="the folder listing") from None
        raise DownloadError(
            f"the Google Drive folder page {url} holds no file listing ({page_title(page)!r}); "
            "the folder may no longer be public, or Drive changed its page"
        ) from None
    found: dict[str, str] = {}
    for item in items:
        if item.is_folder and depth > 0:
            for name, file_id in list_folder(
                item.id, base=base, policy=policy, depth=depth - 1
            ).items():
                found.setdefault(name, file_id)
        elif not item.is_folder:
            found.setdefault(item.name, item.id)
    return found


def find_file(
    name: str, folder_id: str, *, base: str | None = None, policy: RetryPolicy = DEFAULT_POLICY
) -> str:
    """The id of the file called ``name`` in the public folder; an error lists what is there."""
    files = list_folder(folder_id, base=base, policy=policy)
    if name in files:
        return files[name]
    listed = ", ".join(sorted(files)) or "nothing"
    raise DownloadError(
        f"the Google Drive folder {folder_url(folder_id, base)} has no file named {name} "
        f"(it lists {listed})"
    )


# --------------------------------------------------------------------------------------------------
# Download


def download_file(
    file_id: str,
    part: Path,
    *,
    file: str,
    base: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: bool = False,
) -> str:
    """Download one public Drive file into ``part``; return the URL that served it.

    A confirmation page is followed; any other HTML answer is deleted and raised as an error, so
    ``part`` holds the file itself or nothing at all (a dropped connection keeps it for resuming).
    """
    url = file_url(file_id, base)
    for _hop in range(_MAX_HOPS):
        try:
            download(url, part, policy=policy, progress=progress, label=file)
        except HTTPStatusError as exc:
            if exc.status in (401, 403, 404):
                raise DownloadError(
                    f"Google Drive answered HTTP {exc.status} for {file} ({url}): the file is not "
                    "public or its id is wrong; check the id, or pin another with $GLAVIZ_REGISTRY"
                ) from None
            raise
        page = html_page(part)
        if page is None:
            return url
        discard_partial(part)
        next_url = confirmation_url(page, url)
        if next_url is None:
            raise refusal(page, source=url, file=file)
        url = next_url
    raise DownloadError(f"Google Drive kept answering {file} with confirmation pages ({url})")
