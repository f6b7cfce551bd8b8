"""The study report: run discovery by lineage, one section per study, tables and figures as pure functions (data in, text or PNG out)."""
