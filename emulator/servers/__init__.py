"""Where an emulated instrument is served: over TCP (``tcp``), on a pseudo-terminal (``pty``),
or in the host's own process (``inprocess``, the driver's ``emulator`` resource)."""
