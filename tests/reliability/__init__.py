"""Reliability and security suites (a package, so that their module names never clash with other suites')."""
