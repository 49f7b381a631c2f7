"""sync/jsontwin."""
