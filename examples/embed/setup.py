"""Build the embed example against the cconv that is importable (installed or in place).

Cython finds ``cconv/_ext/conv.pxd`` and ``pool.pxd`` on ``sys.path``, exactly as it would in
a site-packages that holds the cconv wheel; nothing from cconv's source tree is needed.

    python setup.py build_ext --inplace && python -c "import embed_demo; print(embed_demo.selfcheck())"
"""
import os

import cconv
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# The directory *above* the cconv package, so that "cimport cconv._ext.conv" resolves there.
cconv_root = os.path.dirname(os.path.dirname(os.path.abspath(cconv.__file__)))

setup(
    name="cconv-embed-demo",
    ext_modules=cythonize(
        [Extension("embed_demo", ["embed_demo.pyx"], include_dirs=[np.get_include()])],
        include_path=[cconv_root],
        compiler_directives={"language_level": 3},
    ),
)
