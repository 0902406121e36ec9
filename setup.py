"""Build the compiled core of cconv.

OpenMP is detected by compiling a tiny test program: with gcc/clang the flag is ``-fopenmp``,
with MSVC ``/openmp``, with Apple clang ``-Xpreprocessor -fopenmp -lomp``. When none works the
package still builds, serially, and ``cconv.openmp_enabled()`` returns False.
Set ``CCONV_DISABLE_OPENMP=1`` to force a serial build.
"""
import glob
import os
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXT_MODULES = ["conv", "pool", "parallel", "blas", "resample", "plan", "optim", "dropout",
               "batchnorm"]
HEADERS = sorted(glob.glob("cconv/_ext/*.h") + glob.glob("cconv/_ext/*.pxi"))

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


def _openmp_flag_candidates(compiler_type):
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    if sys.platform == "darwin":
        return [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    return [(["-fopenmp"], ["-fopenmp"])]


def _try_openmp(compiler, compile_flags, link_flags):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=compile_flags)
            compiler.link_executable(objs, os.path.join(tmp, "omp_test"), extra_postargs=link_flags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """Adds optimisation and OpenMP flags that fit the compiler actually in use."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        compile_flags, link_flags = [], []
        if os.environ.get("CCONV_DISABLE_OPENMP", "0") != "1":
            for cflags, lflags in _openmp_flag_candidates(ctype):
                if _try_openmp(self.compiler, cflags, lflags):
                    compile_flags, link_flags = cflags, lflags
                    break
        if not compile_flags:
            print("cconv: building WITHOUT OpenMP (kernels run serially)")
        opt = ["/O2"] if ctype == "msvc" else ["-O3", "-fno-math-errno", "-fno-trapping-math",
                                                  "-Wno-unused-function"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + compile_flags + ext.extra_compile_args
            if ext.name in ("cconv._ext.optim", "cconv._ext.batchnorm") and ctype != "msvc":
                # NumPy's rounding, element for element: no a*b+c fused where FMA is baseline
                # (nor in the AVX2 / AVX-512 versions of the BatchNormalization kernels)
                ext.extra_compile_args.append("-ffp-contract=off")
            ext.extra_link_args = link_flags + ext.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        f"cconv._ext.{name}",
        [f"cconv/_ext/{name}.pyx"],
        include_dirs=[np.get_include(), "cconv/_ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # Cython tracks the headers a .pyx names, not those they include (plan.h includes
        # direct.h, gemm.h, ...): every module is rebuilt when any header changes.
        depends=HEADERS,
    )
    for name in EXT_MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
