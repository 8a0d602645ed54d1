"""The SQLite ledger: what jobman intends, what it observed, and every change it saw."""
