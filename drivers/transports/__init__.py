"""Transports: bytes to and from an instrument, picked by the resource string.

- ``TCPIP0::host::port::SOCKET``: a plain TCP socket, or pyvisa when a VISA library is named;
- ``ASRL…::INSTR`` and any other VISA resource: pyvisa (pyvisa-py unless told otherwise);
- ``serial:/dev/ttyUSB0[?baud=N]``, ``/dev/…``, ``COMn``, pyserial URLs: pyserial;
- ``replay:PATH`` (``?order=queries``, ``?partial=1``): a recorded cassette played back as the
  chip (``replay``); ``PcmChip.open(…, record=PATH)`` records one (``recording``);
- ``<scheme>`` or ``<scheme>?…`` for a registered scheme: the transport its owner opens. The
  emulator registers ``emulator`` (the in-process emulated chip) through the entry point
  group ``pcm_hil.transports``, so the drivers import nothing of it; ``register_scheme`` adds
  one at run time (a test double, a recorder).

A transport writes bytes and reads either "up to and including the next LF" (``exact=None``)
or an exact count (inside a binary block, where LF is data); the contract and its errors are
``pcm_hil.protocols.transport``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    ResourceError,
    Transport,
    TransportError,
)

__all__ = [
    "ChipDisconnectedError",
    "ChipTimeoutError",
    "ResourceError",
    "Transport",
    "TransportError",
    "open_transport",
    "register_scheme",
]

#: The entry-point group where packages register transports by scheme name.
ENTRY_POINTS = "pcm_hil.transports"

_VISA = re.compile(r"^(TCPIP\d*|ASRL|GPIB\d*|USB\d*|VXI\d*|PXI\d*|VICP\d*)", re.IGNORECASE)
_SERIAL_URL = re.compile(r"^(socket|rfc2217|loop|spy|alt|hwgrep)://", re.IGNORECASE)

Opener = Callable[[str, float], Transport]
_schemes: dict[str, Opener | None] = {}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Open resources ``scheme`` and ``scheme?…`` with ``opener(resource, timeout_s)``."""
    _schemes[scheme] = opener


def _opener(scheme: str) -> Opener | None:
    """The opener of ``scheme``: registered at run time, or by an entry point (looked up
    once; a scheme nobody registers is remembered as None)."""
    if scheme not in _schemes:
        from importlib.metadata import entry_points

        found = entry_points(group=ENTRY_POINTS, name=scheme)
        opener = None
        for entry in found:
            try:
                opener = entry.load()
            except Exception as error:  # a broken or stale install: say which, in one line
                raise ResourceError(
                    f"the transport {scheme!r} registered by {entry.value} cannot be loaded: "
                    f"{type(error).__name__}: {error} (reinstall pcm-hil?)"
                ) from error
            break
        _schemes[scheme] = opener
    return _schemes[scheme]


def open_transport(
    resource: str, timeout_s: float = 10.0, visa_library: str | None = None
) -> Transport:
    """Open the transport a resource string names.

    ``visa_library`` picks the VISA implementation for VISA resources (``"@py"`` for
    pyvisa-py, or the path of a vendor library). Left at None, ``TCPIP::host::port::SOCKET``
    resources use a plain socket — the same bytes as pyvisa-py's socket session, a third of
    its per-call overhead — and other VISA resources use pyvisa-py.
    """
    text = resource.strip()
    if text.startswith("replay:"):  # a recorded session played back as the chip
        from pcm_hil.drivers.transports.replay import open_replay

        return open_replay(text, timeout_s)
    scheme = text.partition("?")[0]
    if re.fullmatch(r"[a-z][a-z0-9_]*", scheme) and scheme != "serial":
        opener = _opener(scheme)
        if opener is not None:
            return opener(text, timeout_s)
    from pcm_hil.drivers.transports.tcp import SocketTransport, parse_port

    address = SocketTransport.match(text)  # its port checked, whichever transport opens it
    if address is not None and visa_library is None:  # pyvisa-py would wrap a plain socket
        return SocketTransport(text, *address, timeout_s)
    if _VISA.match(text):
        from pcm_hil.drivers.transports.visa import VisaTransport

        return VisaTransport(text, timeout_s, visa_library or "@py")
    if (
        text.startswith("serial:")
        or text.startswith("/dev/")
        or re.match(r"^COM\d+", text)
        or _SERIAL_URL.match(text)
    ):
        from pcm_hil.drivers.transports.serial_port import SerialTransport

        port, _sep, query = text.removeprefix("serial:").partition("?")
        if re.match(r"^(socket|rfc2217)://", port, re.IGNORECASE):  # pyserial's TCP URLs
            parse_port(urlsplit(port).netloc.rpartition(":")[2], resource)
        options = dict(parse_qsl(query))
        try:
            baud = int(options.pop("baud", 115200))
        except ValueError as error:
            raise ResourceError(f"bad baud rate in {resource!r}") from error
        if options:
            raise ResourceError(f"unknown serial option(s) {sorted(options)} in {resource!r}")
        return SerialTransport(text, port, baud, timeout_s)
    raise ResourceError(
        f"cannot tell the transport of {resource!r}: use 'emulator', a VISA resource "
        "(TCPIP0::host::port::SOCKET, ASRL/dev/…::INSTR) or serial:/dev/…"
    )
