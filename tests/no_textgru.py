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


def run_script(script: str, args: list[str], env: dict[str, str], cwd, timeout: int = 300):
    """Run `script` (Python source) with `args` in a fresh interpreter from `cwd`; assert it succeeded.

    `cwd` must not be the repository root, where `textgru/` would be importable from the working directory.
    Returns the `CompletedProcess` (text stdout/stderr); the assertion shows the end of stderr.
    """
    import subprocess
    import sys
    from pathlib import Path

    path = Path(cwd) / "script.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, str(path), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result
