"""scripts/stack.py without starting anything: the restart back-off and the web process count."""

from scripts.stack import Backoff, default_web_processes


def test_backoff_doubles_up_to_its_cap_while_a_process_keeps_dying():
    backoff = Backoff(first_s=0.5, cap_s=4.0, stable_s=20.0)
    assert [backoff.delay(uptime_s=1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_starts_over_after_a_process_stayed_up():
    backoff = Backoff(first_s=0.5, cap_s=10.0, stable_s=20.0)
    assert [backoff.delay(uptime_s=2.0) for _ in range(3)] == [0.5, 1.0, 2.0]
    assert backoff.delay(uptime_s=20.0) == 0.5  # it was healthy for stable_s: a fresh failure
    assert backoff.delay(uptime_s=0.1) == 1.0


def test_web_processes_come_from_the_environment_else_half_the_cores(monkeypatch):
    monkeypatch.setenv("WEB_PROCESSES", "3")
    assert default_web_processes() == 3
    monkeypatch.delenv("WEB_PROCESSES")
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_web_processes() == 4
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_web_processes() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert default_web_processes() == 1
