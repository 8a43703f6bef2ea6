"""Any VISA resource through pyvisa: pyvisa-py (``@py``) unless another library is named."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    CopyInto,
    ResourceError,
    TransportError,
)

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource, SerialInstrument


class VisaTransport(CopyInto):
    """Any VISA resource through pyvisa; pyvisa-py (``@py``) unless another library is named."""

    def __init__(self, resource: str, timeout_s: float, visa_library: str = "@py") -> None:
        import pyvisa
        import pyvisa.constants

        self.resource = resource
        self._pyvisa = pyvisa
        try:
            self._manager = pyvisa.ResourceManager(visa_library)
            # a message-based session (TCPIP SOCKET/INSTR, ASRL …), which pyvisa types as
            # the base Resource
            self._handle = cast(
                "MessageBasedResource",
                self._manager.open_resource(resource, open_timeout=int(timeout_s * 1000)),
            )
        except pyvisa.errors.VisaIOError as error:
            raise ChipDisconnectedError(f"cannot open {resource}: {error.description}") from error
        except (ValueError, OSError) as error:
            raise ResourceError(f"cannot open {resource}: {error}") from error
        self._handle.timeout = timeout_s * 1000
        self._handle.read_termination = "\n"
        self._handle.write_termination = ""
        self._handle.chunk_size = 1 << 20
        self._termchar_enabled = pyvisa.constants.ResourceAttribute.termchar_enabled
        if resource.upper().startswith("ASRL"):
            port = cast("SerialInstrument", self._handle)
            port.baud_rate = 115200
            port.end_input = pyvisa.constants.SerialTermination.termination_char

    def write(self, data: bytes) -> None:
        try:
            self._handle.write_raw(data)
        except Exception as error:
            raise self._translate(error) from error

    def read(self, exact: int | None) -> bytes:
        try:
            if exact is None:
                return self._handle.read_raw()
            # Inside a binary block LF is data: with the termination character enabled,
            # pyvisa-py ends every low-level read at each 0x0A byte of the block (and copies
            # the rest of its buffer each time), so a 256 KiB float32 block took thousands of
            # reads. Switch it off for the exact-count read.
            self._handle.set_visa_attribute(self._termchar_enabled, False)
            try:
                return self._handle.read_bytes(exact, break_on_termchar=False)
            finally:
                self._handle.set_visa_attribute(self._termchar_enabled, True)
        except Exception as error:
            raise self._translate(error) from error

    def clear(self) -> None:
        try:
            self._handle.flush(self._pyvisa.constants.BufferOperation.discard_read_buffer)
        except Exception:  # not every session type can flush; a clear is best effort
            pass

    def _translate(self, error: Exception) -> TransportError:
        constants = self._pyvisa.constants
        if isinstance(error, self._pyvisa.errors.VisaIOError):
            if error.error_code == constants.StatusCode.error_timeout and self._peer_closed():
                return ChipDisconnectedError(f"{self.resource}: the chip closed the connection")
            if error.error_code == constants.StatusCode.error_timeout:
                return ChipTimeoutError(
                    f"{self.resource}: no reply within {self._handle.timeout / 1000:g} s"
                )
            return ChipDisconnectedError(f"{self.resource}: {error.description}")
        if isinstance(error, (OSError, EOFError)):
            return ChipDisconnectedError(f"{self.resource}: {error}")
        if isinstance(error, self._pyvisa.errors.InvalidSession):
            return ChipDisconnectedError(f"{self.resource}: session closed")
        return TransportError(f"{self.resource}: {error}")

    def _peer_closed(self) -> bool:
        """True when a socket session's peer has closed (pyvisa-py reports that as a
        timeout). Looks at pyvisa-py's socket; False wherever that is not available."""
        import socket

        try:
            session = self._handle.visalib.sessions[self._handle.session]  # type: ignore[attr-defined]  # pyvisa-py's
            sock = session.interface
            return (
                isinstance(sock, socket.socket)
                and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            )
        except BlockingIOError:
            return False
        except (AttributeError, KeyError, TypeError, OSError):
            return False

    def close(self) -> None:
        # Only the session: pyvisa shares one ResourceManager per library, and closing it
        # would close every other open session too.
        try:
            self._handle.close()
        except Exception:
            pass
