"""rsretrieve: text-to-remote-sensing-image retrieval benchmarks beyond RGB."""

__version__ = "0.1.0"
