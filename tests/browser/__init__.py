"""Browser tests of the dashboard (headless Debian Chromium through Playwright)."""
