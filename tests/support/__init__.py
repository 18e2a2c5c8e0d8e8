"""Test support code: local stand-ins for external services (no test touches the internet)."""
