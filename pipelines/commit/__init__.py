"""The commit: receipts in the ledger, completeness, the metadata documents written last
(`documents`, `publish`), the lock, the job record and resuming an unfinished run."""
