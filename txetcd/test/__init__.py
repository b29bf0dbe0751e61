"""Tests for txetcd."""
