"""Layouts: where each array lives inside a container (`paths`) and what viewers read
(`viewers`). Pure code: no I/O and nothing of plans; the commit joins them into a plan's
documents (`pipelines.commit.documents`)."""
