"""Build and load textgru's C kernels: `int8_gru.c` for the native int8 inference path (`textgru.native`, `load`)
and `gru_train.c` for the fp32 GRU recurrence of a training step (`load_training`, used by
`textgru.modeling_textgru._StepwiseGRU`).

The sources ship with textgru; each shared library is compiled at first use with the machine's C compiler
(`$CC`, else `cc`, `gcc` or `clang`) for this CPU (`-O3 -march=native`), then cached under
`$TEXTGRU_CACHE` (default `~/.cache/textgru/kernels`), keyed by the source, the flags, the compiler and the CPU, so
a cache shared between machines never hands one CPU another's build; a new build deletes the same source's builds
unused for `STALE_DAYS` days. Nothing is compiled at install time, and
nothing in textgru needs a compiler: without one, inference takes another format and training the PyTorch loop.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_gru.c")
TRAINING_SOURCE = Path(__file__).with_name("gru_train.c")
# -ffast-math for the compile step only: linked with it, gcc (before 13) adds crtfastmath.o, which sets the CPU's
# flush-to-zero and denormals-are-zero modes when the library loads, for the whole process (torch, numpy and all)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
_TUNING = ["-march=native", "-mprefer-vector-width=512"] if _X86 else ["-mcpu=native"]
# per source: the floating-point flag of its compile step, and the libraries to link it with (tried in order)
_RECIPES = {
    SOURCE: ("-ffast-math", (["-lmvec", "-lm"], ["-lm"])),  # libmvec: glibc's vector expf
    # the training recurrence keeps IEEE arithmetic (its vector code is written out; FMA contraction is the default)
    TRAINING_SOURCE: ("-fno-math-errno", (["-lpthread"], [])),
}
_LINK_FLAGS = ["-shared"] + (["-Wl,--no-undefined"] if platform.system() == "Linux" else [])
_RECIPE = "compile, then link without -ffast-math"  # part of the cache key: a change of recipe rebuilds
_LOCK = threading.Lock()
_LOADED: dict[tuple[Path, str], ctypes.CDLL] = {}


class KernelUnavailableError(RuntimeError):
    """The native kernels cannot be built on this machine (no C compiler, or the build failed)."""


def _cache_dir() -> Path:
    root = (
        os.environ.get("TEXTGRU_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "textgru"
    )
    return Path(root) / "kernels"


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise KernelUnavailableError(
        "textgru's native kernels (int8 inference, the training recurrence) compile a small C library at first use "
        "and found no C compiler ($CC, cc, gcc or clang). Install one (e.g. `apt install gcc`, "
        "`xcode-select --install`); without one, use the onnx-int8 format for fast inference (`textgru export "
        "MODEL_DIR OUT --format onnx-int8`), and training runs its PyTorch loop."
    )


def _cpu_signature() -> str:
    try:  # the flags line names the instruction sets -march=native builds for
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()}|{platform.processor()}|{flags}"


# "avx2" also keeps the compiler from AVX-512 elsewhere, so it runs (and measures) as on an AVX2-only CPU
VARIANTS = {"best": [], "avx2": ["-DTEXTGRU_NO_AVX512", "-mno-avx512f"], "generic": ["-DTEXTGRU_GENERIC"]}
ISA_NAMES = {2: "AVX512-VNNI", 1: "AVX2", 0: "plain C"}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as err:
        raise KernelUnavailableError(f"The C compiler took over 10 minutes ({' '.join(cmd)}); giving up.") from err


def _build(variant: str, source: Path = SOURCE) -> Path:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown kernel variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    cc = _compiler()
    math, libraries = _RECIPES[source]
    flags = ["-O3", *_TUNING, math, "-fPIC", *VARIANTS[variant]]
    portable = ["-O3", math, "-fPIC", *VARIANTS[variant]]  # where a compiler rejects the tuning flags
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailableError(f"Could not run the C compiler {cc} ({err}).") from err
    signature = [_RECIPE, source.read_text(), *flags, *_LINK_FLAGS, version, _cpu_signature()]
    key = hashlib.sha256("\0".join(signature).encode()).hexdigest()
    target = _cache_dir() / f"{source.stem}-{key[:20]}.so"
    if target.is_file():
        try:
            os.utime(target)  # in use: kept by `_prune_stale`
        except OSError:  # a read-only cache
            pass
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Compiling textgru's %s kernels with %s (once per machine; a few seconds).", source.stem, cc)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built, obj = Path(tmp) / target.name, Path(tmp) / f"{source.stem}.o"
        errors = ""
        for compile_flags in (flags, portable):
            done = _run([cc, *compile_flags, "-c", "-o", str(obj), str(source)])
            if done.returncode == 0:
                break
            errors = done.stderr
        for libs in libraries if done.returncode == 0 else ():
            done = _run([cc, *_LINK_FLAGS, "-o", str(built), str(obj), *libs])
            if done.returncode == 0:
                try:
                    ctypes.CDLL(str(built))  # loads here (no missing symbol) before anyone else can pick it up
                except OSError as err:
                    errors = str(err)
                    continue
                os.replace(built, target)  # atomic: a concurrent build or reader never sees half a file
                _prune_stale(target)
                return target
            errors = done.stderr
        raise KernelUnavailableError(
            f"Compiling {source.name} with {cc} failed:\n{errors[-2000:]}\nUse the onnx-int8 format instead "
            "(`textgru export MODEL_DIR OUT --format onnx-int8`), or report the error with your compiler version."
        )


STALE_DAYS = 30


def _prune_stale(keep: Path) -> None:
    """Delete this source's other builds in the cache that no process has used for `STALE_DAYS` days (each source
    or compiler change leaves one behind; a build in use has its time stamp renewed whenever it is looked up, and
    a process that has one loaded keeps it mapped even if it goes)."""
    cutoff = time.time() - STALE_DAYS * 86400
    for path in keep.parent.glob(keep.name.rsplit("-", 1)[0] + "-*.so"):
        try:
            if path != keep and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # gone already, or not ours to delete
            pass


def _open(variant: str, source: Path, signatures: dict, hint: str) -> tuple[ctypes.CDLL, bool]:
    """The library built from `source` for `variant` (built and loaded once per process) with its functions'
    ctypes `signatures` ({name: (restype, argtypes)}); the flag is True on the call that loaded it."""
    with _LOCK:
        if (source, variant) in _LOADED:
            return _LOADED[source, variant], False
        path = _build(variant, source)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as err:  # e.g. a cache on a noexec mount
            raise KernelUnavailableError(
                f"Could not load the compiled kernels {path} ({err}). Point $TEXTGRU_CACHE at a folder that "
                f"allows executables{hint}."
            ) from err
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        _LOADED[source, variant] = lib
        return lib, True


_P, _I, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
_INT8_SIGNATURES = {
    "textgru_kernel_isa": (_I, []),
    "textgru_qgemm": (None, [_P, _I, _P, _I, _P, _I, _I, _P, _P, _P, _P, _I]),
    "textgru_layer_norm": (None, [_P, _I, _I, _I, _P, _P, _F, _P, _I]),
    "textgru_quantize_rows": (None, [_P, _I, _I, _I, _P, _P, _F, _P, _I, _P, _P]),
    "textgru_gru_direction": (
        None,
        [_P, _I, _P, _P, _P, _I, _P, _I, _I, _I, _P, _P, _P, _I, _P, _I, _I, _P, _P, _P, _P],
    ),
    "textgru_attention_pool": (None, [_P, _I, _P, _I, _I, _P, _I, _P, _P, _I, _P, _P, _P]),
}
_TRAINING_SIGNATURES = {
    "textgru_train_vector_width": (_I, []),
    "textgru_gru_train_forward": (_I, [_I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _I]),
    "textgru_gru_train_backward": (_I, [_I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _I]),
    "textgru_train_gemm": (None, [_I, _I, _I, _P, _I, _P, _I, _P, _I, _I]),
}


def load(variant: str = "best") -> ctypes.CDLL:
    """The compiled int8 kernels (built on first use, then cached).

    Args:
        variant: `"best"`: the fastest product code the CPU supports (AVX512-VNNI, else AVX2, else plain C);
            `"avx2"` or `"generic"` force a lesser one (to test it, or to compare). `textgru_kernel_isa()` on the
            result says which one a build runs (2, 1, 0; see `ISA_NAMES`).
    """
    lib, first = _open(variant, SOURCE, _INT8_SIGNATURES, ", or use the onnx-int8 format")
    if first and variant == "best" and lib.textgru_kernel_isa() == 0:
        logger.warning(
            "This CPU has neither AVX512-VNNI nor AVX2: textgru's native int8 kernels run as plain C loops, "
            "which can be slower than eager PyTorch. The onnx-int8 format may serve you better here."
        )
    return lib


def load_training(variant: str = "best") -> ctypes.CDLL:
    """The compiled fp32 training recurrence (`gru_train.c`; built on first use, then cached).

    `variant` as in `load`; `textgru_train_vector_width()` on the result gives the lanes its vector code uses (16
    with AVX-512, 8 with AVX, 4 otherwise).
    """
    return _open(variant, TRAINING_SOURCE, _TRAINING_SIGNATURES, "")[0]


__all__ = ["ISA_NAMES", "KernelUnavailableError", "SOURCE", "TRAINING_SOURCE", "VARIANTS", "load", "load_training"]
