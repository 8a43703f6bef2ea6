"""A raw serial port (or pyserial URL) through pyserial, for boards without VISA."""

from __future__ import annotations

from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    CopyInto,
)


class SerialTransport(CopyInto):
    """A raw serial port (or pyserial URL) through pyserial, for boards without VISA."""

    def __init__(self, resource: str, port: str, baud: int, timeout_s: float) -> None:
        import serial

        self.resource = resource
        self._serial_module = serial
        try:
            self._port = serial.serial_for_url(
                port, baudrate=baud, timeout=timeout_s, write_timeout=timeout_s
            )
        except (serial.SerialException, ValueError) as error:
            raise ChipDisconnectedError(f"cannot open {port}: {error}") from error
        self.timeout_s = timeout_s

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._serial_module.SerialTimeoutException as error:
            raise ChipTimeoutError(f"{self.resource}: write timed out") from error
        except (self._serial_module.SerialException, OSError) as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def read(self, exact: int | None) -> bytes:
        try:
            if exact is None:
                data = self._port.read_until(b"\n")
                if not data.endswith(b"\n"):
                    raise ChipTimeoutError(
                        f"{self.resource}: no complete reply within {self.timeout_s:g} s"
                    )
                return data
            data = self._port.read(exact)
            if len(data) < exact:
                raise ChipTimeoutError(
                    f"{self.resource}: {len(data)} of {exact} bytes within {self.timeout_s:g} s"
                )
            return data
        except (self._serial_module.SerialException, OSError) as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def clear(self) -> None:
        try:
            self._port.reset_input_buffer()
        except (self._serial_module.SerialException, OSError):
            pass

    def close(self) -> None:
        try:
            self._port.close()
        except Exception:
            pass
