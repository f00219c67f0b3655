"""Fakes of every plug-in protocol, shipped with the package (like httpx's MockTransport)."""

from autonomic.monitor.replay import ReplaySource
from autonomic.testing.clock import FakeClock
from autonomic.testing.fakes import FakeActuator, FakeDetector, FakeNotifier, RecordingReader, fake_registry

__all__ = ["FakeActuator", "FakeClock", "FakeDetector", "FakeNotifier", "RecordingReader", "ReplaySource",
           "fake_registry"]
