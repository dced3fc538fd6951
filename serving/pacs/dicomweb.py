"""A DICOMweb client for the PACS (or the edge's own Orthanc): QIDO-RS to find studies, WADO-RS to
fetch one, STOW-RS to store results.

Every failure an operator can meet (refused connection, wrong credentials, a server error, a
malformed answer) is a PacsError naming the URL and the HTTP status; the URL never carries
credentials (they are refused there) and query strings, which may hold patient data, are left out
of messages. A search that matches nothing is an empty list; retrieving a study the server does not
have is a PacsError, as for any retrieval that fails.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx
import pydicom
from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat, DSdecimal, IS, PersonName

from ctscreen.errors import OutputError
from ctscreen.imaging.dicom_files import is_dicom_file
from serving.pacs.errors import PacsError
from serving.pacs.receiver import safe_uid

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
CHUNK = 1 << 20


class DicomWebClient:
    def __init__(self, url: str, auth: tuple[str, str] | None = None, timeout: float = 60.0):
        base = httpx.URL(url)
        if base.userinfo:
            raise ValueError("give the DICOMweb credentials as auth, not inside the URL")
        self.url = str(base).rstrip("/")
        self.timeout = timeout
        self._client = httpx.Client(base_url=self.url + "/", auth=auth, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def studies(self, **filters: str | int | list[str]) -> list[dict]:
        """QIDO-RS: the studies matching ``filters`` (DICOM keywords, or QIDO's ``limit``,
        ``offset``, ``includefield``), each a dict keyword -> value (numbers as numbers,
        multi-valued attributes such as ModalitiesInStudy as lists, others as DICOM strings)."""
        return self._search("/studies", filters)

    def series(self, study_uid: str, **filters: str | int | list[str]) -> list[dict]:
        return self._search(f"/studies/{_uid(study_uid)}/series", filters)

    def retrieve_study(self, study_uid: str, dest_dir: str | Path) -> list[Path]:
        """WADO-RS: every instance of the study as ``dest_dir/<SOPInstanceUID>.dcm``, in the
        transfer syntax the server holds it in. Nothing is renamed into place unless the whole
        response arrived and parsed."""
        path = f"/studies/{_uid(study_uid)}"
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        request = self._client.build_request("GET", path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax=*"})
        response = self._send(request, stream=True)
        splitter = None
        try:
            boundary = _boundary(response, self._where(request))
            splitter = _MultipartFiles(boundary, dest_dir, self._where(request))
            for chunk in response.iter_bytes(CHUNK):
                splitter.feed(chunk)
            splitter.finish()
            return splitter.place()
        except httpx.HTTPError as exc:
            raise PacsError(f"{self._where(request)}: the response broke off ({type(exc).__name__}: {exc})") from None
        except OSError as exc:
            raise OutputError(dest_dir, f"cannot write the retrieved study there ({exc.strerror})") from None
        finally:
            response.close()
            if splitter is not None:
                splitter.discard()

    def store(self, instances: Iterable[str | Path | Dataset]) -> None:
        """STOW-RS: stores DICOM files or datasets (with file meta); a PacsError names each
        instance the server reports failed, or did not acknowledge."""
        parts = [_Part.of(item) for item in instances]
        if not parts:
            return
        boundary = f"ctscreen-{secrets.token_hex(16)}"
        heads = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() for _ in parts]
        tail = f"--{boundary}--\r\n".encode()
        length = sum(len(head) + part.size + 2 for head, part in zip(heads, parts)) + len(tail)

        def body() -> Iterator[bytes]:
            for head, part in zip(heads, parts):
                yield head
                yield from part.chunks()
                yield b"\r\n"
            yield tail

        request = self._client.build_request("POST", "/studies", content=body(), headers={
            "Content-Type": f"{MULTIPART_DICOM}; boundary={boundary}", "Content-Length": str(length), "Accept": DICOM_JSON})
        response = self._send(request, ok=(200, 202, 409))
        where = self._where(request)
        try:
            answer = Dataset.from_json(response.json())
        except Exception as exc:  # not JSON, or not DICOM JSON
            raise PacsError(f"{where}: HTTP {response.status_code} with an unreadable STOW response ({type(exc).__name__})") from None
        failed = {str(item.get("ReferencedSOPInstanceUID", "?")): f"failure reason 0x{int(item.get('FailureReason', 0)):04X}"
                  for item in answer.get("FailedSOPSequence", [])}
        stored = {str(item.get("ReferencedSOPInstanceUID")) for item in answer.get("ReferencedSOPSequence", [])}
        failed |= {part.sop_uid: "not acknowledged" for part in parts if part.sop_uid not in stored and part.sop_uid not in failed}
        if failed:
            listed = ", ".join(f"{uid} ({reason})" for uid, reason in list(failed.items())[:10])
            raise PacsError(f"{where}: HTTP {response.status_code}, {len(failed)} of {len(parts)} instances not stored: "
                            f"{listed}{' ...' if len(failed) > 10 else ''}")

    def _search(self, path: str, filters: dict) -> list[dict]:
        params = [(key, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
                  for key, value in filters.items()]
        request = self._client.build_request("GET", path, params=params, headers={"Accept": DICOM_JSON})
        response = self._send(request, ok=(200, 204))
        if response.status_code == 204 or not response.content.strip():
            return []
        try:
            return [plain(Dataset.from_json(item)) for item in response.json()]
        except Exception as exc:  # not JSON, or not DICOM JSON
            raise PacsError(f"{self._where(request)}: unreadable QIDO response ({type(exc).__name__})") from None

    def _send(self, request: httpx.Request, ok: tuple[int, ...] = (200,), stream: bool = False) -> httpx.Response:
        where = self._where(request)
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise PacsError(f"{where}: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise PacsError(f"{where}: {type(exc).__name__}: {exc}") from None
        if response.status_code in ok:
            return response
        detail = _detail(response)
        response.close()
        meaning = {401: "credentials refused", 403: "not permitted", 404: "not found"}.get(response.status_code)
        raise PacsError(f"{where}: HTTP {response.status_code}" + (f", {meaning}" if meaning else "")
                        + (f": {detail}" if detail else ""))

    @staticmethod
    def _where(request: httpx.Request) -> str:
        return f"{request.method} {request.url.copy_with(query=None)}"


def plain(dataset: Dataset) -> dict:
    """A DICOM JSON object as keyword -> Python value (private and unknown tags left out)."""
    return {element.keyword: _value(element) for element in dataset if element.keyword}


def _value(element):
    if element.VR == "SQ":
        return [plain(item) for item in element.value]
    values = element.value if element.VM > 1 else ([] if element.VM == 0 else [element.value])
    values = [_scalar(v) for v in values]
    if dictionary_VM(element.tag) != "1" or len(values) > 1:
        return values
    return values[0] if values else None


def _scalar(value):
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, (DSfloat, DSdecimal)):
        return float(value)
    if isinstance(value, PersonName):
        return str(value)
    return value


def _uid(uid: str) -> str:
    if not safe_uid(uid):
        raise ValueError(f"not a DICOM UID: {uid!r}")
    return uid


def _detail(response: httpx.Response) -> str:
    """A short reason from an error response: Orthanc's JSON Details/Message, or the start of the text."""
    try:
        response.read()
        body = response.json()
    except Exception:  # not JSON: plain text is shown, anything else left out
        body = response.text if response.headers.get("content-type", "").startswith("text/plain") else ""
    if isinstance(body, dict):
        body = body.get("Details") or body.get("Message") or ""
    return " ".join(str(body).split())[:200]


