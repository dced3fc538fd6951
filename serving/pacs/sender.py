"""C-STORE (and C-ECHO) to a DICOM peer: results back to the PACS, studies to a receiver.

One association per call, proposing a presentation context per SOP class and transfer syntax
present: a compressed instance travels as it is (pynetdicom cannot transcode pixel data), an
uncompressed one in whichever uncompressed syntax the peer prefers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification

from serving.pacs.errors import PacsError

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # an association proposes at most 128 presentation contexts (PS3.8 9.3.2.2)
WARNING_STATUSES = {0xB000, 0xB006, 0xB007}  # stored, with coercion or discarded elements


def _peer(called_aet: str, host: str, port: int) -> str:
    return f"{called_aet}@{host}:{port}"


def send_instances(instances: Iterable[str | Path | Dataset], host: str, port: int, called_aet: str,
                   calling_aet: str = "CTSCREEN", timeout: float = 30.0) -> None:
    """Stores every instance (a DICOM file or a dataset with file meta) on the peer; a PacsError
    names the peer and each instance it did not store, after trying them all."""
    peer = _peer(called_aet, host, port)
    items = [(_name(item), item, *_sop_class_and_syntax(item, peer)) for item in instances]
    if not items:
        return
    contexts = _contexts({(sop_class, syntax) for _, _, sop_class, syntax in items})
    if len(contexts) > MAX_CONTEXTS:
        raise PacsError(f"{peer}: {len(contexts)} SOP class and transfer syntax pairs are more than one "
                        f"association can propose ({MAX_CONTEXTS}); send them in smaller batches")
    assoc = _associate(peer, host, port, called_aet, calling_aet, contexts, timeout)
    failures = []
    try:
        for number, (name, item, _, _) in enumerate(items, start=1):
            if not assoc.is_established:
                failures.append(f"{name}: the association ended before it was sent")
                continue
            try:
                status = assoc.send_c_store(item, msg_id=number % 65536)
            except (ValueError, AttributeError) as exc:  # no accepted context for it, or it cannot be encoded
                failures.append(f"{name}: {exc}")
                continue
            code = status.get("Status") if status else None
            if code is None:
                failures.append(f"{name}: no response (timeout or connection lost)")
            elif code in WARNING_STATUSES:
                log.warning("%s stored %s with warning status 0x%04X", peer, name, code)
            elif code != 0x0000:
                comment = status.get("ErrorComment")
                failures.append(f"{name}: status 0x{code:04X}" + (f" ({comment})" if comment else ""))
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise PacsError(f"{peer} did not store {len(failures)} of {len(items)} instances: {shown}")


def echo(host: str, port: int, called_aet: str, calling_aet: str = "CTSCREEN", timeout: float = 10.0) -> None:
    """A C-ECHO: the peer is up and accepts this calling AE title, or a PacsError says why not."""
    peer = _peer(called_aet, host, port)
    assoc = _associate(peer, host, port, called_aet, calling_aet, [build_context(Verification)], timeout)
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    code = status.get("Status") if status else None
    if code != 0x0000:
        raise PacsError(f"{peer}: C-ECHO failed ({'no response' if code is None else f'status 0x{code:04X}'})")


def _associate(peer: str, host: str, port: int, called_aet: str, calling_aet: str, contexts, timeout: float):
    ae = AE(calling_aet)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate(host, port, contexts=contexts, ae_title=called_aet)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        answer = assoc.acceptor.primitive
        raise PacsError(f"{peer} rejected the association from {calling_aet}: {answer.reason_str} ({answer.result_str})")
    if assoc.acceptor.primitive is not None and not assoc.accepted_contexts:
        raise PacsError(f"{peer} accepted none of the SOP classes and transfer syntaxes proposed")
    raise PacsError(f"{peer}: cannot associate (refused, unreachable or aborted)")


def _contexts(pairs: set[tuple[UID, UID]]):
    """A context per (SOP class, syntax); the uncompressed syntaxes of one SOP class share one."""
    proposed: dict[tuple[UID, UID | None], list[UID]] = {}
    for sop_class, syntax in sorted(pairs):
        if syntax.is_encapsulated:
            proposed[(sop_class, syntax)] = [syntax]
        else:
            syntaxes = proposed.setdefault((sop_class, None), [])
            syntaxes.extend(s for s in (syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian) if s not in syntaxes)
    return [build_context(sop_class, syntaxes) for (sop_class, _), syntaxes in proposed.items()]


def _sop_class_and_syntax(item: str | Path | Dataset, peer: str) -> tuple[UID, UID]:
    try:
        dataset = item if isinstance(item, Dataset) else pydicom.dcmread(item, stop_before_pixels=True)
        return UID(dataset.SOPClassUID), UID(dataset.file_meta.TransferSyntaxUID)
    except AttributeError as exc:
        raise PacsError(f"{_name(item)}: cannot be sent to {peer}: no SOPClassUID or file meta TransferSyntaxUID ({exc})") from None
    except Exception as exc:  # pydicom raises many types on unreadable files
        raise PacsError(f"{_name(item)}: cannot be sent to {peer}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None


def _name(item: str | Path | Dataset) -> str:
    if isinstance(item, Dataset):
        return f"instance {item.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    return str(item)
