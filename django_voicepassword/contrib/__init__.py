"""Optional integrations with other packages, each importing its package only there."""
