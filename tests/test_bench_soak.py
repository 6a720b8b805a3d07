"""`bench soak` in its CI form: fits sharing a program, a short long run, one kill."""

from __future__ import annotations

from symjax_sr.bench import _soak


def _same_bucket(i):
    # rows 20..29 pad to 32, features 1..3 to 16: one compiled search for every fit
    return dict(rows=20 + 3 * i, features=1 + i % 3, binary_operators=["+", "*"],
                unary_operators=[], maxsize=10)


def test_fits_of_one_size_bucket_compile_once():
    first = _soak.many_fits(1, 0, plan=_same_bucket)
    again = _soak.many_fits(3, 1, plan=lambda i: _same_bucket(i + 1))
    # baseline, initial islands, their scores, iteration (0 if cached)
    assert first["compiles"] <= 4
    assert again["compiles"] == 0
    assert again["maps_end"] <= again["maps_start"] + 200
    assert set(again) >= {"phase", "rss_start_mb", "rss_end_mb", "rss_max_mb", "maps_start",
                          "maps_end", "compiles", "nan_members", "files_ok", "seconds"}


def test_long_run_and_a_kill():
    long = _soak.long_run(0.05, 0)
    assert long["phase"] == "long_run" and long["iterations"] >= 1
    assert long["nan_members"] == 0 and long["hof_writes_seen"] >= 1
    killed = _soak.kills(1, 0, max_delay=2.0)
    assert killed["files_ok"] == 1.0, killed["notes"]
