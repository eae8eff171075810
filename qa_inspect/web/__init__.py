"""QA pages of the web console: upload and score jobs, results, call pages, verdicts, appeals, reports."""

from qa_inspect.web.pages import router

__all__ = ["router"]
