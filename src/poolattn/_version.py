"""The package version, in a leaf module so any module can name it without importing the root."""

__version__ = "0.1.0"
