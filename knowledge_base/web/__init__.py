"""Trainer pages of the web console: script library, editing with history and diff, hit test, gaps, feedback."""

from knowledge_base.web.pages import router

__all__ = ["router"]
