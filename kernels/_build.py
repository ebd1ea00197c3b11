"""Extension list for ``setup.py``: the Cython kernels, with OpenMP where the compiler has it.

Two extensions, built with the same flags: ``kernels.gmm_kernels`` (EM) and
``kernels.micro_kernels`` (the summarize/pairwise micro-problems and the race demo).

``setup.py`` calls :func:`extensions`; nothing else builds the kernels, so ``pip install
-e .`` (``make install``) is the whole build. Decisions taken here, each by
test-compiling a tiny C program with the compiler setuptools will use:

* **OpenMP**: ``-fopenmp`` (``/openmp`` on MSVC) is used when a program calling
  ``omp_get_max_threads()`` compiles *and links* with it. When it does not, or when
  the environment sets ``GMM_HARNESS_NO_OPENMP=1``, the kernels are built without
  OpenMP: the parallel regions then run on one thread and the OpenMP strategies
  report themselves unavailable with the reason recorded here.
* **Optimisation**: ``-O3 -fno-math-errno -fno-trapping-math`` let gcc/clang
  vectorise the kernels' loops, including the branch-free polynomial ``exp``/``log``
  in ``gmm_kernels.pyx`` (``-fno-trapping-math`` allows the if-conversion of their
  clamping). ``-ffast-math`` is deliberately *not* used: its reassociation would
  cancel the round-to-nearest trick those functions rely on, and on gcc < 13 linking
  with it sets flush-to-zero for the whole Python process.
* **Target**: ``-march=native`` (override with ``GMM_HARNESS_MARCH=<arch>``, or
  ``GMM_HARNESS_MARCH=none`` for a portable build). The kernels are built on the
  machine that benchmarks them; wider vectors are most of the distance to the exp
  floor.

What was decided is compiled into the extension as string macros, so
``kernels.gmm_kernels.build_info()`` reports the flags of the binary actually
loaded (never a stale side file).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import sysconfig
import tempfile
from pathlib import Path

#: Build without OpenMP even where the compiler supports it (``=1``).
NO_OPENMP_ENV = "GMM_HARNESS_NO_OPENMP"
#: Value for ``-march=`` (default ``native``; ``none`` adds no ``-march`` flag).
MARCH_ENV = "GMM_HARNESS_MARCH"

_OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int threads = 0;
    #pragma omp parallel
    {
        #pragma omp atomic
        threads += 1;
    }
    printf("%d %d\n", threads, omp_get_max_threads());
    return 0;
}
"""

_PLAIN_PROBE = "int main(void) { return 0; }\n"


def _new_compiler():
    """The C compiler setuptools' ``build_ext`` will use, configured the same way."""
    from setuptools.command.build_ext import customize_compiler, new_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


def _compiles(compiler, source: str, compile_args: list[str], link_args: list[str]) -> str | None:
    """Compile and link ``source`` with the given flags.

    Returns
    -------
    str or None
        None when it worked, otherwise the compiler's complaint (one line).
    """
    with tempfile.TemporaryDirectory(prefix="gmm_build_probe_") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        # Compiler output goes to the terminal; keep the probe quiet.
        saved = os.dup(2), os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            os.dup2(devnull, 1)
            objects = compiler.compile([str(src)], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        except Exception as exc:  # CompileError / LinkError, whatever the distutils flavour
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
        finally:
            os.dup2(saved[0], 2)
            os.dup2(saved[1], 1)
            for fd in (*saved, devnull):
                os.close(fd)
    return None


def _openmp_flags(compiler) -> tuple[list[str], list[str], str]:
    """OpenMP compile and link flags, or empty lists and the reason there are none."""
    if os.environ.get(NO_OPENMP_ENV, "").strip() == "1":
        return [], [], f"disabled at build time by {NO_OPENMP_ENV}=1"
    if compiler.compiler_type == "msvc":
        flags = (["/openmp"], [])
    elif sys.platform == "darwin":
        # Apple clang needs the preprocessor flag and an installed libomp.
        flags = (["-Xpreprocessor", "-fopenmp"], ["-lomp"])
    else:
        flags = (["-fopenmp"], ["-fopenmp"])
    problem = _compiles(compiler, _OPENMP_PROBE, *flags)
    if problem is not None:
        return [], [], f"the compiler cannot build an OpenMP program ({problem})"
    return flags[0], flags[1], "compiled with OpenMP"


def _optimisation_flags(compiler) -> list[str]:
    """Flags that let the compiler vectorise the kernels, each kept only if accepted."""
    if compiler.compiler_type == "msvc":
        return ["/O2"]
    wanted = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    march = os.environ.get(MARCH_ENV, "native").strip()
    if march and march.lower() != "none":
        wanted.append(f"-march={march}")
    return [flag for flag in wanted if _compiles(compiler, _PLAIN_PROBE, [flag], []) is None]


def _c_string(text: str) -> str:
    """``text`` as a C string literal, for a ``-DNAME=value`` macro."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _flags_stamp(text: str) -> str:
    """A file whose content is the build configuration, rewritten only when it changes.

    Listed in the extension's ``depends``: build_ext recompiles when a dependency is
    newer than the built module, so changing a flag (or ``GMM_HARNESS_NO_OPENMP``)
    rebuilds the kernels even though their source did not change.
    """
    path = Path("build") / "gmm_kernels.flags"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)


def extensions() -> list:
    """The cythonized extension modules of ``kernels/``.

    Returns
    -------
    list of setuptools.Extension
    """
    import Cython
    from Cython.Build import cythonize
    from setuptools import Extension

    compiler = _new_compiler()
    omp_compile, omp_link, omp_note = _openmp_flags(compiler)
    compile_args = _optimisation_flags(compiler) + omp_compile
    link_args = list(omp_link)
    compiler_name = (
        " ".join(compiler.compiler_so[:1])
        if hasattr(compiler, "compiler_so")
        else (compiler.compiler_type)
    )
    cflags = sysconfig.get_config_var("CFLAGS") or ""
    macros = [
        ("GMM_BUILD_COMPILER", _c_string(compiler_name)),
        ("GMM_BUILD_COMPILE_ARGS", _c_string(shlex.join(shlex.split(cflags) + compile_args))),
        ("GMM_BUILD_LINK_ARGS", _c_string(shlex.join(link_args))),
        ("GMM_BUILD_CYTHON_VERSION", _c_string(Cython.__version__)),
        ("GMM_BUILD_OPENMP_NOTE", _c_string(omp_note)),
    ]
    kernels = Extension(
        "kernels.gmm_kernels",
        sources=["kernels/gmm_kernels.pyx"],
        depends=[_flags_stamp(json.dumps(macros))],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=[] if compiler.compiler_type == "msvc" else ["m"],
    )
    # The micro-problem kernels: same flags and OpenMP decision, separate module, so
    # that either can be rebuilt or fail without touching the other's source.
    micro = Extension(
        "kernels.micro_kernels",
        sources=["kernels/micro_kernels.pyx"],
        depends=kernels.depends,
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    print(f"kernels: {omp_note}; compile args {compile_args}, link args {link_args}")
    return cythonize(
        [kernels, micro],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
        },
    )
