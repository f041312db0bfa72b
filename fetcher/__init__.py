"""fetcher: fetch lists of URLs concurrently, one honest record per URL."""

__version__ = "0.1.0"
