"""The empirical-study report: tables and figures as pure functions (data in, text or PNG bytes out)."""
