"""Build hook for the optional native commP kernel; all metadata lives in setup.cfg.

`dataprep._commp` is optional: when it cannot be built (no C compiler, no Python headers)
the install still succeeds with a warning, and `dataprep.commp` falls back to pure Python.
"""
from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns any failure to compile the kernel into a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure must not fail the install
            self._warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    @staticmethod
    def _warn(exc: Exception) -> None:
        sys.stderr.write(
            "WARNING: the native commP kernel (dataprep._commp) was not built "
            f"({exc}); pieceworks will use the slower pure-Python commP.\n"
        )


def _compile_args() -> list[str]:
    # MSVC takes neither flag; gcc and clang get full optimisation for the hashing loops.
    return [] if sys.platform == "win32" else ["-O3", "-std=c99"]


setup(
    ext_modules=[
        Extension(
            "dataprep._commp",
            sources=["dataprep/_commp.c"],
            extra_compile_args=_compile_args(),
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
