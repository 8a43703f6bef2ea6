"""The digital twin of a chip: its device model exported to other simulators (``aihwkit``)."""
