"""Optional integrations with other Django apps; each imports its app's package only inside."""
