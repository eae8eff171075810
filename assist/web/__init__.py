"""Agent panel of the web console"""

from assist.web.pages import router

__all__ = ["router"]
