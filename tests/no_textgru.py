"""The opening lines of every subprocess script that must run as on a machine without textgru installed."""

PREAMBLE = """
import json, sys
sys.modules["textgru"] = None  # textgru is "not installed" in this process
try:
    import textgru  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("textgru is still importable: the test would prove nothing")
"""
