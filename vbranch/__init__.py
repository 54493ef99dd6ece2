"""vbranch: an open virtual bank branch."""

__version__ = "0.1.0"
