"""archlab: automated neural-architecture discovery."""

__version__ = "0.1.0"
