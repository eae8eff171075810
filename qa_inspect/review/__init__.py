"""Human review of scored calls: the SQLite review store, calibration, training export and script links."""

from qa_inspect.review.store import ReviewError, ReviewStore

__all__ = ["ReviewError", "ReviewStore"]