def _boundary(response: httpx.Response, where: str) -> bytes:
    header = Message()
    header["content-type"] = response.headers.get("content-type", "")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/related" or not isinstance(boundary, str) or not boundary:
        raise PacsError(f"{where}: expected a multipart/related response with a boundary, got "
                        f"{response.headers.get('content-type')!r}")
    return boundary.encode()


class _MultipartFiles:
    """A multipart body (RFC 2046) fed in chunks of any size, each part's body streamed to a
    temporary file in ``folder`` (a study may be larger than memory)."""

    MAX_HEADERS = 64 * 1024

    def __init__(self, boundary: bytes, folder: Path, where: str):
        self.delimiter = b"\r\n--" + boundary
        self.buffer = b"\r\n"  # the first delimiter may open the body with no line break before it
        self.state = "preamble"
        self.folder, self.where = folder, where
        self.parts: list[Path] = []
        self.current = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while self._step():
            pass

    def finish(self) -> None:
        if self.state != "end":
            raise PacsError(f"{self.where}: malformed multipart response (it ends {self._where_it_ends()})")

    def place(self) -> list[Path]:
        """Each part, once read as DICOM, renamed to ``<SOPInstanceUID>.dcm``."""
        named = []
        for number, part in enumerate(self.parts, start=1):
            try:
                uid = pydicom.dcmread(part, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID")
            except Exception as exc:  # pydicom raises many types on what is not DICOM
                raise PacsError(f"{self.where}: part {number} is not a DICOM file ({type(exc).__name__})") from None
            if not safe_uid(uid):
                raise PacsError(f"{self.where}: part {number} has no usable SOPInstanceUID ({uid!r})")
            named.append((part, self.folder / f"{uid}.dcm"))
        for part, target in named:
            os.replace(part, target)
        self.parts = []
        return [target for _, target in named]

    def discard(self) -> None:
        if self.current is not None:
            self.current.close()
        for part in self.parts:
            part.unlink(missing_ok=True)

    def _step(self) -> bool:
        """Consumes what it can of the buffer; False once it needs more data."""
        if self.state in ("preamble", "body"):
            found = self.buffer.find(self.delimiter)
            if found < 0:
                keep = min(len(self.buffer), len(self.delimiter) - 1)  # a delimiter may straddle two chunks
                self._body(self.buffer[:len(self.buffer) - keep])
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return False
            self._body(self.buffer[:found])
            if self.current is not None:
                self.current.close()
                self.current = None
            self.buffer = self.buffer[found + len(self.delimiter):]
            self.state = "delimiter"
            return True
        if self.state == "delimiter":
            if self.buffer.startswith(b"--"):
                self.state, self.buffer = "end", b""
                return False
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                if len(self.buffer) > 1024:
                    raise PacsError(f"{self.where}: malformed multipart response (no line break after a boundary)")
                return False
            if self.buffer[:line_end].strip(b" \t"):
                raise PacsError(f"{self.where}: malformed multipart response (text after a boundary)")
            self.buffer, self.state = self.buffer[line_end + 2:], "headers"
            return True
        if self.state == "headers":
            if self.buffer.startswith(b"\r\n"):
                headers, self.buffer = b"", self.buffer[2:]
            else:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > self.MAX_HEADERS:
                        raise PacsError(f"{self.where}: malformed multipart response (part headers never end)")
                    return False
                headers, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            part_headers = BytesHeaderParser().parsebytes(headers)
            if "content-type" in part_headers and part_headers.get_content_type() != "application/dicom":
                raise PacsError(f"{self.where}: part {len(self.parts) + 1} is {part_headers.get_content_type()}, not application/dicom")
            fd, name = tempfile.mkstemp(dir=self.folder, prefix=".wado-", suffix=".partial")
            self.current = os.fdopen(fd, "wb")
            self.parts.append(Path(name))
            self.state = "body"
            return True
        self.buffer = b""  # the epilogue, after the closing delimiter, is ignored
        return False

    def _body(self, data: bytes) -> None:
        if self.current is not None and data:
            self.current.write(data)

    def _where_it_ends(self) -> str:
        return {"preamble": "before any part", "body": f"inside part {len(self.parts)}"}.get(self.state, "inside part headers")


class _Part:
    """One instance to STOW: a file streamed from disk, or a dataset encoded in memory."""

    def __init__(self, sop_uid: str, size: int, path: Path | None = None, data: bytes | None = None):
        self.sop_uid, self.size, self.path, self.data = sop_uid, size, path, data

    @classmethod
    def of(cls, item: str | Path | Dataset) -> _Part:
        if isinstance(item, Dataset):
            buffer = io.BytesIO()
            try:
                pydicom.dcmwrite(buffer, item, enforce_file_format=True)
            except Exception as exc:  # no file meta, or a value pydicom cannot encode
                raise PacsError(f"instance {item.get('SOPInstanceUID', '?')}: cannot be encoded for STOW ({type(exc).__name__}: {exc})") from None
            return cls(str(item.get("SOPInstanceUID")), len(buffer.getvalue()), data=buffer.getvalue())
        path = Path(item)
        try:
            if not is_dicom_file(path):
                raise PacsError(f"{path}: not a DICOM file (no DICM header); STOW sends DICOM files only")
            uid = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID")
            size = path.stat().st_size
        except OSError as exc:
            raise PacsError(f"{path}: cannot read it ({exc.strerror})") from None
        except PacsError:
            raise
        except Exception as exc:  # pydicom raises many types on a corrupt file
            raise PacsError(f"{path}: corrupt DICOM file ({type(exc).__name__})") from None
        return cls(str(uid), size, path=path)

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        with open(self.path, "rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk
