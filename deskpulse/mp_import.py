"""Import MediaPipe's legacy pose solution without the rest of MediaPipe.

`import mediapipe` runs package `__init__`s that load every legacy solution, the whole
Tasks API and, through `solutions.drawing_utils`, `matplotlib.pyplot`: about 380 modules,
30 MB of resident memory and 0.5-1.5 s of start-up on the development machine, none of
which pose estimation uses. `load_pose_solution()` imports
`mediapipe.python.solutions.pose` with only the modules that file itself imports, and
patches none of MediaPipe's files:

- the two package `__init__`s that fan out (`mediapipe` and `mediapipe.python.solutions`)
  are not run; their package modules are made from their real specs, so every submodule
  (`mediapipe.framework...`, `mediapipe.tasks...`) still imports from the real files;
- the first time anything asks one of them for an attribute it lacks (`mediapipe.solutions`,
  `mediapipe.__version__`...), its real `__init__` runs right then, so code that wants all
  of MediaPipe still gets it; only `from mediapipe.python.solutions import <submodule>`
  (which pose.py itself does) loads just that submodule;
- if the light import fails (a MediaPipe laid out differently), the ordinary import runs
  with a stand-in for matplotlib present only for the duration of the import (pose never
  plots), and if that fails too, the plain import, whose error the caller reports.

This module owns nothing else: which solution to build and how is pose.py's job.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

POSE = "mediapipe.python.solutions.pose"
# The packages whose __init__ imports far more than pose needs, outermost first, and whether
# a submodule asked of it may load on its own: `mediapipe`'s __init__ rebinds names
# (mediapipe.tasks is mediapipe.tasks.python there), so anything asked of it completes it.
FAN_OUT_PACKAGES = {"mediapipe": False, "mediapipe.python.solutions": True}
MATPLOTLIB = ("matplotlib", "matplotlib.pyplot")
# Dunder names that mean "the package's contents": asking for them completes the package.
_CONTENT_DUNDERS = ("__version__", "__all__")


def load_pose_solution() -> ModuleType:
    """`mediapipe.python.solutions.pose`, imported as lightly as this MediaPipe allows.

    Raises ImportError (like a plain import) when MediaPipe is missing or broken.
    """
    loaded = sys.modules.get(POSE)
    if loaded is not None:
        return loaded
    if "mediapipe" not in sys.modules:
        placed: list[ModuleType] = []
        try:
            for name, submodules in FAN_OUT_PACKAGES.items():
                placed.append(_deferred_package(name, submodules))
            module = importlib.import_module(POSE)
            log.debug("imported %s without mediapipe's package-wide imports", POSE)
            return module
        except Exception as exc:  # noqa: BLE001 - any failure here means: do it the ordinary way
            _forget(POSE)
            for package in reversed(placed):
                _remove(package)
            log.debug("light import of %s failed (%r); using the ordinary import", POSE, exc)
    with _stand_in_matplotlib():
        return importlib.import_module(POSE)


def _deferred_package(name: str, submodules: bool) -> ModuleType:
    """The package `name` in sys.modules with its __init__ not yet run (run on first need)."""
    if name in sys.modules:
        raise ImportError(f"{name} is already imported")
    spec = importlib.util.find_spec(name)  # imports the parents (placed before), not `name`
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not a package here")
    package = importlib.util.module_from_spec(spec)
    package.__getattr__ = _completer(package, submodules)  # type: ignore[attr-defined]  # PEP 562
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
    return package


def _completer(package: ModuleType, submodules: bool) -> Callable[[str], Any]:
    """A module __getattr__ that runs the package's real __init__ the first time it is needed."""

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__") and attr not in _CONTENT_DUNDERS:
            raise AttributeError(f"module {package.__name__!r} has no attribute {attr!r}")
        sub = f"{package.__name__}.{attr}"
        if submodules and _is_module(sub):  # `from package import submodule` asks hasattr() first
            return importlib.import_module(sub)
        complete(package)
        try:
            return package.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {package.__name__!r} has no attribute {attr!r}") from None

    return __getattr__


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def complete(package: ModuleType) -> None:
    """Run a deferred package's own __init__ now (its deferred subpackages first), once."""
    if package.__dict__.pop("__getattr__", None) is None:
        return  # not deferred, or already completed
    prefix = package.__name__ + "."
    for name in FAN_OUT_PACKAGES:  # e.g. mediapipe's __init__ relies on solutions' imports
        sub = sys.modules.get(name)
        if name.startswith(prefix) and sub is not None and "__getattr__" in sub.__dict__:
            complete(sub)
    log.debug("%s wanted in full: running its __init__", package.__name__)
    assert package.__spec__ is not None and package.__spec__.loader is not None
    package.__spec__.loader.exec_module(package)


def _remove(package: ModuleType) -> None:
    name = package.__name__
    if sys.modules.get(name) is package:
        del sys.modules[name]
    parent, _, child = name.rpartition(".")
    if parent and getattr(sys.modules.get(parent), child, None) is package:
        delattr(sys.modules[parent], child)


@contextmanager
def _stand_in_matplotlib() -> Iterator[None]:
    """Empty `matplotlib` and `matplotlib.pyplot` modules, only if matplotlib isn't loaded."""
    if any(name in sys.modules for name in MATPLOTLIB):
        yield
        return
    stand_ins = {name: ModuleType(name, "stand-in while mediapipe is imported: pose never plots")
                 for name in MATPLOTLIB}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def _forget(prefix: str) -> None:
    """Drop a half-imported module from sys.modules so a retry starts clean."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]
