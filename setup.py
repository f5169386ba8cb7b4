"""The compiled kernels (neuromap/_kernels.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "neuromap._kernels",
            sources=["neuromap/_kernels.c"],
            # Portable code (no -march=native: wheels and conda packages run on other CPUs);
            # the DP row has an AVX2 clone picked at load time (target_clones in the source).
            extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno"],
        )
    ]
)
