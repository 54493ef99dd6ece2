"""The functional core: no I/O, time comes from the caller."""
