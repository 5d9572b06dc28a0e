"""The reliability benchmark's scenarios (bench/reliability.py runs them; tests/bench/test_reliability.py runs them small)."""
