"""Only the C extension lives here; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The flow path's hot loop (see collectors/flowpath.py). Optional: without a compiler the install still
        # succeeds and the Python engine runs; tests/unit/test_flowcore.py fails loudly if it is missing in CI.
        Extension("collectors._flowcore", ["collectors/_flowcore.c"], extra_compile_args=["-O2", "-std=c11"],
                  optional=True),
    ],
)
