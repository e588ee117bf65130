"""Automation: rules that act on ticket events and on business time, and macros for agents.

Rules are data (``schema``), run by the engine as a lifecycle subscriber (``engine``) and by
the worker every minute (``timed``); ``preview`` and ``record`` explain what they did.
"""
