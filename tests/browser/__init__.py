"""Helpers for the browser tests: headless Debian Chromium driven by Playwright (no browser download)."""
