import atexit
import os
import shutil
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

# One on-disk compilation cache for the whole test session: `_free_compiled_programs`
# below frees every program after each module, and a later module that builds the same
# search program (same options and shapes) then loads it instead of compiling it again.
# A fresh directory per test process (each xdist worker has its own), so no run depends
# on an earlier one;
# SYMJAX_SR_TEST_CACHE=0 turns it off.
if os.environ.get("SYMJAX_SR_TEST_CACHE", "1") != "0":
    _cache_dir = tempfile.mkdtemp(prefix="symjax_sr_test_xla_")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _cache_dir)

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def getkey():
    keys = iter(jax.random.split(jax.random.key(0), 10_000))
    return lambda: next(keys)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Free compiled programs after each test module. XLA:CPU maps executable memory per
    program; one pytest process compiles thousands of programs over the whole suite, and
    without this the sum approaches the kernel's limit on memory maps."""
    yield
    from symjax_sr._run import clear_compiled

    clear_compiled()
    jax.clear_caches()
